//! The public views, computed once per cutoff. Every public answer of a provider is a pure
//! function of its records received up to the cutoff, and the cutoff moves once a minute
//! ([`crate::analytics::cutoff_ms`]): so this instance builds a provider's [`TrackRecord`] once
//! per cutoff and each view's bytes (the page, the JSON, the export, a picture, the badge) once
//! per cutoff, however many visitors ask meanwhile. When the cutoff moves, the first request
//! builds the new one and the others are answered the previous cutoff's bytes meanwhile (one
//! visitor a minute waits for a rebuild, not all of them); the very first requests wait for the
//! one computation (no stampede); a failure is not kept (the next request tries again).
//!
//! Entries of an older cutoff are replaced at their next request; the map holds at most
//! [`MAX_ENTRIES`] (beyond that, entries of past cutoffs are dropped, and if it is still full an
//! answer is computed without being kept: varying `Host` headers or themes cannot grow memory
//! without bound). A provider's name or status change shows at the next cutoff, within a minute.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use tokio::sync::OnceCell;

use super::TrackRecord;
use crate::error::ApiError;

/// A rendered view: its bytes (cloned by reference count) and their strong `ETag`, hashed once.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The answer's body.
    pub body: Bytes,
    /// `"…"`: the first 32 hex digits of the body's SHA-256, quoted.
    pub etag: String,
}

impl Rendered {
    /// `body` with its tag.
    pub fn new(body: Vec<u8>) -> Rendered {
        let etag = format!("\"{}\"", &crate::ids::sha256_hex(&body)[..32]);
        Rendered { body: Bytes::from(body), etag }
    }
}

/// The most entries kept (track records and rendered views together).
pub const MAX_ENTRIES: usize = 4_096;

type Cell<T> = Arc<OnceCell<Arc<T>>>;

/// One (provider, view): the cell of its current cutoff, and the value of the cutoff before,
/// answered while another request builds the new one.
#[derive(Debug)]
struct Entry<T> {
    cutoff_ms: i64,
    cell: Cell<T>,
    previous: Option<Arc<T>>,
    /// A request is building `cell`.
    building: Arc<AtomicBool>,
}

impl<T> Entry<T> {
    fn new(cutoff_ms: i64, previous: Option<Arc<T>>) -> Entry<T> {
        Entry {
            cutoff_ms,
            cell: Arc::new(OnceCell::new()),
            previous,
            building: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// (provider, view) → its entry.
type SlotMap<T> = HashMap<(String, String), Entry<T>>;

/// What a request does.
enum Plan<T> {
    /// Answer this.
    Ready(Arc<T>),
    /// Build (or wait for) this cell.
    Build(Cell<T>, Arc<AtomicBool>),
    /// Compute without keeping (the map is full, or the clock is behind the entry's cutoff).
    Direct,
}

/// Clears a building flag when the build ends, however it ends.
struct Building(Arc<AtomicBool>);

impl Drop for Building {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One map of (provider, view) → (cutoff, the value once computed).
#[derive(Debug)]
struct Slots<T> {
    map: Mutex<SlotMap<T>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { map: Mutex::new(HashMap::new()) }
    }
}

impl<T> Slots<T> {
    fn lock(&self) -> MutexGuard<'_, SlotMap<T>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a request for `key` at `cutoff_ms` does: the kept value; the value of the cutoff
    /// before while another request builds this one; else build (the first) or wait (the
    /// others) on this cutoff's cell.
    fn plan(&self, key: (String, String), cutoff_ms: i64) -> Plan<T> {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(&key) {
            if e.cutoff_ms == cutoff_ms {
                if let Some(v) = e.cell.get() {
                    return Plan::Ready(Arc::clone(v));
                }
                if let Some(prev) = &e.previous
                    && e.building.load(Ordering::Acquire)
                {
                    return Plan::Ready(Arc::clone(prev));
                }
                return Plan::Build(Arc::clone(&e.cell), Arc::clone(&e.building));
            }
            if e.cutoff_ms > cutoff_ms {
                return Plan::Direct;
            }
            let previous = e.cell.get().cloned().or_else(|| e.previous.take());
            *e = Entry::new(cutoff_ms, previous);
            return Plan::Build(Arc::clone(&e.cell), Arc::clone(&e.building));
        }
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.cutoff_ms >= cutoff_ms);
            if map.len() >= MAX_ENTRIES {
                return Plan::Direct;
            }
        }
        let e = Entry::new(cutoff_ms, None);
        let plan = Plan::Build(Arc::clone(&e.cell), Arc::clone(&e.building));
        map.insert(key, e);
        plan
    }

    async fn get<F, Fut>(
        &self,
        key: (String, String),
        cutoff_ms: i64,
        make: F,
    ) -> Result<Arc<T>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        match self.plan(key, cutoff_ms) {
            Plan::Ready(v) => Ok(v),
            Plan::Build(cell, building) => {
                // Only the request that raised the flag lowers it: a waiter that goes away (its
                // visitor left) must not clear it while the builder still works.
                let raised = building
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                let _building = raised.then(|| Building(building));
                cell.get_or_try_init(|| async { make().await.map(Arc::new) }).await.cloned()
            }
            Plan::Direct => make().await.map(Arc::new),
        }
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The public views' cache (one per hub instance, in its state).
#[derive(Debug, Default)]
pub struct PublicCache {
    tracks: Slots<TrackRecord>,
    views: Slots<Rendered>,
}

impl PublicCache {
    /// `provider`'s track record at `cutoff_ms`, built by `make` the first time it is asked.
    pub async fn track<F, Fut>(
        &self,
        provider: &str,
        cutoff_ms: i64,
        make: F,
    ) -> Result<Arc<TrackRecord>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<TrackRecord, ApiError>>,
    {
        self.tracks.get((provider.to_owned(), String::new()), cutoff_ms, make).await
    }

    /// The bytes of `provider`'s `view` (a route and its variant: `page http://host`,
    /// `equity.png dark`, …) at `cutoff_ms`, rendered by `make` the first time it is asked.
    pub async fn view<F, Fut>(
        &self,
        provider: &str,
        view: &str,
        cutoff_ms: i64,
        make: F,
    ) -> Result<Arc<Rendered>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, ApiError>>,
    {
        let key = (provider.to_owned(), view.to_owned());
        self.views.get(key, cutoff_ms, || async { make().await.map(Rendered::new) }).await
    }

    /// Entries held (track records, rendered views).
    pub fn len(&self) -> (usize, usize) {
        (self.tracks.len(), self.views.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn once_per_cutoff_shared_by_concurrent_callers_and_failures_not_kept() {
        let cache = PublicCache::default();
        let made = Arc::new(AtomicUsize::new(0));
        let render = |made: Arc<AtomicUsize>, text: &'static str| async move {
            made.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok::<_, ApiError>(text.as_bytes().to_vec())
        };
        let asks = (0..8).map(|_| cache.view("p1", "json", 60_000, || render(made.clone(), "a")));
        let got = futures::future::join_all(asks).await;
        assert!(got.iter().all(|g| g.as_ref().is_ok_and(|r| r.body.as_ref() == b"a")));
        assert_eq!(made.load(Ordering::SeqCst), 1, "eight visitors, one rendering");
        // The next cutoff renders again; another view or provider is its own entry.
        let b = cache.view("p1", "json", 120_000, || render(made.clone(), "b")).await;
        assert_eq!(b.map(|r| r.body.to_vec()).ok(), Some(b"b".to_vec()));
        let _ = cache.view("p2", "json", 120_000, || render(made.clone(), "c")).await;
        assert_eq!(made.load(Ordering::SeqCst), 3);
        assert_eq!(cache.len(), (0, 2), "the old cutoff's entry was replaced");
        // A failure is not kept.
        let fail = cache
            .view("p3", "json", 120_000, || async { Err(ApiError::NotFound("no".into())) })
            .await;
        assert!(fail.is_err());
        let ok = cache.view("p3", "json", 120_000, || render(made.clone(), "d")).await;
        assert_eq!(ok.map(|r| r.body.to_vec()).ok(), Some(b"d".to_vec()));
    }

    #[tokio::test]
    async fn while_one_request_rebuilds_the_others_get_the_previous_cutoffs_bytes() {
        let cache = Arc::new(PublicCache::default());
        let _ = cache.view("p", "page", 60_000, || async { Ok(b"old".to_vec()) }).await;
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let builder = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .view("p", "page", 120_000, || async move {
                        let _ = wait.await;
                        Ok(b"new".to_vec())
                    })
                    .await
                    .map(|r| r.body.to_vec())
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let meanwhile = cache
            .view("p", "page", 120_000, || async { Ok(b"never built twice".to_vec()) })
            .await
            .map(|r| r.body.to_vec());
        assert_eq!(meanwhile.ok(), Some(b"old".to_vec()), "answered at once, the previous bytes");
        let _ = go.send(());
        assert_eq!(builder.await.ok().and_then(Result::ok), Some(b"new".to_vec()));
        let after = cache
            .view("p", "page", 120_000, || async { Ok(b"never built twice".to_vec()) })
            .await
            .map(|r| r.body.to_vec());
        assert_eq!(after.ok(), Some(b"new".to_vec()));
        // A failed rebuild is not kept: the next request builds again.
        let failed = cache
            .view("p", "page", 180_000, || async { Err(ApiError::NotFound("gone".into())) })
            .await;
        assert!(failed.is_err());
        let again = cache
            .view("p", "page", 180_000, || async { Ok(b"newer".to_vec()) })
            .await
            .map(|r| r.body.to_vec());
        assert_eq!(again.ok(), Some(b"newer".to_vec()));
    }

    #[tokio::test]
    async fn a_full_map_drops_past_cutoffs_and_then_stops_keeping() {
        let cache = PublicCache::default();
        for i in 0..MAX_ENTRIES {
            let _ = cache.view("p", &format!("page {i}"), 60_000, || async { Ok(vec![1]) }).await;
        }
        assert_eq!(cache.len().1, MAX_ENTRIES);
        // The next cutoff: the old entries go as new ones come.
        let _ = cache.view("p", "page new", 120_000, || async { Ok(vec![2]) }).await;
        assert_eq!(cache.len().1, 1);
        for i in 0..MAX_ENTRIES + 10 {
            let got = cache.view("q", &format!("v{i}"), 120_000, || async { Ok(vec![3]) }).await;
            assert_eq!(got.map(|r| r.body.to_vec()).ok(), Some(vec![3]), "answered when full too");
        }
        assert_eq!(cache.len().1, MAX_ENTRIES);
    }
}
