//! Sans-I/O wire protocol shared by the agent and the collector.
//!
//! Everything here is pure: message types, length-prefixed framing, version
//! negotiation, identities and batch signing. Sockets, files and clocks live in
//! the `agent` and `collector` crates, which keeps this crate unit-testable and
//! fuzzable in isolation.

pub mod error;
pub mod frame;
pub mod identity;
pub mod message;
pub mod observation;
pub mod signing;
pub mod version;

pub use error::ProtocolError;
pub use frame::{
    DEFAULT_MAX_FRAME, FrameDecoder, decode_frame, decode_value, encode_frame, encode_value,
};
pub use identity::{AgentId, AgentIdentity, TenantId};
pub use message::*;
pub use observation::*;
pub use signing::{SigningKey, VerifyingKey, batch_digest, sign_batch, verifying_key};
pub use version::{PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, negotiate};

/// ALPN token spoken on the QUIC connection between agent and collector.
pub const ALPN: &[u8] = b"vigil/1";
