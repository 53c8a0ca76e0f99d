//! Runs the jobs the collector pushes and spools their results in signed batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{JobPush, JobSpec, Record, Scope};
use tokio::sync::watch;

use crate::scan::{self, ScanOptions};
use crate::spool::{Spool, SpoolError};

/// Splits `records` into batches of `batch_records` and spools each durably.
pub async fn spool_records(
    spool: &Arc<Spool>,
    records: Vec<Record>,
    batch_records: usize,
) -> Result<u64, SpoolError> {
    let mut batches = 0;
    let mut it = records.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<Record> = it.by_ref().take(batch_records.max(1)).collect();
        let s = spool.clone();
        tokio::task::spawn_blocking(move || s.append(chunk))
            .await
            .map_err(|e| SpoolError::Io {
                path: spool.dir().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })??;
        batches += 1;
    }
    Ok(batches)
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
