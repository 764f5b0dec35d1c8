//! The public views, computed once per cutoff. Every public answer of a provider is a pure
//! function of its records received up to the cutoff, and the cutoff moves once a minute
//! ([`crate::analytics::cutoff_ms`]): so this instance builds a provider's [`TrackRecord`] once
//! per cutoff and each view's bytes (the page, the JSON, the export, a picture, the badge) once
//! per cutoff, however many visitors ask meanwhile. Concurrent first requests wait for the one
//! computation (no stampede); a failure is not kept (the next request tries again).
//!
//! Entries of an older cutoff are replaced at their next request; the map holds at most
//! [`MAX_ENTRIES`] (beyond that, entries of past cutoffs are dropped, and if it is still full an
//! answer is computed without being kept: varying `Host` headers or themes cannot grow memory
//! without bound). A provider's name or status change shows at the next cutoff, within a minute.

use std::collections::HashMap;
use std::future::Future;
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
/// (provider, view) → (cutoff, the value once computed).
type SlotMap<T> = HashMap<(String, String), (i64, Cell<T>)>;

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

    /// The cell of `key` at `cutoff_ms` (a new one when the kept one is of another cutoff);
    /// `None` when the map is full of the current cutoff's entries.
    fn cell(&self, key: (String, String), cutoff_ms: i64) -> Option<Cell<T>> {
        let mut map = self.lock();
        if let Some((at, cell)) = map.get(&key)
            && *at == cutoff_ms
        {
            return Some(Arc::clone(cell));
        }
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.retain(|_, (at, _)| *at >= cutoff_ms);
            if map.len() >= MAX_ENTRIES {
                return None;
            }
        }
        let cell: Cell<T> = Arc::new(OnceCell::new());
        map.insert(key, (cutoff_ms, Arc::clone(&cell)));
        Some(cell)
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
        match self.cell(key, cutoff_ms) {
            Some(cell) => {
                cell.get_or_try_init(|| async { make().await.map(Arc::new) }).await.cloned()
            }
            None => make().await.map(Arc::new),
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
