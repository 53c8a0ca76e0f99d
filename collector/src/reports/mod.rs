//! Compliance reports (issue 5): per tenant and framework, rendered in the
//! background as PDF, JSON, CSV, OCSF or SARIF and kept under
//! `<data_dir>/reports/<tenant>/<id>.<ext>`, with their metadata and a
//! restart-proof queue in sled. See docs/reports.md.

pub mod config;
pub mod csv;
pub mod json;
pub mod model;
pub mod ocsf;
pub mod pdf;
pub mod pdf_report;
pub mod sarif;
pub mod service;
pub mod store;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::findings::FindingError;
pub use model::ReportInput;
pub use service::ReportService;

/// Failures of report requests and generation.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The findings state could not be read.
    #[error(transparent)]
    Findings(#[from] FindingError),
    /// Report metadata storage failed.
    #[error("report storage: {0}")]
    Storage(String),
    /// Stored report metadata could not be decoded.
    #[error("corrupt report record: {0}")]
    Corrupt(String),
    /// A report file could not be written or read.
    #[error("report file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No such report (or incident) in the tenant.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The tenant has too many reports waiting.
    #[error("{0}")]
    Busy(String),
}

impl From<sled::Error> for ReportError {
    fn from(e: sled::Error) -> Self {
        ReportError::Storage(e.to_string())
    }
}

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Printable document.
    Pdf,
    /// `vigil.compliance-report/1` JSON.
    Json,
    /// One row per finding.
    Csv,
    /// OCSF 1.1 finding events.
    Ocsf,
    /// SARIF 2.1.0 log.
    Sarif,
}

impl ReportFormat {
    /// Every format.
    pub const ALL: [ReportFormat; 5] = [
        ReportFormat::Pdf,
        ReportFormat::Json,
        ReportFormat::Csv,
        ReportFormat::Ocsf,
        ReportFormat::Sarif,
    ];

    /// Parses a lowercase format name.
    pub fn parse(s: &str) -> Result<Self, ReportError> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                ReportError::Invalid(format!(
                    "format must be one of pdf, json, csv, ocsf, sarif (got {s:?})"
                ))
            })
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Pdf => "pdf",
            ReportFormat::Json => "json",
            ReportFormat::Csv => "csv",
            ReportFormat::Ocsf => "ocsf",
            ReportFormat::Sarif => "sarif",
        }
    }

    /// File name extension.
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Pdf => "pdf",
            ReportFormat::Json => "json",
            ReportFormat::Csv => "csv",
            ReportFormat::Ocsf => "ocsf.json",
            ReportFormat::Sarif => "sarif",
        }
    }

    /// HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Pdf => "application/pdf",
            ReportFormat::Json | ReportFormat::Ocsf => "application/json",
            ReportFormat::Csv => "text/csv; charset=utf-8",
            ReportFormat::Sarif => "application/sarif+json",
        }
    }
}

/// Renders `input` in `format`; `progress` hears 50..=95 as it goes.
pub fn render(input: &ReportInput, format: ReportFormat, progress: &mut dyn FnMut(u8)) -> Vec<u8> {
    progress(50);
    let out = match format {
        ReportFormat::Pdf => pdf_report::render(input, progress),
        ReportFormat::Json => json::render(input),
        ReportFormat::Csv => csv::render(input),
        ReportFormat::Ocsf => ocsf::render(input),
        ReportFormat::Sarif => sarif::render(input),
    };
    progress(95);
    out
}

/// Lifecycle of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    /// Waiting for the worker.
    Queued,
    /// Being generated.
    Running,
    /// File ready for download.
    Done,
    /// Generation failed; `error` says why.
    Failed,
}

/// A report's metadata as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMeta {
    /// Report id (`r-` + 16 hex digits).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Framework key.
    pub framework: String,
    /// Output format.
    pub format: ReportFormat,
    /// Lifecycle state.
    pub status: ReportStatus,
    /// Generation progress, 0..=100.
    pub progress: u8,
    /// When requested, ms since the epoch.
    pub created_ms: u64,
    /// When generation last started.
    pub started_ms: Option<u64>,
    /// When generation finished (done or failed).
    pub finished_ms: Option<u64>,
    /// File size once done.
    pub size_bytes: Option<u64>,
    /// Why generation failed.
    pub error: Option<String>,
    /// Who asked (`user:<email>`, `api-key:<id>`, `cli`).
    pub requested_by: String,
}

/// A random id with a prefix: `<prefix>-` + 16 hex digits.
pub fn random_id(prefix: &str) -> Result<String, ReportError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| ReportError::Storage(format!("random source: {e}")))?;
    Ok(format!("{prefix}-{}", hex::encode(b)))
}
