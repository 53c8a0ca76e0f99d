//! Analyst console: the tenant-scoped HTTP API (v1) with accounts, roles,
//! sessions, API keys and a hash-chained audit log.
//!
//! The console knows nothing of collector internals: its host (the collector)
//! supplies an [`AccountStore`] and implements [`Operations`], then mounts
//! [`router`], which also serves the web UI ([`ui`]).

pub mod accounts;
pub mod api;
pub mod audit;
pub mod compliance;
pub mod error;
pub mod limiter;
pub mod openapi;
pub mod sled_accounts;
pub mod ui;

pub use accounts::{AccountError, AccountStore, Role};
pub use api::{ConsoleOptions, ConsoleState, Operations, router};
pub use error::{ApiError, OpsError};
pub use sled_accounts::SledAccounts;
