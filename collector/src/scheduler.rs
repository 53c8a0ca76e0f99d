//! Collector-driven scan runs: turns job schedules into durable run records,
//! sends due runs to connected agents and records their reports.
//!
//! Every tick (once a second, or at once when woken) the scheduler
//!
//! 1. evaluates each scheduled job between its stored cursor and now; when a
//!    fire time passed it creates one `queued` run per enrolled agent of the
//!    tenant. Several fire times passed at once (the collector was down)
//!    collapse into the latest. An agent's older queued run of the same job
//!    is marked `missed`: an agent that was offline for three periods runs the
//!    job once when it is back, not three times;
//! 2. sends every queued run whose agent is connected and whose window is open
//!    (`RunJob`), marking it `running`; runs outside their window stay queued
//!    until it opens;
//! 3. fails `running` runs with no report within `run_timeout`, and prunes
//!    finished runs past `run_retention`.
//!
//! A newly connected agent wakes the scheduler, so runs it missed while offline
//! are sent right after its Welcome. `running` runs are resent on reconnect too:
//! the agent runs each run id at most once and answers a resend of a finished
//! run with its report again, so a report lost with a connection is recovered.
//!
//! Time comes from an injectable [`Clock`]: tests move a manual clock instead of
//! waiting for real schedules.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{
    AgentId, AgentIdentity, Message, RUN_REQUESTS_SINCE, RunOutcome, RunReport, RunRequest, Scope,
    TenantId,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::{Notify, mpsc};

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::schedule::ScheduledJob;
use crate::store::{RunRecord, RunStatus, Store, StoreError};
use crate::time::Clock;

/// Why a run report was not recorded.
#[derive(Debug, Error)]
pub enum ReportError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such run (unknown id, or pruned).
    #[error("unknown run {0:?}")]
    UnknownRun(String),
    /// The run belongs to another agent or job.
    #[error("run {run_id:?} is not {agent}'s run of job {job_id:?}")]
    NotYours {
        /// The run.
        run_id: String,
        /// The reporting agent.
        agent: AgentIdentity,
        /// The job the report names.
        job_id: String,
    },
}

/// Why a run could not be started on demand.
#[derive(Debug, Error)]
pub enum RunNowError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tenant has no collector-scheduled job of that id.
    #[error("tenant {tenant} has no scheduled job {job_id:?}")]
    UnknownJob {
        /// The tenant.
        tenant: TenantId,
        /// The job asked for.
        job_id: String,
    },
    /// The tenant has no agent that could run it.
    #[error("tenant {0} has no enrolled, unrevoked agent to run the job")]
    NoAgents(TenantId),
}

/// What one tick did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickSummary {
    /// Runs created because a schedule fired.
    pub created: u64,
    /// Runs sent to agents.
    pub dispatched: u64,
    /// Runs superseded by newer ones.
    pub missed: u64,
    /// Runs failed for lack of a report.
    pub timed_out: u64,
}

/// A scheduled job as shown by `collector schedules list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScheduleSummary {
    /// Tenant whose agents run it.
    pub tenant: TenantId,
    /// The job.
    pub job_id: String,
    /// Cron expression (seconds first).
    pub schedule: String,
    /// Allowed windows as written (empty: any time).
    pub windows: Vec<String>,
    /// UTC offset the schedule is read in.
    pub timezone: String,
    /// When the schedule was last evaluated up to, ms since the epoch.
    pub evaluated_until_ms: Option<u64>,
    /// Next fire time, ms since the epoch.
    pub next_due_ms: Option<u64>,
    /// When that run may start, given the windows.
    pub next_start_ms: Option<u64>,
    /// Runs of this job queued or running now.
    pub pending_runs: u64,
}

/// The schedule table of every tenant, with `schedules list` summaries.
#[derive(Debug, Clone, Default)]
pub struct Schedules {
    jobs: Vec<ScheduledJob>,
}

impl Schedules {
    /// The scheduled jobs of every tenant in `settings`.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            jobs: settings.schedules.values().flatten().cloned().collect(),
        }
    }

    /// Every scheduled job.
    pub fn jobs(&self) -> &[ScheduledJob] {
        &self.jobs
    }

    fn find(&self, tenant: &TenantId, job_id: &str) -> Option<&ScheduledJob> {
        self.jobs
            .iter()
            .find(|j| j.tenant == *tenant && j.spec.job_id == job_id)
    }

    /// Summaries as of `now_ms`, optionally of one tenant.
    pub fn summaries(
        &self,
        store: &dyn Store,
        tenant: Option<&TenantId>,
        now_ms: u64,
    ) -> Result<Vec<ScheduleSummary>, StoreError> {
        let mut pending: HashMap<(TenantId, String), u64> = HashMap::new();
        for run in store.pending_runs(None)? {
            *pending.entry((run.tenant, run.job_id)).or_default() += 1;
        }
        let mut out = Vec::new();
        for job in self
            .jobs
            .iter()
            .filter(|j| tenant.is_none_or(|t| *t == j.tenant))
        {
            let cursor = store.schedule_cursor(&job.tenant, &job.spec.job_id)?;
            let next_due = job
                .schedule
                .next_fire_after(cursor.unwrap_or(0).max(now_ms));
            out.push(ScheduleSummary {
                tenant: job.tenant.clone(),
                job_id: job.spec.job_id.clone(),
                schedule: job.schedule.expression().to_string(),
                windows: job.schedule.windows(),
                timezone: job.schedule.offset().to_string(),
                evaluated_until_ms: cursor,
                next_due_ms: next_due,
                next_start_ms: next_due.and_then(|d| job.schedule.next_window_open(d)),
                pending_runs: pending
                    .get(&(job.tenant.clone(), job.spec.job_id.clone()))
                    .copied()
                    .unwrap_or(0),
            });
        }
        Ok(out)
    }
}

/// The write half of a connected agent's session.
struct Connected {
    conn_id: usize,
    version: u16,
    out: mpsc::Sender<Message>,
}

/// Creates, dispatches and records collector-driven scan runs.
pub struct Scheduler {
    schedules: Arc<Schedules>,
    scopes: BTreeMap<TenantId, Scope>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    run_timeout_ms: u64,
    run_retention_ms: u64,
    sessions: Mutex<HashMap<AgentId, Connected>>,
    /// Connection each running run was last sent on, so it is resent once per reconnect.
    sent_on: Mutex<HashMap<String, usize>>,
    /// Serialises ticks: the background loop and explicit calls never interleave.
    tick_lock: Mutex<()>,
    wake: Notify,
    last_prune_ms: AtomicU64,
}

const PRUNE_EVERY_MS: u64 = 3_600_000;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Run ids sort by due time and are deterministic, so a tick interrupted
/// before its cursor was saved recreates the same runs instead of duplicates.
fn run_id(tenant: &TenantId, job_id: &str, agent: &AgentId, due_ms: u64) -> String {
    let digest = Sha256::digest(format!("{tenant}\n{job_id}\n{agent}\n{due_ms}").as_bytes());
    format!("r{due_ms:013x}-{}", hex::encode(&digest[..6]))
}

impl Scheduler {
    /// A scheduler over the jobs in `settings`.
    pub fn new(
        settings: &Settings,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            schedules: Arc::new(Schedules::from_settings(settings)),
            scopes: settings
                .jobs
                .iter()
                .map(|(t, push)| (t.clone(), push.scope.clone()))
                .collect(),
            store,
            metrics,
            clock,
            run_timeout_ms: ms(settings.run_timeout),
            run_retention_ms: ms(settings.run_retention),
            sessions: Mutex::new(HashMap::new()),
            sent_on: Mutex::new(HashMap::new()),
            tick_lock: Mutex::new(()),
            wake: Notify::new(),
            last_prune_ms: AtomicU64::new(0),
        }
    }

    /// The schedule table.
    pub fn schedules(&self) -> Arc<Schedules> {
        self.schedules.clone()
    }

    /// The scheduler's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Registers a connected agent's session and wakes the scheduler so the
    /// runs it is owed are sent right away.
    pub fn connected(
        &self,
        id: &AgentIdentity,
        conn_id: usize,
        version: u16,
        out: mpsc::Sender<Message>,
    ) {
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(
                id.agent.clone(),
                Connected {
                    conn_id,
                    version,
                    out,
                },
            );
        }
        if version < RUN_REQUESTS_SINCE {
            tracing::warn!(
                "agent {id} speaks protocol {version}: scheduled runs need {RUN_REQUESTS_SINCE}; its runs stay queued"
            );
        }
        self.wake();
    }

    /// Forgets an agent's session if it is still `conn_id`.
    pub fn disconnected(&self, agent: &AgentId, conn_id: usize) {
        if let Ok(mut s) = self.sessions.lock()
            && s.get(agent).is_some_and(|c| c.conn_id == conn_id)
        {
            s.remove(agent);
        }
    }

    /// Makes the background loop tick now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ticks every `period` and whenever woken, until the task is aborted.
    pub async fn run(self: Arc<Self>, period: Duration) {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = self.wake.notified() => {}
            }
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.tick()).await {
                Ok(Ok(s)) if s != TickSummary::default() => {
                    tracing::debug!("scheduler tick: {s:?}")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("scheduler tick failed: {e}"),
                Err(e) => tracing::error!("scheduler tick panicked: {e}"),
            }
        }
    }

    /// Evaluates schedules, dispatches due runs and expires silent ones, as of the clock's now.
    pub fn tick(&self) -> Result<TickSummary, StoreError> {
        let _guard = self.tick_lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        let mut summary = TickSummary::default();
        for job in self.schedules.jobs() {
            // Scale-out: of several collectors only the lock holder fires a job.
            let Some(_held) = self
                .store
                .try_lock_schedule(&job.tenant, &job.spec.job_id)?
            else {
                continue;
            };
            self.evaluate(job, now, &mut summary)?;
        }
        self.dispatch(now, &mut summary)?;
        if now.saturating_sub(self.last_prune_ms.load(Ordering::Relaxed)) >= PRUNE_EVERY_MS {
            self.last_prune_ms.store(now, Ordering::Relaxed);
            let pruned = self
                .store
                .prune_runs(now.saturating_sub(self.run_retention_ms))?;
            if pruned > 0 {
                tracing::info!("pruned {pruned} finished scan run(s) past run_retention");
            }
        }
        if summary != TickSummary::default() {
            self.store.flush()?;
        }
        Ok(summary)
    }

    /// Creates runs for a fire time that passed since the job's cursor.
    fn evaluate(
        &self,
        job: &ScheduledJob,
        now: u64,
        summary: &mut TickSummary,
    ) -> Result<(), StoreError> {
        let (tenant, job_id) = (&job.tenant, job.spec.job_id.as_str());
        let Some(cursor) = self.store.schedule_cursor(tenant, job_id)? else {
            // A new schedule starts from now: no backfill of fire times before it existed.
            self.store.set_schedule_cursor(tenant, job_id, now)?;
            return Ok(());
        };
        if now <= cursor {
            return Ok(());
        }
        let Some(due) = job
            .schedule
            .last_fire_at_or_before(now)
            .filter(|d| *d > cursor)
        else {
            self.store.set_schedule_cursor(tenant, job_id, now)?;
            return Ok(());
        };
        if job
            .schedule
            .next_fire_after(cursor)
            .is_some_and(|first| first < due)
        {
            tracing::warn!(
                "job {tenant}/{job_id}: several fire times passed since the last evaluation; running once, for the latest"
            );
        }
        for agent in self.store.agents(Some(tenant))? {
            let superseded = if agent.revoked_ms.is_some() {
                "agent revoked".to_string()
            } else {
                format!(
                    "superseded by the run due at {}",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_millis(due)
                    )
                )
            };
            for old in self.store.pending_runs(Some(&agent.agent))? {
                if old.job_id == job_id
                    && old.tenant == *tenant
                    && old.status == RunStatus::Queued
                    && old.scheduled_ms < due
                {
                    let updated = self.store.update_run(&old.run_id, &mut |r| {
                        if r.status != RunStatus::Queued {
                            return false;
                        }
                        r.status = RunStatus::Missed;
                        r.error = Some(superseded.clone());
                        true
                    })?;
                    if updated.is_some_and(|r| r.status == RunStatus::Missed) {
                        Metrics::inc(&self.metrics.runs_missed);
                        summary.missed += 1;
                        tracing::info!(
                            "run {} of {tenant}/{job_id} on {} missed: {superseded}",
                            old.run_id,
                            agent.agent
                        );
                    }
                }
            }
            if agent.revoked_ms.is_some() {
                continue;
            }
            let id = run_id(tenant, job_id, &agent.agent, due);
            if self.store.run(&id)?.is_some() {
                continue;
            }
            self.store.put_run(&RunRecord {
                run_id: id,
                tenant: tenant.clone(),
                agent: agent.agent.clone(),
                job_id: job_id.to_string(),
                status: RunStatus::Queued,
                scheduled_ms: due,
                dispatched_ms: None,
                dispatches: 0,
                started_ms: None,
                finished_ms: None,
                observations: 0,
                batches: 0,
                last_sequence: 0,
                error: None,
            })?;
            summary.created += 1;
        }
        self.store.set_schedule_cursor(tenant, job_id, now)?;
        Ok(())
    }

    /// Sends queued runs to connected agents inside their windows; resends
    /// running runs to agents that reconnected; fails runs past the timeout.
    fn dispatch(&self, now: u64, summary: &mut TickSummary) -> Result<(), StoreError> {
        for run in self.store.pending_runs(None)? {
            if run.status == RunStatus::Running
                && now.saturating_sub(run.dispatched_ms.unwrap_or(run.scheduled_ms))
                    > self.run_timeout_ms
            {
                let why = "no report from the agent within run_timeout".to_string();
                let updated = self.store.update_run(&run.run_id, &mut |r| {
                    if r.status != RunStatus::Running {
                        return false;
                    }
                    r.status = RunStatus::Failed;
                    r.finished_ms.get_or_insert(now);
                    r.error = Some(why.clone());
                    true
                })?;
                self.finished(&run.run_id);
                if updated.is_some_and(|r| r.status == RunStatus::Failed) {
                    Metrics::inc(&self.metrics.runs_failed);
                    summary.timed_out += 1;
                    tracing::warn!(
                        "run {} of {}/{} on {}: {why}",
                        run.run_id,
                        run.tenant,
                        run.job_id,
                        run.agent
                    );
                }
                continue;
            }
            let Some(job) = self.schedules.find(&run.tenant, &run.job_id) else {
                // The job was removed from the configuration since the run was created.
                if run.status == RunStatus::Queued {
                    self.store.update_run(&run.run_id, &mut |r| {
                        r.status = RunStatus::Missed;
                        r.error = Some("job is no longer scheduled".into());
                        true
                    })?;
                    Metrics::inc(&self.metrics.runs_missed);
                    summary.missed += 1;
                }
                continue;
            };
            if run.status == RunStatus::Queued && !job.schedule.window_open(now) {
                continue;
            }
            // A running run is resent only to a session that connected after
            // the last dispatch (the agent may have lost it with the connection).
            let out = {
                let Ok(sessions) = self.sessions.lock() else {
                    continue;
                };
                let Some(c) = sessions.get(&run.agent) else {
                    continue;
                };
                if c.version < RUN_REQUESTS_SINCE {
                    continue;
                }
                if run.status == RunStatus::Running && !self.resend_due(&run, c.conn_id) {
                    continue;
                }
                (c.out.clone(), c.conn_id)
            };
            let request = Message::RunJob(RunRequest {
                run_id: run.run_id.clone(),
                job: job.spec.clone(),
                scope: self.scopes.get(&run.tenant).cloned().unwrap_or_default(),
                scheduled_ms: run.scheduled_ms,
            });
            if out.0.try_send(request).is_err() {
                // Session closing or backed up: the run stays as it is and is retried next tick.
                continue;
            }
            let conn_id = out.1;
            self.store.update_run(&run.run_id, &mut |r| {
                if !r.status.is_pending() {
                    return false;
                }
                r.status = RunStatus::Running;
                r.dispatched_ms = Some(now);
                r.dispatches += 1;
                true
            })?;
            self.sent_on(&run.run_id, conn_id);
            Metrics::inc(&self.metrics.runs_dispatched);
            summary.dispatched += 1;
            tracing::info!(
                "run {} of {}/{} (due {}) sent to agent {}",
                run.run_id,
                run.tenant,
                run.job_id,
                run.scheduled_ms,
                run.agent
            );
        }
        Ok(())
    }

    fn resend_due(&self, run: &RunRecord, conn_id: usize) -> bool {
        self.sent_on
            .lock()
            .map(|m| m.get(&run.run_id) != Some(&conn_id))
            .unwrap_or(true)
    }

    fn sent_on(&self, run_id: &str, conn_id: usize) {
        if let Ok(mut m) = self.sent_on.lock() {
            m.insert(run_id.to_string(), conn_id);
        }
    }

    fn finished(&self, run_id: &str) {
        if let Ok(mut m) = self.sent_on.lock() {
            m.remove(run_id);
        }
    }

    /// Queues a run of a scheduled job now, one per unrevoked agent of the
    /// tenant, and wakes the dispatcher. The job's windows still apply: a run
    /// requested outside them starts when the next window opens, so an
    /// on-demand scan cannot hit production outside agreed hours.
    pub fn run_now(&self, tenant: &TenantId, job_id: &str) -> Result<Vec<RunRecord>, RunNowError> {
        if self.schedules.find(tenant, job_id).is_none() {
            return Err(RunNowError::UnknownJob {
                tenant: tenant.clone(),
                job_id: job_id.to_string(),
            });
        }
        let _guard = self.tick_lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        let mut created = Vec::new();
        for agent in self.store.agents(Some(tenant))? {
            if agent.revoked_ms.is_some() {
                continue;
            }
            // "manual" keeps on-demand ids apart from a scheduled fire at the same ms.
            let id = run_id(tenant, &format!("{job_id}\nmanual"), &agent.agent, now);
            if let Some(existing) = self.store.run(&id)? {
                created.push(existing);
                continue;
            }
            let run = RunRecord {
                run_id: id,
                tenant: tenant.clone(),
                agent: agent.agent.clone(),
                job_id: job_id.to_string(),
                status: RunStatus::Queued,
                scheduled_ms: now,
                dispatched_ms: None,
                dispatches: 0,
                started_ms: None,
                finished_ms: None,
                observations: 0,
                batches: 0,
                last_sequence: 0,
                error: None,
            };
            self.store.put_run(&run)?;
            created.push(run);
        }
        if created.is_empty() {
            return Err(RunNowError::NoAgents(tenant.clone()));
        }
        self.store.flush()?;
        tracing::info!(
            "{} on-demand run(s) of {tenant}/{job_id} queued",
            created.len()
        );
        self.wake();
        Ok(created)
    }

    /// Records the outcome an agent reported.
    pub fn report(&self, id: &AgentIdentity, report: RunReport) -> Result<RunRecord, ReportError> {
        let Some(run) = self.store.run(&report.run_id)? else {
            return Err(ReportError::UnknownRun(report.run_id));
        };
        if run.agent != id.agent || run.tenant != id.tenant || run.job_id != report.job_id {
            return Err(ReportError::NotYours {
                run_id: report.run_id,
                agent: id.clone(),
                job_id: report.job_id,
            });
        }
        let status = match report.outcome {
            RunOutcome::Succeeded => RunStatus::Succeeded,
            RunOutcome::Failed => RunStatus::Failed,
        };
        let mut changed = false;
        let updated = self
            .store
            .update_run(&report.run_id, &mut |r| {
                // A resent report of a run already recorded changes nothing; a
                // late report still replaces a timeout, being the better account.
                let timed_out = r.status == RunStatus::Failed && r.started_ms.is_none();
                if !r.status.is_pending() && !timed_out {
                    changed = false;
                    return false;
                }
                r.status = status;
                r.started_ms = Some(report.started_ms);
                r.finished_ms = Some(report.finished_ms.max(report.started_ms));
                r.observations = report.records;
                r.batches = report.batches;
                r.last_sequence = report.last_sequence;
                r.error = report.error.clone();
                changed = true;
                true
            })?
            .ok_or_else(|| ReportError::UnknownRun(report.run_id.clone()))?;
        self.finished(&report.run_id);
        if changed {
            self.store.flush()?;
            match status {
                RunStatus::Succeeded => Metrics::inc(&self.metrics.runs_succeeded),
                _ => Metrics::inc(&self.metrics.runs_failed),
            }
            tracing::info!(
                "run {} of {}/{} on {}: {} in {} ms, {} observation(s)",
                updated.run_id,
                updated.tenant,
                updated.job_id,
                updated.agent,
                updated.status.as_str(),
                updated.duration_ms().unwrap_or(0),
                updated.observations
            );
        }
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CollectorConfig, JobConfig, ScopeConfig, TenantConfig};
    use crate::store::{AgentRecord, RunFilter, SledStore};
    use crate::time::ManualClock;
    use protocol::CheckKind;

    /// Monday 2030-01-07 00:00:00 UTC.
    const MONDAY_MS: u64 = 1_893_974_400_000;
    const HOUR: u64 = 3_600_000;

    struct Fixture {
        scheduler: Scheduler,
        store: Arc<dyn Store>,
        clock: Arc<ManualClock>,
        metrics: Arc<Metrics>,
        _dir: tempfile::TempDir,
    }

    fn fixture(agents: &[(&str, bool)]) -> Fixture {
        let mut tenants = BTreeMap::new();
        tenants.insert(
            "acme".to_string(),
            TenantConfig {
                scope: ScopeConfig {
                    cidrs: vec!["10.0.0.0/24".into()],
                    hostnames: vec![],
                    ports: "443".into(),
                },
                jobs: vec![JobConfig {
                    id: "hourly".into(),
                    targets: vec!["10.0.0.1".into()],
                    ports: None,
                    checks: vec![CheckKind::Tls],
                    every: None,
                    schedule: Some("0 0 * * * *".into()),
                    windows: vec![],
                    timezone: None,
                }],
            },
        );
        let settings = CollectorConfig {
            run_timeout: "1h".into(),
            tenants,
            ..CollectorConfig::default()
        }
        .validate()
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        for (name, revoked) in agents {
            store
                .put_agent(&AgentRecord {
                    tenant: TenantId::new("acme").unwrap(),
                    agent: AgentId::new(*name).unwrap(),
                    hostname: "h".into(),
                    signing_key: [0; 32],
                    enrolled_ms: 0,
                    cert_not_after_ms: u64::MAX,
                    revoked_ms: revoked.then_some(1),
                    last_seen_ms: 0,
                })
                .unwrap();
        }
        let clock = Arc::new(ManualClock::new(MONDAY_MS + HOUR / 2));
        let metrics = Arc::new(Metrics::default());
        let scheduler = Scheduler::new(&settings, store.clone(), metrics.clone(), clock.clone());
        scheduler.tick().unwrap();
        Fixture {
            scheduler,
            store,
            clock,
            metrics,
            _dir: dir,
        }
    }

    fn identity(agent: &str) -> AgentIdentity {
        AgentIdentity {
            tenant: TenantId::new("acme").unwrap(),
            agent: AgentId::new(agent).unwrap(),
        }
    }

    fn drain(rx: &mut mpsc::Receiver<Message>) -> Vec<RunRequest> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            if let Message::RunJob(r) = m {
                out.push(r);
            }
        }
        out
    }

    fn report(run_id: &str, outcome: RunOutcome) -> RunReport {
        RunReport {
            run_id: run_id.into(),
            job_id: "hourly".into(),
            outcome,
            started_ms: 10,
            finished_ms: 25,
            records: 7,
            batches: 1,
            last_sequence: 3,
            error: None,
        }
    }

    #[test]
    fn fire_times_missed_by_the_collector_collapse_and_revoked_agents_get_none() {
        let f = fixture(&[("ag-1", false), ("ag-gone", true)]);
        // Three fire times pass between two ticks (collector down).
        f.clock.set(MONDAY_MS + 3 * HOUR + 5);
        let t = f.scheduler.tick().unwrap();
        assert_eq!(t.created, 1);
        let runs = f.store.runs(&RunFilter::default()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].agent.as_str(), "ag-1");
        assert_eq!(runs[0].scheduled_ms, MONDAY_MS + 3 * HOUR);
        // Ticking again at the same time creates nothing more.
        assert_eq!(f.scheduler.tick().unwrap(), TickSummary::default());
    }

    #[test]
    fn run_now_queues_one_run_per_live_agent_and_dispatches_it() {
        let f = fixture(&[("ag-1", false), ("ag-gone", true)]);
        let (tx, mut rx) = mpsc::channel(8);
        f.scheduler
            .connected(&identity("ag-1"), 1, RUN_REQUESTS_SINCE, tx);
        let acme = TenantId::new("acme").unwrap();
        let runs = f.scheduler.run_now(&acme, "hourly").unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].agent.as_str(), "ag-1");
        assert_eq!(runs[0].status, RunStatus::Queued);
        assert_eq!(runs[0].scheduled_ms, f.clock.now_ms());
        // Asking twice in the same millisecond does not double the run.
        assert_eq!(
            f.scheduler.run_now(&acme, "hourly").unwrap()[0].run_id,
            runs[0].run_id
        );
        assert_eq!(f.store.runs(&RunFilter::default()).unwrap().len(), 1);
        assert_eq!(f.scheduler.tick().unwrap().dispatched, 1);
        let sent = drain(&mut rx);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].run_id, runs[0].run_id);
        assert!(matches!(
            f.scheduler.run_now(&acme, "nightly"),
            Err(RunNowError::UnknownJob { .. })
        ));
        let other = TenantId::new("globex").unwrap();
        assert!(matches!(
            f.scheduler.run_now(&other, "hourly"),
            Err(RunNowError::UnknownJob { .. })
        ));
    }

    #[test]
    fn run_now_without_live_agents_is_refused() {
        let f = fixture(&[("ag-gone", true)]);
        let acme = TenantId::new("acme").unwrap();
        assert!(matches!(
            f.scheduler.run_now(&acme, "hourly"),
            Err(RunNowError::NoAgents(_))
        ));
    }

    #[test]
    fn old_protocol_sessions_get_no_run_requests() {
        let f = fixture(&[("ag-1", false)]);
        let (tx, mut rx) = mpsc::channel(8);
        f.scheduler.connected(&identity("ag-1"), 1, 1, tx);
        f.clock.set(MONDAY_MS + HOUR);
        assert_eq!(f.scheduler.tick().unwrap().dispatched, 0);
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn running_runs_are_resent_once_per_reconnect_and_time_out() {
        let f = fixture(&[("ag-1", false)]);
        let (tx, mut rx) = mpsc::channel(8);
        f.scheduler
            .connected(&identity("ag-1"), 1, RUN_REQUESTS_SINCE, tx.clone());
        f.clock.set(MONDAY_MS + HOUR);
        f.scheduler.tick().unwrap();
        let sent = drain(&mut rx);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].scope.cidrs, vec!["10.0.0.0/24".to_string()]);
        // Same connection: not sent again.
        f.scheduler.tick().unwrap();
        assert!(drain(&mut rx).is_empty());
        // A new connection gets it again (the agent may have lost it).
        f.scheduler.disconnected(&identity("ag-1").agent, 1);
        f.scheduler
            .connected(&identity("ag-1"), 2, RUN_REQUESTS_SINCE, tx);
        f.scheduler.tick().unwrap();
        let again = drain(&mut rx);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].run_id, sent[0].run_id);
        assert_eq!(f.store.run(&sent[0].run_id).unwrap().unwrap().dispatches, 2);
        // No report within run_timeout (1h) of the last dispatch: failed.
        f.clock.set(MONDAY_MS + 2 * HOUR + 1);
        let t = f.scheduler.tick().unwrap();
        assert_eq!(t.timed_out, 1);
        let run = f.store.run(&sent[0].run_id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        assert!(run.error.unwrap().contains("run_timeout"));
        // A late report is still the better account and replaces the timeout.
        let run = f
            .scheduler
            .report(
                &identity("ag-1"),
                report(&sent[0].run_id, RunOutcome::Succeeded),
            )
            .unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(run.duration_ms(), Some(15));
        assert_eq!(f.metrics.runs_failed.load(Ordering::Relaxed), 1);
        assert_eq!(f.metrics.runs_succeeded.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn reports_must_name_the_agents_own_run() {
        let f = fixture(&[("ag-1", false), ("ag-2", false)]);
        let (tx, mut rx) = mpsc::channel(8);
        f.scheduler
            .connected(&identity("ag-1"), 1, RUN_REQUESTS_SINCE, tx);
        f.clock.set(MONDAY_MS + HOUR);
        f.scheduler.tick().unwrap();
        let run_id = drain(&mut rx).remove(0).run_id;
        assert!(matches!(
            f.scheduler
                .report(&identity("ag-2"), report(&run_id, RunOutcome::Succeeded)),
            Err(ReportError::NotYours { .. })
        ));
        assert!(matches!(
            f.scheduler
                .report(&identity("ag-1"), report("r-nope", RunOutcome::Succeeded)),
            Err(ReportError::UnknownRun(_))
        ));
        let mut failed = report(&run_id, RunOutcome::Failed);
        failed.error = Some("target refused".into());
        let run = f.scheduler.report(&identity("ag-1"), failed).unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        // A resent report of a finished run changes nothing and counts nothing.
        let again = f
            .scheduler
            .report(&identity("ag-1"), report(&run_id, RunOutcome::Succeeded))
            .unwrap();
        assert_eq!(again.status, RunStatus::Failed);
        assert_eq!(f.metrics.runs_failed.load(Ordering::Relaxed), 1);
        assert_eq!(f.metrics.runs_succeeded.load(Ordering::Relaxed), 0);
        // ag-2's run is still queued: it never connected.
        let pending = f.store.pending_runs(None).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].agent.as_str(), "ag-2");
        assert_eq!(pending[0].status, RunStatus::Queued);
    }

    #[test]
    fn finished_runs_are_pruned_after_retention_and_listed_newest_first() {
        let f = fixture(&[("ag-1", false)]);
        f.clock.set(MONDAY_MS + HOUR);
        f.scheduler.tick().unwrap();
        f.clock.set(MONDAY_MS + 2 * HOUR);
        f.scheduler.tick().unwrap();
        let runs = f.store.runs(&RunFilter::default()).unwrap();
        assert_eq!(runs.len(), 2);
        // Newest first; the older one was superseded.
        assert_eq!(runs[0].status, RunStatus::Queued);
        assert_eq!(runs[1].status, RunStatus::Missed);
        let limited = f
            .store
            .runs(&RunFilter {
                limit: Some(1),
                ..RunFilter::default()
            })
            .unwrap();
        assert_eq!(limited, runs[..1]);
        // Only finished runs due before the cut-off go.
        assert_eq!(f.store.prune_runs(MONDAY_MS + 3 * HOUR).unwrap(), 1);
        assert_eq!(f.store.runs(&RunFilter::default()).unwrap(), runs[..1]);
    }
}
