//! The report service: requests, the background worker and retention.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use protocol::TenantId;
use tokio::sync::Notify;

use super::config::ReportSettings;
use super::model::ReportInput;
use super::store::ReportStore;
use super::{ReportError, ReportFormat, ReportMeta, ReportStatus, random_id, render};
use crate::compliance_metrics::ComplianceMetrics;
use crate::findings::FindingError;
use crate::findings::pipeline::Pipeline;
use crate::time::Clock;

/// A finished report's file.
#[derive(Debug, Clone)]
pub struct ReportFile {
    /// Metadata.
    pub meta: ReportMeta,
    /// File contents.
    pub bytes: Vec<u8>,
}

/// `<reports_dir>/<tenant>/<id>.<ext>`; `reports_dir` is `<data_dir>/reports`.
pub fn report_path(reports_dir: &Path, meta: &ReportMeta) -> PathBuf {
    reports_dir
        .join(&meta.tenant)
        .join(format!("{}.{}", meta.id, meta.format.extension()))
}

/// Requests, lists and generates reports.
pub struct ReportService {
    store: ReportStore,
    pipeline: Arc<Pipeline>,
    dir: PathBuf,
    settings: ReportSettings,
    clock: Arc<dyn Clock>,
    metrics: Arc<ComplianceMetrics>,
    notify: Notify,
}

impl ReportService {
    /// A service over `db`, writing files under `<data_dir>/reports`.
    pub fn new(
        db: &sled::Db,
        pipeline: Arc<Pipeline>,
        data_dir: &Path,
        settings: ReportSettings,
        clock: Arc<dyn Clock>,
        metrics: Arc<ComplianceMetrics>,
    ) -> Result<Self, ReportError> {
        let store = ReportStore::open(db)?;
        metrics
            .reports_queued
            .store(store.queue_len() as u64, Ordering::Relaxed);
        Ok(Self {
            store,
            pipeline,
            dir: data_dir.join("reports"),
            settings,
            clock,
            metrics,
            notify: Notify::new(),
        })
    }

    /// Path of a report's file.
    pub fn file_path(&self, meta: &ReportMeta) -> PathBuf {
        report_path(&self.dir, meta)
    }

    /// Queues a report; the worker picks it up at once.
    pub fn request(
        &self,
        tenant: &TenantId,
        framework: &str,
        format: ReportFormat,
        requested_by: &str,
    ) -> Result<ReportMeta, ReportError> {
        if !self
            .pipeline
            .rules()
            .frameworks()
            .iter()
            .any(|f| f.key == framework)
        {
            let known: Vec<&str> = self
                .pipeline
                .rules()
                .frameworks()
                .iter()
                .map(|f| f.key.as_str())
                .collect();
            return Err(ReportError::Invalid(format!(
                "unknown framework {framework:?} (known: {})",
                known.join(", ")
            )));
        }
        let pending = self
            .store
            .list(tenant.as_str())?
            .iter()
            .filter(|m| matches!(m.status, ReportStatus::Queued | ReportStatus::Running))
            .count();
        if pending >= self.settings.max_queued_per_tenant {
            return Err(ReportError::Busy(format!(
                "{pending} reports are already waiting; try again when they are done"
            )));
        }
        let meta = ReportMeta {
            id: random_id("r")?,
            tenant: tenant.to_string(),
            framework: framework.to_string(),
            format,
            status: ReportStatus::Queued,
            progress: 0,
            created_ms: self.clock.now_ms(),
            started_ms: None,
            finished_ms: None,
            size_bytes: None,
            error: None,
            requested_by: requested_by.to_string(),
        };
        self.store.enqueue(&meta)?;
        self.metrics.reports_queued.fetch_add(1, Ordering::Relaxed);
        tracing::info!(tenant = %tenant, id = %meta.id, framework, format = format.as_str(), "report queued");
        self.notify.notify_one();
        Ok(meta)
    }

    /// One report of a tenant.
    pub fn get(&self, tenant: &TenantId, id: &str) -> Result<ReportMeta, ReportError> {
        self.store
            .get(tenant.as_str(), id)?
            .ok_or_else(|| ReportError::NotFound(format!("report {id}")))
    }

    /// Reports of a tenant, newest first.
    pub fn list(&self, tenant: &TenantId) -> Result<Vec<ReportMeta>, ReportError> {
        self.store.list(tenant.as_str())
    }

    /// The file of a report; `Ok(None)` while it is not done.
    pub fn file(&self, tenant: &TenantId, id: &str) -> Result<Option<ReportFile>, ReportError> {
        let meta = self.get(tenant, id)?;
        if meta.status != ReportStatus::Done {
            return Ok(None);
        }
        let path = self.file_path(&meta);
        let bytes = std::fs::read(&path).map_err(|source| ReportError::File {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Some(ReportFile { meta, bytes }))
    }

    /// Generates the oldest queued report; `false` when the queue is empty.
    pub fn process_next(&self) -> Result<bool, ReportError> {
        let Some((seq, tenant, id)) = self.store.head()? else {
            return Ok(false);
        };
        let mut meta = match self.store.get(&tenant, &id) {
            Ok(Some(m)) => m,
            // Deleted while queued.
            Ok(None) => {
                self.store.dequeue(&seq)?;
                return Ok(true);
            }
            // An undecodable entry would block the queue forever.
            Err(e @ ReportError::Corrupt(_)) => {
                tracing::error!(tenant, id, "dropping unreadable queued report: {e}");
                self.store.dequeue(&seq)?;
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        if matches!(meta.status, ReportStatus::Done | ReportStatus::Failed) {
            self.store.dequeue(&seq)?;
            return Ok(true);
        }
        meta.status = ReportStatus::Running;
        meta.progress = 5;
        meta.started_ms = Some(self.clock.now_ms());
        self.store.put(&meta)?;
        // A panic while rendering fails this report instead of retrying it forever.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.generate(&mut meta)))
                .unwrap_or_else(|_| Err(ReportError::Invalid("report rendering panicked".into())));
        meta.finished_ms = Some(self.clock.now_ms());
        match result {
            Ok(size) => {
                meta.status = ReportStatus::Done;
                meta.progress = 100;
                meta.size_bytes = Some(size);
                meta.error = None;
                self.metrics.reports_done.fetch_add(1, Ordering::Relaxed);
                self.metrics.report_bytes.fetch_add(size, Ordering::Relaxed);
                tracing::info!(tenant, id, size, "report generated");
            }
            Err(e) => {
                meta.status = ReportStatus::Failed;
                meta.error = Some(e.to_string());
                self.metrics.reports_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tenant, id, "report generation failed: {e}");
            }
        }
        self.store.put(&meta)?;
        self.store.dequeue(&seq)?;
        self.metrics
            .reports_queued
            .store(self.store.queue_len() as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn generate(&self, meta: &mut ReportMeta) -> Result<u64, ReportError> {
        let tenant = TenantId::new(meta.tenant.as_str())
            .map_err(|e| ReportError::Invalid(format!("tenant: {e}")))?;
        let input = ReportInput::gather(
            &self.pipeline,
            &tenant,
            &meta.framework,
            self.clock.now_ms(),
            self.settings.change_history,
        )?;
        self.set_progress(meta, 40)?;
        let mut last_err = None;
        let bytes = render(&input, meta.format, &mut |p| {
            if let Err(e) = self.set_progress(meta, p) {
                last_err = Some(e);
            }
        });
        if let Some(e) = last_err {
            return Err(e);
        }
        let path = self.file_path(meta);
        let io = |source| ReportError::File {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // Written aside and renamed, so a crash never leaves a torn file under the final name.
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(bytes.len() as u64)
    }

    fn set_progress(&self, meta: &mut ReportMeta, p: u8) -> Result<(), ReportError> {
        meta.progress = p.min(99);
        self.store.put(meta)
    }

    /// Deletes finished reports past the retention or beyond the per-tenant limit.
    pub fn sweep(&self) -> Result<usize, ReportError> {
        let now = self.clock.now_ms();
        let cutoff = now.saturating_sub(self.settings.retention.as_millis() as u64);
        let mut by_tenant: std::collections::BTreeMap<String, Vec<ReportMeta>> =
            std::collections::BTreeMap::new();
        for m in self.store.all()? {
            if matches!(m.status, ReportStatus::Done | ReportStatus::Failed) {
                by_tenant.entry(m.tenant.clone()).or_default().push(m);
            }
        }
        let mut removed = 0;
        for (_, mut list) in by_tenant {
            list.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
            for (i, m) in list.iter().enumerate() {
                if i >= self.settings.max_per_tenant
                    || m.finished_ms.unwrap_or(m.created_ms) < cutoff
                {
                    let path = self.file_path(m);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(ReportError::File {
                                path: path.display().to_string(),
                                source,
                            });
                        }
                    }
                    self.store.remove(&m.tenant, &m.id)?;
                    removed += 1;
                }
            }
        }
        self.metrics
            .reports_expired
            .fetch_add(removed as u64, Ordering::Relaxed);
        Ok(removed)
    }

    /// Runs the worker: generates queued reports one at a time off the async
    /// runtime, then sleeps until a new request or the next retention sweep.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                loop {
                    let s = self.clone();
                    match tokio::task::spawn_blocking(move || s.process_next()).await {
                        Ok(Ok(true)) => continue,
                        Ok(Ok(false)) => break,
                        Ok(Err(e)) => {
                            tracing::error!("report worker: {e}");
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            break;
                        }
                        Err(e) => {
                            tracing::error!("report worker panicked: {e}");
                            break;
                        }
                    }
                }
                let s = self.clone();
                match tokio::task::spawn_blocking(move || s.sweep()).await {
                    Ok(Err(e)) => tracing::warn!("report retention sweep: {e}"),
                    Err(e) => tracing::error!("report retention sweep panicked: {e}"),
                    Ok(Ok(_)) => {}
                }
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(300)) => {}
                }
            }
        })
    }
}

impl From<ReportError> for FindingError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Findings(f) => f,
            ReportError::NotFound(m) => FindingError::NotFound(m),
            ReportError::Invalid(m) | ReportError::Busy(m) => FindingError::Invalid(m),
            other => FindingError::Backend(other.to_string()),
        }
    }
}
