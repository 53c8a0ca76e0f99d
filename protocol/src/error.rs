//! Typed errors for decoding, framing, negotiation and signature checks.

use thiserror::Error;

/// Everything that can go wrong while handling protocol bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A frame header announced more bytes than the receiver accepts.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// The stream ended in the middle of a frame.
    #[error("truncated frame: {buffered} bytes buffered, {needed} bytes needed")]
    Truncated { buffered: usize, needed: usize },
    /// The frame payload is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The payload decoded but left unread bytes behind.
    #[error("{0} trailing bytes after message")]
    TrailingBytes(usize),
    /// A message could not be encoded (for example it is larger than a frame).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// Agent and collector share no protocol version.
    #[error(
        "no common protocol version: peer speaks {peer_min}..={peer_max}, we speak {ours_min}..={ours_max}"
    )]
    NoCommonVersion {
        peer_min: u16,
        peer_max: u16,
        ours_min: u16,
        ours_max: u16,
    },
    /// A batch signature does not verify with the agent's key.
    #[error("batch signature does not verify")]
    BadSignature,
    /// A signature or key has the wrong length or form.
    #[error("invalid key or signature encoding: {0}")]
    InvalidKey(String),
    /// A tenant or agent identifier breaks the naming rules.
    #[error("invalid identifier {value:?}: {reason}")]
    InvalidIdentifier { value: String, reason: &'static str },
}
