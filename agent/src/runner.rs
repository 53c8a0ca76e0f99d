//! Runs the jobs the collector pushes and spools their results in signed batches.
//!
//! Two kinds of work coexist: the pushed job list ([`run_jobs`]: jobs with
//! `every_secs` loop on the agent's own clock, the others run once per push),
//! and collector-scheduled runs ([`run_requests`]: one `RunJob` per cron fire,
//! answered with a `RunReport`). The collector never puts a scheduled job in
//! the push, so a job is driven by exactly one of the two.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{JobPush, JobSpec, Record, RunOutcome, RunReport, RunRequest, Scope};
use tokio::sync::{mpsc, watch};

use crate::scan::{self, ScanOptions};
use crate::spool::{Spool, SpoolError};

/// Splits `records` into batches of `batch_records` and spools each durably.
pub async fn spool_records(
    spool: &Arc<Spool>,
    records: Vec<Record>,
    batch_records: usize,
) -> Result<u64, SpoolError> {
    Ok(spool_batches(spool, records, batch_records).await?.batches)
}

/// Where a run's results went in the spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spooled {
    /// Batches written.
    pub batches: u64,
    /// Sequence of the last of them (0 when none).
    pub last_sequence: u64,
}

/// Like [`spool_records`], also returning the last batch's sequence.
pub async fn spool_batches(
    spool: &Arc<Spool>,
    records: Vec<Record>,
    batch_records: usize,
) -> Result<Spooled, SpoolError> {
    let mut out = Spooled::default();
    let mut it = records.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<Record> = it.by_ref().take(batch_records.max(1)).collect();
        let s = spool.clone();
        out.last_sequence = tokio::task::spawn_blocking(move || s.append(chunk))
            .await
            .map_err(|e| SpoolError::Io {
                path: spool.dir().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })??;
        out.batches += 1;
    }
    Ok(out)
}

/// Follows job pushes until the sender goes away; a changed push restarts the jobs.
pub async fn run_jobs(
    mut pushes: watch::Receiver<Option<JobPush>>,
    spool: Arc<Spool>,
    batch_records: usize,
    opts: ScanOptions,
) {
    let mut current: Option<JobPush> = None;
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    while pushes.changed().await.is_ok() {
        let push = pushes.borrow_and_update().clone();
        // Every reconnect repeats the push; only a real change restarts the jobs.
        if push.is_none() || push == current {
            continue;
        }
        for t in tasks.drain(..) {
            t.abort();
        }
        current = push;
        if let Some(push) = &current {
            for job in &push.jobs {
                tasks.push(tokio::spawn(job_loop(
                    job.clone(),
                    push.scope.clone(),
                    spool.clone(),
                    batch_records,
                    opts.clone(),
                )));
            }
        }
    }
    for t in tasks {
        t.abort();
    }
}

async fn job_loop(
    job: JobSpec,
    scope: Scope,
    spool: Arc<Spool>,
    batch_records: usize,
    opts: ScanOptions,
) {
    loop {
        let started = Instant::now();
        tracing::info!("job {}: scanning {:?}", job.job_id, job.targets);
        match scan::run_job(&job, &scope, &opts).await {
            Ok(records) => {
                let n = records.len();
                match spool_records(&spool, records, batch_records).await {
                    Ok(b) => tracing::info!(
                        "job {}: {n} observations in {b} batch(es), {:.1}s",
                        job.job_id,
                        started.elapsed().as_secs_f64()
                    ),
                    Err(e) => tracing::error!("job {}: results not spooled: {e}", job.job_id),
                }
            }
            Err(e) => tracing::error!("job {} refused: {e}", job.job_id),
        }
        match job.every_secs {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => return,
        }
    }
}

/// Run ids remembered, so a resent request is neither run twice nor left unanswered.
const RUN_LEDGER: usize = 1024;

/// Executes collector-scheduled runs until the request channel closes.
///
/// Each run id runs at most once per agent process: a resent request for a
/// run still in progress is ignored, and one for a finished run is answered
/// with the same report again (the first may have been lost with a
/// connection). Results are spooled before the report is handed on.
pub async fn run_requests(
    mut requests: mpsc::Receiver<RunRequest>,
    reports: mpsc::Sender<RunReport>,
    spool: Arc<Spool>,
    batch_records: usize,
    opts: ScanOptions,
) {
    let mut ledger: HashMap<String, Option<RunReport>> = HashMap::new();
    let mut order: VecDeque<String> = VecDeque::new();
    let (done_tx, mut done_rx) = mpsc::channel::<RunReport>(RUN_LEDGER);
    loop {
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { break };
                match ledger.get(&req.run_id) {
                    Some(Some(report)) => {
                        tracing::info!("run {} already finished; reporting again", req.run_id);
                        if reports.send(report.clone()).await.is_err() {
                            break;
                        }
                    }
                    Some(None) => tracing::debug!("run {} is already running", req.run_id),
                    None => {
                        ledger.insert(req.run_id.clone(), None);
                        order.push_back(req.run_id.clone());
                        while order.len() > RUN_LEDGER {
                            if let Some(old) = order.pop_front() {
                                ledger.remove(&old);
                            }
                        }
                        let (spool, opts, done) = (spool.clone(), opts.clone(), done_tx.clone());
                        tokio::spawn(async move {
                            let report = execute_run(&req, &spool, batch_records, &opts).await;
                            let _ = done.send(report).await;
                        });
                    }
                }
            }
            Some(report) = done_rx.recv() => {
                if let Some(slot) = ledger.get_mut(&report.run_id) {
                    *slot = Some(report.clone());
                }
                if reports.send(report).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Runs one requested job and spools its results; never panics on bad input.
pub async fn execute_run(
    req: &RunRequest,
    spool: &Arc<Spool>,
    batch_records: usize,
    opts: &ScanOptions,
) -> RunReport {
    let started_ms = scan::now_ms();
    let job = &req.job;
    tracing::info!(
        "run {} of job {}: scanning {:?}",
        req.run_id,
        job.job_id,
        job.targets
    );
    let mut report = RunReport {
        run_id: req.run_id.clone(),
        job_id: job.job_id.clone(),
        outcome: RunOutcome::Failed,
        started_ms,
        finished_ms: started_ms,
        records: 0,
        batches: 0,
        last_sequence: 0,
        error: None,
    };
    match scan::run_job(job, &req.scope, opts).await {
        Ok(records) => {
            report.records = records.len() as u64;
            match spool_batches(spool, records, batch_records).await {
                Ok(s) => {
                    report.outcome = RunOutcome::Succeeded;
                    report.batches = s.batches;
                    report.last_sequence = s.last_sequence;
                }
                Err(e) => report.error = Some(format!("results not spooled: {e}")),
            }
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    report.finished_ms = scan::now_ms().max(started_ms);
    match &report.error {
        None => tracing::info!(
            "run {}: {} observations in {} batch(es), {} ms",
            report.run_id,
            report.records,
            report.batches,
            report.finished_ms - started_ms
        ),
        Some(e) => tracing::error!("run {} failed: {e}", report.run_id),
    }
    report
}
