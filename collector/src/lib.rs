//! The collector: per-tenant certificate authorities and enrolment, mutual-TLS
//! QUIC ingest of signed result batches, durable storage and metrics.

pub mod admin;
pub mod admin_socket;
pub mod alerts;
pub mod backend;
pub mod config;
pub mod console_api;
pub mod findings;
pub mod group_commit;
pub mod metrics;
pub mod nats;
pub mod pg;
pub mod pki;
pub mod schedule;
pub mod scheduler;
pub mod search;
pub mod server;
pub mod session;
pub mod store;
pub mod time;
pub mod udp_buffer;
pub mod verifier;

pub use config::{CollectorConfig, Settings};
pub use server::Collector;
pub mod compliance_api;
pub mod compliance_metrics;
pub mod incidents;
pub mod reports;
