//! The scanning agent: enrolment, scanners, a crash-safe disk spool and the
//! signed mutual-TLS QUIC uplink to the collector.

pub mod cert;
pub mod config;
pub mod enroll;
pub mod error;
pub mod fsutil;
pub mod link;
pub mod runner;
pub mod scan;
pub mod spool;
pub mod state;
pub mod tls;
pub mod uplink;

pub use error::AgentError;
pub use spool::Spool;
pub use state::AgentState;
pub use uplink::{LinkStatus, Uplink, UplinkConfig};
