//! Length-prefixed framing: a 4-byte big-endian payload length, then a
//! bincode-encoded [`Message`].
//!
//! The decoder is incremental (feed it whatever the transport delivered) and
//! checks the announced length against a maximum before buffering the payload,
//! so a hostile peer cannot make us allocate more than one frame.

use crate::{Message, ProtocolError};

/// Default upper bound on one frame's payload (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

const HEADER: usize = 4;

/// bincode settings shared by every encoder and decoder in the protocol.
pub(crate) fn config() -> impl bincode::config::Config {
    // The limit caps what a length prefix inside a payload may make us allocate.
    bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>()
}

/// Encodes `value` with the protocol's bincode settings.
pub fn encode_value<T: bincode::Encode>(value: &T) -> Result<Vec<u8>, ProtocolError> {
    bincode::encode_to_vec(value, config()).map_err(|e| ProtocolError::Encode(e.to_string()))
}

/// Decodes a value that must fill `bytes` exactly.
pub fn decode_value<T: bincode::Decode<()>>(bytes: &[u8]) -> Result<T, ProtocolError> {
    let (value, used) = bincode::decode_from_slice(bytes, config())
        .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(ProtocolError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// Encodes one message as a complete frame.
pub fn encode_frame(msg: &Message, max_frame: usize) -> Result<Vec<u8>, ProtocolError> {
    let mut out = vec![0u8; HEADER];
    bincode::encode_into_std_write(msg, &mut out, config())
        .map_err(|e| ProtocolError::Encode(e.to_string()))?;
    let len = out.len() - HEADER;
    if len > max_frame {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    out[..HEADER].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes exactly one frame from the start of `bytes`, returning the message
/// and the number of bytes consumed.
pub fn decode_frame(bytes: &[u8], max_frame: usize) -> Result<(Message, usize), ProtocolError> {
    let Some(len) = announced_len(bytes) else {
        return Err(ProtocolError::Truncated {
            buffered: bytes.len(),
            needed: HEADER,
        });
    };
    if len > max_frame {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    let end = HEADER + len;
    if bytes.len() < end {
        return Err(ProtocolError::Truncated {
            buffered: bytes.len(),
            needed: end,
        });
    }
    Ok((decode_value(&bytes[HEADER..end])?, end))
}

fn announced_len(bytes: &[u8]) -> Option<usize> {
    let header: [u8; HEADER] = bytes.get(..HEADER)?.try_into().ok()?;
    Some(u32::from_be_bytes(header) as usize)
}

/// Incremental frame decoder for a byte stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_frame,
        }
    }

    /// Appends bytes received from the transport.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    ///
    /// After an error the stream is unusable: framing is lost.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        let pending = &self.buf[self.start..];
        let Some(len) = announced_len(pending) else {
            return Ok(None);
        };
        if len > self.max_frame {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        if pending.len() < HEADER + len {
            return Ok(None);
        }
        let msg = decode_value(&pending[HEADER..HEADER + len])?;
        self.start += HEADER + len;
        Ok(Some(msg))
    }

    /// Bytes received but not yet consumed as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Call at end of stream: fails when a partial frame is left over.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        let buffered = self.buffered();
        if buffered == 0 {
            return Ok(());
        }
        let needed = announced_len(&self.buf[self.start..]).map_or(HEADER, |l| HEADER + l);
        Err(ProtocolError::Truncated { buffered, needed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ack, ErrorCode, ErrorMessage, Heartbeat, Hello};

    fn hello() -> Message {
        Message::Hello(Hello {
            min_version: 1,
            max_version: 3,
            software: "agent 0.1.0".into(),
        })
    }

    #[test]
    fn decoder_handles_byte_by_byte_delivery() {
        let msgs = [
            hello(),
            Message::Ack(Ack { sequence: 42 }),
            Message::Heartbeat(Heartbeat { sent_ms: 7 }),
            Message::Error(ErrorMessage {
                code: ErrorCode::Revoked,
                message: "agent revoked".into(),
            }),
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend(encode_frame(m, DEFAULT_MAX_FRAME).unwrap());
        }
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut out = Vec::new();
        for b in &wire {
            dec.push(std::slice::from_ref(b));
            while let Some(m) = dec.next_message().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, msgs);
        assert_eq!(dec.finish(), Ok(()));
    }

    #[test]
    fn oversized_frame_is_rejected_before_buffering() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&(1025u32).to_be_bytes());
        assert_eq!(
            dec.next_message(),
            Err(ProtocolError::FrameTooLarge {
                len: 1025,
                max: 1024
            })
        );
        let frame = encode_frame(&hello(), DEFAULT_MAX_FRAME).unwrap();
        assert!(matches!(
            encode_frame(&hello(), 3),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            decode_frame(&frame, 3),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_frame_is_reported() {
        let frame = encode_frame(&hello(), DEFAULT_MAX_FRAME).unwrap();
        let cut = &frame[..frame.len() - 1];
        assert!(matches!(
            decode_frame(cut, DEFAULT_MAX_FRAME),
            Err(ProtocolError::Truncated { .. })
        ));
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.push(cut);
        assert_eq!(dec.next_message(), Ok(None));
        assert_eq!(
            dec.finish(),
            Err(ProtocolError::Truncated {
                buffered: cut.len(),
                needed: frame.len()
            })
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_typed_errors() {
        let mut frame = encode_frame(&Message::Ack(Ack { sequence: 1 }), 64).unwrap();
        // Claim one more payload byte than the message uses.
        frame.push(0);
        let len = (frame.len() - HEADER) as u32;
        frame[..HEADER].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            decode_frame(&frame, 64),
            Err(ProtocolError::TrailingBytes(1))
        );
        let bogus = [0, 0, 0, 2, 0xff, 0xff];
        assert!(matches!(
            decode_frame(&bogus, 64),
            Err(ProtocolError::Malformed(_))
        ));
    }
}
