//! Agent errors.

use protocol::ErrorCode;
use thiserror::Error;

use crate::spool::SpoolError;
use crate::state::StateError;
use crate::tls::TlsError;

/// Everything that can stop an agent operation.
#[derive(Debug, Error)]
pub enum AgentError {
    /// Reading or writing the agent's identity failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The collector sent bytes that are not valid protocol.
    #[error("protocol: {0}")]
    Protocol(#[from] protocol::ProtocolError),
    /// The collector address could not be resolved.
    #[error("cannot resolve collector address {0}")]
    Resolve(String),
    /// The connection could not be made or broke.
    #[error("connection to collector: {0}")]
    Connection(String),
    /// The collector refused the handshake (certificate rejected).
    #[error("collector rejected our certificate: {0}")]
    CertificateRejected(String),
    /// The collector refused our certificate because it has expired.
    #[error(
        "the collector refused our certificate because it has expired (or one of the clocks is wrong); enrol the agent again with a new token ({0})"
    )]
    CertificateExpired(String),
    /// We refused the collector's certificate (wrong fingerprint or CA).
    #[error("the collector's certificate is not trusted: {0}")]
    ServerUntrusted(String),
    /// The collector revoked this agent.
    #[error("this agent has been revoked by the collector; enrol it again with a new token")]
    Revoked,
    /// The collector answered with an error.
    #[error("collector refused ({code:?}): {message}")]
    Refused {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
    /// The collector did not answer in time.
    #[error("timed out waiting for the collector ({0})")]
    Timeout(&'static str),
    /// The collector sent something out of order.
    #[error("unexpected reply from collector: {0}")]
    Unexpected(String),
    /// Key or certificate request generation failed.
    #[error("key generation: {0}")]
    Keygen(String),
}

impl AgentError {
    /// Errors that retrying cannot fix.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            AgentError::Revoked
                | AgentError::State(_)
                | AgentError::Tls(_)
                | AgentError::Refused {
                    code: ErrorCode::UnsupportedVersion
                        | ErrorCode::Revoked
                        | ErrorCode::BadSignature
                        | ErrorCode::IdentityMismatch,
                    ..
                }
        )
    }
}
