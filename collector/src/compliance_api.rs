//! Reports and NIS2 incidents inside the running collector: opens their
//! services over the sled database, runs their background tasks, implements
//! [`console::compliance::ComplianceOps`] and serves the report CLI requests.

use std::path::Path;
use std::sync::Arc;

use console::OpsError;
use console::compliance::{ComplianceOps, Download};
use protocol::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compliance_metrics::ComplianceMetrics;
use crate::config::Settings;
use crate::findings::pipeline::Pipeline;
use crate::incidents::{IncidentError, IncidentPatch, IncidentService, NewIncident, Stage};
use crate::reports::{ReportError, ReportFormat, ReportService};
use crate::time::Clock;

/// Report and incident services of one collector.
pub struct Compliance {
    /// Report queue, worker and files.
    pub reports: Arc<ReportService>,
    /// Incident records and reminders.
    pub incidents: Arc<IncidentService>,
    /// Their counters.
    pub metrics: Arc<ComplianceMetrics>,
}

impl Compliance {
    /// Opens both services in `db` with the configured `[reports]` and `[incidents]` settings.
    pub fn open(
        settings: &Settings,
        db: &sled::Db,
        pipeline: Arc<Pipeline>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let rs = settings.raw.reports.validate().map_err(|e| e.to_string())?;
        let is = settings
            .raw
            .incidents
            .validate()
            .map_err(|e| e.to_string())?;
        Self::with_settings(&settings.raw.data_dir, db, pipeline, clock, rs, is)
    }

    /// Opens both services with explicit settings.
    pub fn with_settings(
        data_dir: &Path,
        db: &sled::Db,
        pipeline: Arc<Pipeline>,
        clock: Arc<dyn Clock>,
        reports: crate::reports::config::ReportSettings,
        incidents: crate::reports::config::IncidentSettings,
    ) -> Result<Self, String> {
        let metrics = Arc::new(ComplianceMetrics::default());
        let r = ReportService::new(
            db,
            pipeline.clone(),
            data_dir,
            reports,
            clock.clone(),
            metrics.clone(),
        )
        .map_err(|e| e.to_string())?;
        let i = IncidentService::new(db, Some(pipeline), incidents, clock, metrics.clone())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            reports: Arc::new(r),
            incidents: Arc::new(i),
            metrics,
        })
    }

    /// Starts the report worker and the reminder check.
    pub fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        vec![self.reports.clone().spawn(), self.incidents.clone().spawn()]
    }

    /// The console's view of both services.
    pub fn ops(&self) -> Arc<dyn ComplianceOps> {
        Arc::new(ComplianceApi {
            reports: self.reports.clone(),
            incidents: self.incidents.clone(),
        })
    }
}

/// [`ComplianceOps`] over the services.
pub struct ComplianceApi {
    reports: Arc<ReportService>,
    incidents: Arc<IncidentService>,
}

fn report_err(e: ReportError) -> OpsError {
    match e {
        ReportError::NotFound(m) => OpsError::NotFound(m),
        ReportError::Invalid(m) | ReportError::Busy(m) => OpsError::Invalid(m),
        ReportError::Findings(crate::findings::FindingError::NotFound(m)) => OpsError::Invalid(m),
        other => OpsError::Failed(other.to_string()),
    }
}

fn incident_err(e: IncidentError) -> OpsError {
    match e {
        IncidentError::NotFound(m) => OpsError::NotFound(m),
        IncidentError::Invalid(m) => OpsError::Invalid(m),
        other => OpsError::Failed(other.to_string()),
    }
}

fn to_json(v: impl Serialize) -> Result<Value, OpsError> {
    serde_json::to_value(v).map_err(|e| OpsError::Failed(e.to_string()))
}

fn body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, OpsError> {
    serde_json::from_value(v).map_err(|e| OpsError::Invalid(format!("request body: {e}")))
}

impl ComplianceOps for ComplianceApi {
    fn create_report(
        &self,
        tenant: &TenantId,
        framework: &str,
        format: &str,
        requested_by: &str,
    ) -> Result<Value, OpsError> {
        let format = ReportFormat::parse(format).map_err(report_err)?;
        to_json(
            self.reports
                .request(tenant, framework, format, requested_by)
                .map_err(report_err)?,
        )
    }

    fn list_reports(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        to_json(self.reports.list(tenant).map_err(report_err)?)
    }

    fn report(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        to_json(self.reports.get(tenant, id).map_err(report_err)?)
    }

    fn report_file(&self, tenant: &TenantId, id: &str) -> Result<Option<Download>, OpsError> {
        Ok(self
            .reports
            .file(tenant, id)
            .map_err(report_err)?
            .map(|f| Download {
                content_type: f.meta.format.content_type().to_string(),
                filename: format!(
                    "vigil-{}-{}-{}.{}",
                    f.meta.tenant,
                    f.meta.framework,
                    f.meta.id,
                    f.meta.format.extension()
                ),
                bytes: f.bytes,
            }))
    }

    fn list_incidents(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        to_json(self.incidents.list(tenant).map_err(incident_err)?)
    }

    fn create_incident(&self, tenant: &TenantId, b: Value, actor: &str) -> Result<Value, OpsError> {
        let input: NewIncident = body(b)?;
        to_json(
            self.incidents
                .create(tenant, input, actor)
                .map_err(incident_err)?,
        )
    }

    fn incident(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        to_json(self.incidents.get(tenant, id).map_err(incident_err)?)
    }

    fn update_incident(
        &self,
        tenant: &TenantId,
        id: &str,
        b: Value,
    ) -> Result<(Value, Value), OpsError> {
        // Existence first, so a foreign or unknown id is 404 whatever the body says.
        self.incidents.record(tenant, id).map_err(incident_err)?;
        let patch: IncidentPatch = body(b)?;
        let (v, changes) = self
            .incidents
            .update(tenant, id, patch)
            .map_err(incident_err)?;
        Ok((to_json(v)?, changes))
    }

    fn export_incident(
        &self,
        tenant: &TenantId,
        id: &str,
        stage: &str,
        format: &str,
    ) -> Result<Download, OpsError> {
        self.incidents.record(tenant, id).map_err(incident_err)?;
        let stage = Stage::parse(stage).ok_or_else(|| {
            OpsError::Invalid("stage must be early_warning, notification or final_report".into())
        })?;
        let (pdf, ext, ctype) = match format {
            "pdf" => (true, "pdf", "application/pdf"),
            "json" => (false, "json", "application/json"),
            _ => return Err(OpsError::Invalid("format must be pdf or json".into())),
        };
        let bytes = self
            .incidents
            .export(tenant, id, stage, pdf)
            .map_err(incident_err)?;
        Ok(Download {
            bytes,
            content_type: ctype.into(),
            filename: format!("vigil-{tenant}-{id}-{}.{ext}", stage.as_str()),
        })
    }
}

/// Report requests of the admin socket and CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ReportRequest {
    /// Queue a report.
    Create {
        /// Tenant.
        tenant: TenantId,
        /// Framework key.
        framework: String,
        /// Output format.
        format: ReportFormat,
    },
    /// One report's metadata.
    Get {
        /// Tenant.
        tenant: TenantId,
        /// Report id.
        id: String,
    },
    /// Reports of a tenant.
    List {
        /// Tenant.
        tenant: TenantId,
    },
}

/// Runs a report request; answers JSON.
pub fn handle(reports: &ReportService, req: ReportRequest) -> Result<Value, ReportError> {
    let json =
        |v: Result<Value, serde_json::Error>| v.map_err(|e| ReportError::Storage(e.to_string()));
    match req {
        ReportRequest::Create {
            tenant,
            framework,
            format,
        } => json(serde_json::to_value(
            reports.request(&tenant, &framework, format, "cli")?,
        )),
        ReportRequest::Get { tenant, id } => json(serde_json::to_value(reports.get(&tenant, &id)?)),
        ReportRequest::List { tenant } => json(serde_json::to_value(reports.list(&tenant)?)),
    }
}
