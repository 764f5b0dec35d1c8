//! Background jobs (nightly reconciliation with Stripe and Telegram Stars, reports): each job
//! runs once per due time across every hub instance on one database.
//!
//! A job is a row of `jobs` (name, schedule, next run, lease, last run's start, finish, outcome
//! and summary, runs, failures). Every `outbox.jobs_poll_interval_ms` the [`Scheduler`] of each
//! instance tries to lease each due job with one conditional `UPDATE` (due, and unleased or its
//! lease expired): one instance wins. The winner runs it, renewing the lease while it runs
//! (`outbox.jobs_lease_ms`), then records the outcome and the next due time and drops the
//! lease. An instance that dies mid-job leaves a lease that expires; another instance then
//! takes the job over. A failure is recorded (`failed`, its message as the summary) and the job
//! runs again at its next due time. Jobs must be idempotent: a takeover may run one twice.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::Row;
use tokio::sync::watch;

use crate::db::{Db, DbError};
use crate::state::AppState;

/// Job runs, per job and outcome.
pub const RUNS: &str = "tradecast_jobs_runs_total";
/// Job runs that failed, per job.
pub const FAILURES: &str = "tradecast_jobs_failures_total";

const DAY_MS: i64 = 86_400_000;

/// When a job is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every interval, first at the scheduler's first start.
    Every(Duration),
    /// Once a day at this UTC time.
    DailyAt {
        /// Hour, 0-23.
        hour: u8,
        /// Minute, 0-59.
        minute: u8,
    },
}

/// A schedule the scheduler refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {name}: invalid schedule: {reason}")]
pub struct InvalidSchedule {
    /// The job.
    pub name: String,
    /// Why.
    pub reason: &'static str,
}

impl Schedule {
    fn check(&self) -> Result<(), &'static str> {
        match *self {
            Schedule::Every(d) if d < Duration::from_millis(1) => {
                Err("an interval of at least 1 ms")
            }
            Schedule::Every(d) if d > Duration::from_secs(366 * 86_400) => {
                Err("an interval of at most a year")
            }
            Schedule::DailyAt { hour, minute } if hour > 23 || minute > 59 => {
                Err("hour 0-23 and minute 0-59")
            }
            _ => Ok(()),
        }
    }

    /// The stored text: `every 3600000ms`, `daily 03:15 UTC`.
    pub fn describe(&self) -> String {
        match *self {
            Schedule::Every(d) => format!("every {}ms", d.as_millis()),
            Schedule::DailyAt { hour, minute } => format!("daily {hour:02}:{minute:02} UTC"),
        }
    }

    fn every_ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
    }

    /// When a job first registered at `now_ms` is due.
    pub fn first_due(&self, now_ms: i64) -> i64 {
        match *self {
            Schedule::Every(_) => now_ms,
            Schedule::DailyAt { .. } => self.next_after(now_ms, now_ms - 1),
        }
    }

    /// The next due time after a run that was due at `due_ms` and finished at `now_ms`:
    /// strictly after `now_ms` (runs missed meanwhile are not made up).
    pub fn next_after(&self, due_ms: i64, now_ms: i64) -> i64 {
        match *self {
            Schedule::Every(d) => {
                let every = Self::every_ms(d);
                if due_ms > now_ms {
                    return due_ms;
                }
                let k = (now_ms - due_ms) / every + 1;
                due_ms.saturating_add(k.saturating_mul(every))
            }
            Schedule::DailyAt { hour, minute } => {
                let at = (i64::from(hour) * 60 + i64::from(minute)) * 60_000;
                let t = now_ms.div_euclid(DAY_MS) * DAY_MS + at;
                if t > now_ms { t } else { t + DAY_MS }
            }
        }
    }
}

/// A background job.
pub trait Job: Send + Sync + 'static {
    /// Runs once: `Ok(summary)` or `Err(what failed)`, both shown in the console.
    fn run<'a>(&'a self, state: &'a AppState) -> BoxFuture<'a, Result<String, String>>;
}

struct Registered {
    name: String,
    schedule: Schedule,
    job: Arc<dyn Job>,
}

/// The jobs an instance runs; [`Scheduler::start`] starts them.
#[derive(Default)]
pub struct Scheduler {
    jobs: Vec<Registered>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.jobs.iter().map(|j| (&j.name, j.schedule))).finish()
    }
}

/// A job's stored state.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// Its schedule's text.
    pub schedule: String,
    /// When it is next due, unix ms.
    pub next_run_at_ms: i64,
    /// The instance running it now, if leased.
    pub lease_owner: Option<String>,
    /// Until when it is leased.
    pub lease_until_ms: Option<i64>,
    /// Last run's start.
    pub last_started_at_ms: Option<i64>,
    /// Last run's end.
    pub last_finished_at_ms: Option<i64>,
    /// `ok` or `failed`.
    pub last_outcome: Option<String>,
    /// Last run's summary or error.
    pub last_summary: Option<String>,
    /// Runs finished.
    pub runs: i64,
    /// Of which failed.
    pub failures: i64,
}

impl Scheduler {
    /// No jobs yet.
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    /// Adds `job` under `name` (a name registered twice: the later one wins).
    pub fn register(
        &mut self,
        name: &str,
        schedule: Schedule,
        job: Arc<dyn Job>,
    ) -> Result<&mut Self, InvalidSchedule> {
        schedule.check().map_err(|reason| InvalidSchedule { name: name.to_string(), reason })?;
        self.jobs.retain(|j| j.name != name);
        self.jobs.push(Registered { name: name.to_string(), schedule, job });
        Ok(self)
    }

    /// No job registered.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Starts polling for due jobs on `state` (nothing when no job is registered).
    pub fn start(self, state: AppState) -> SchedulerHandle {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            metrics::describe_counter!(RUNS, "Background job runs, per job and outcome");
            metrics::describe_counter!(FAILURES, "Background job runs that failed, per job");
        });
        let owner = format!("{}/{}", state.cluster.instance(), crate::ids::random_hex(4));
        let (stop, stopped) = watch::channel(false);
        let task = (!self.jobs.is_empty()).then(|| {
            let jobs: Vec<Arc<Registered>> = self.jobs.into_iter().map(Arc::new).collect();
            tokio::spawn(poll(state, jobs, owner.clone(), stopped))
        });
        SchedulerHandle { owner, stop, task }
    }
}

/// A started [`Scheduler`]: [`SchedulerHandle::stop`] ends it (letting running jobs finish, up
/// to 10 s), dropping it aborts it.
#[derive(Debug)]
pub struct SchedulerHandle {
    owner: String,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SchedulerHandle {
    /// This scheduler's lease owner (`<instance>/<random>`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Stops polling; running jobs get 10 s to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Ends it at once, running jobs included (their leases expire: a crash).
    pub fn abort(&self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Adds `name` with `schedule` if new; a changed schedule replaces the stored one and its next
/// due time. Leases, history and an unchanged next run are kept.
pub async fn upsert(db: &Db, name: &str, schedule: &Schedule, now_ms: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO jobs (name, schedule, next_run_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, \
         next_run_at_ms = CASE WHEN jobs.schedule = excluded.schedule THEN jobs.next_run_at_ms \
         ELSE excluded.next_run_at_ms END",
    )
    .bind(name)
    .bind(schedule.describe())
    .bind(schedule.first_due(now_ms))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Leases `name` to `owner` if it is due and not leased by a live owner. Returns the due time
/// it leased.
pub async fn try_lease(
    db: &Db,
    name: &str,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Option<i64>, DbError> {
    let row = sqlx::query(
        "UPDATE jobs SET lease_owner = $1, lease_until_ms = $2, last_started_at_ms = $3 \
         WHERE name = $4 AND next_run_at_ms <= $3 \
         AND (lease_owner IS NULL OR lease_until_ms <= $3) \
         RETURNING next_run_at_ms",
    )
    .bind(owner)
    .bind(now_ms.saturating_add(lease_ms))
    .bind(now_ms)
    .bind(name)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

async fn renew(db: &Db, name: &str, owner: &str, until_ms: i64) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE jobs SET lease_until_ms = $1 WHERE name = $2 AND lease_owner = $3")
            .bind(until_ms)
            .bind(name)
            .bind(owner)
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected() == 1)
}

async fn record(
    db: &Db,
    name: &str,
    owner: &str,
    next_ms: i64,
    now_ms: i64,
    result: &Result<String, String>,
) -> Result<bool, DbError> {
    let (outcome, summary, failed) = match result {
        Ok(s) => ("ok", s.as_str(), 0i64),
        Err(e) => ("failed", e.as_str(), 1i64),
    };
    let done = sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_until_ms = NULL, next_run_at_ms = $1, \
         last_finished_at_ms = $2, last_outcome = $3, last_summary = $4, runs = runs + 1, \
         failures = failures + $5 WHERE name = $6 AND lease_owner = $7",
    )
    .bind(next_ms)
    .bind(now_ms)
    .bind(outcome)
    .bind(summary)
    .bind(failed)
    .bind(name)
    .bind(owner)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Every job's stored state, by name.
pub async fn list(db: &Db) -> Result<Vec<JobStatus>, DbError> {
    let rows = sqlx::query(
        "SELECT name, schedule, next_run_at_ms, lease_owner, lease_until_ms, last_started_at_ms, \
         last_finished_at_ms, last_outcome, last_summary, runs, failures FROM jobs ORDER BY name",
    )
    .fetch_all(db.pool())
    .await?;
    let one = |r: &sqlx::any::AnyRow| -> Result<JobStatus, sqlx::Error> {
        Ok(JobStatus {
            name: r.try_get(0)?,
            schedule: r.try_get(1)?,
            next_run_at_ms: r.try_get(2)?,
            lease_owner: r.try_get(3)?,
            lease_until_ms: r.try_get(4)?,
            last_started_at_ms: r.try_get(5)?,
            last_finished_at_ms: r.try_get(6)?,
            last_outcome: r.try_get(7)?,
            last_summary: r.try_get(8)?,
            runs: r.try_get(9)?,
            failures: r.try_get(10)?,
        })
    };
    Ok(rows.iter().map(one).collect::<Result<Vec<_>, _>>()?)
}

async fn poll(
    state: AppState,
    jobs: Vec<Arc<Registered>>,
    owner: String,
    mut stopped: watch::Receiver<bool>,
) {
    let cfg = state.config.outbox.clone();
    let every = Duration::from_millis(cfg.jobs_poll_interval_ms);
    let lease_ms = i64::try_from(cfg.jobs_lease_ms).unwrap_or(i64::MAX);
    let mut registered = false;
    let mut running: tokio::task::JoinSet<String> = tokio::task::JoinSet::new();
    let mut busy: Vec<String> = Vec::new();
    loop {
        while let Some(done) = running.try_join_next() {
            if let Ok(name) = done {
                busy.retain(|n| n != &name);
            }
        }
        if !registered {
            let now = state.now_ms();
            let mut ok = true;
            for j in &jobs {
                if let Err(e) = upsert(&state.db, &j.name, &j.schedule, now).await {
                    tracing::warn!(target: "tradecast_hub::jobs", job = %j.name, error = %e, "registering a job failed");
                    ok = false;
                }
            }
            registered = ok;
        }
        if registered {
            for j in &jobs {
                if busy.contains(&j.name) {
                    continue;
                }
                let now = state.now_ms();
                match try_lease(&state.db, &j.name, &owner, now, lease_ms).await {
                    Ok(Some(due)) => {
                        busy.push(j.name.clone());
                        let (state, j, owner) = (state.clone(), j.clone(), owner.clone());
                        running.spawn(async move {
                            run_one(&state, &j, &owner, due, lease_ms).await;
                            j.name.clone()
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(target: "tradecast_hub::jobs", job = %j.name, error = %e, "leasing a job failed")
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopped.changed() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while running.join_next().await.is_some() {}
    })
    .await;
}

async fn run_one(state: &AppState, j: &Registered, owner: &str, due_ms: i64, lease_ms: i64) {
    tracing::info!(target: "tradecast_hub::jobs", job = %j.name, "job started");
    let renew_every = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1).max(1));
    let run = j.job.run(state);
    tokio::pin!(run);
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            () = tokio::time::sleep(renew_every) => {
                let until = state.now_ms().saturating_add(lease_ms);
                match renew(&state.db, &j.name, owner, until).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(target: "tradecast_hub::jobs", job = %j.name, "job lease lost while running"),
                    Err(e) => tracing::warn!(target: "tradecast_hub::jobs", job = %j.name, error = %e, "renewing a job's lease failed"),
                }
            }
        }
    };
    let now = state.now_ms();
    let next = j.schedule.next_after(due_ms, now);
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!(RUNS, "job" => j.name.clone(), "outcome" => outcome).increment(1);
    match &result {
        Ok(summary) => {
            tracing::info!(target: "tradecast_hub::jobs", job = %j.name, %summary, "job finished")
        }
        Err(error) => {
            metrics::counter!(FAILURES, "job" => j.name.clone()).increment(1);
            tracing::warn!(target: "tradecast_hub::jobs", job = %j.name, %error, "job failed")
        }
    }
    match record(&state.db, &j.name, owner, next, now, &result).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(target: "tradecast_hub::jobs", job = %j.name, "job finished after its lease was taken over: outcome not recorded")
        }
        Err(e) => {
            tracing::error!(target: "tradecast_hub::jobs", job = %j.name, error = %e, "recording a job's outcome failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-06T00:00:00Z.
    const DAY: i64 = 1_796_515_200_000;

    #[test]
    fn daily_at_is_the_next_utc_time() {
        let s = Schedule::DailyAt { hour: 3, minute: 15 };
        let at = DAY + (3 * 60 + 15) * 60_000;
        assert_eq!(s.next_after(0, DAY), at);
        assert_eq!(s.next_after(0, at - 1), at);
        // Exactly at the time: the next day's.
        assert_eq!(s.next_after(0, at), at + DAY_MS);
        assert_eq!(s.next_after(0, DAY + 23 * 3_600_000), at + DAY_MS);
        assert_eq!(s.first_due(at), at);
        assert_eq!(s.first_due(at + 1), at + DAY_MS);
        let midnight = Schedule::DailyAt { hour: 0, minute: 0 };
        assert_eq!(midnight.next_after(0, DAY - 1), DAY);
        assert_eq!(midnight.next_after(0, DAY), DAY + DAY_MS);
        assert_eq!(s.describe(), "daily 03:15 UTC");
    }

    #[test]
    fn every_keeps_its_cadence_and_skips_missed_runs() {
        let s = Schedule::Every(Duration::from_secs(60));
        assert_eq!(s.first_due(1000), 1000);
        assert_eq!(s.next_after(1000, 1500), 61_000);
        // Three intervals missed: the next one after now, on the cadence.
        assert_eq!(s.next_after(1000, 200_000), 241_000);
        assert_eq!(s.next_after(1000, 61_000), 121_000);
        assert_eq!(s.describe(), "every 60000ms");
    }

    #[test]
    fn bad_schedules_are_refused() {
        let mut sch = Scheduler::new();
        struct Nop;
        impl Job for Nop {
            fn run<'a>(&'a self, _: &'a AppState) -> BoxFuture<'a, Result<String, String>> {
                Box::pin(async { Ok(String::new()) })
            }
        }
        let e = sch.register("x", Schedule::DailyAt { hour: 24, minute: 0 }, Arc::new(Nop));
        assert!(e.is_err());
        assert!(sch.register("x", Schedule::Every(Duration::ZERO), Arc::new(Nop)).is_err());
        assert!(sch.register("x", Schedule::Every(Duration::from_secs(1)), Arc::new(Nop)).is_ok());
        assert!(!sch.is_empty());
    }
}
