//! Batch signing: Ed25519 over a SHA-256 digest of the encoded batch body.
//!
//! The signature covers the exact body bytes carried in [`SignedBatch`], so the
//! verifier never re-encodes anything and cannot be fooled by an encoding that
//! decodes to the same value.

use ed25519_dalek::{Signature, Signer};
use sha2::{Digest, Sha256};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::frame::{decode_value, encode_value};
use crate::{BatchBody, ProtocolError, SignedBatch};

/// Domain separation so a batch signature can never be replayed as another kind of signature.
const BATCH_DOMAIN: &[u8] = b"vigil batch signature v1\0";

/// SHA-256 digest that a batch signature covers.
pub fn batch_digest(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(BATCH_DOMAIN);
    h.update(body);
    h.finalize().into()
}

/// Encodes and signs a batch body.
pub fn sign_batch(key: &SigningKey, body: &BatchBody) -> Result<SignedBatch, ProtocolError> {
    let body = encode_value(body)?;
    let signature = key.sign(&batch_digest(&body)).to_bytes();
    Ok(SignedBatch { body, signature })
}

impl SignedBatch {
    /// Checks the signature with the agent's key, then decodes the body.
    pub fn verify(&self, key: &VerifyingKey) -> Result<BatchBody, ProtocolError> {
        self.verify_signature(key)?;
        decode_value(&self.body)
    }

    /// Checks the signature only, without decoding the body.
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), ProtocolError> {
        let sig = Signature::from_bytes(&self.signature);
        key.verify_strict(&batch_digest(&self.body), &sig)
            .map_err(|_| ProtocolError::BadSignature)
    }

    /// Decodes the body without checking the signature (for local inspection only).
    pub fn decode_unverified(&self) -> Result<BatchBody, ProtocolError> {
        decode_value(&self.body)
    }
}

/// Parses a 32-byte Ed25519 public key.
pub fn verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, ProtocolError> {
    VerifyingKey::from_bytes(bytes).map_err(|e| ProtocolError::InvalidKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentId, Observation, PortObservation, PortState, Record, TenantId};

    fn body(seq: u64) -> BatchBody {
        BatchBody {
            tenant: TenantId::new("acme").unwrap(),
            agent: AgentId::new("ag-1").unwrap(),
            sequence: seq,
            created_ms: 1_700_000_000_000,
            records: vec![Record {
                asset: "127.0.0.1".into(),
                job_id: "j1".into(),
                observed_ms: 1_700_000_000_000,
                observation: Observation::Port(PortObservation {
                    ip: "127.0.0.1".into(),
                    port: 22,
                    state: PortState::Open,
                    service: Some("ssh".into()),
                    product: Some("OpenSSH_9.6".into()),
                    banner: Some("SSH-2.0-OpenSSH_9.6".into()),
                    tls: false,
                }),
            }],
        }
    }

    #[test]
    fn signed_batch_verifies_and_round_trips() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = sign_batch(&key, &body(5)).unwrap();
        assert_eq!(signed.verify(&key.verifying_key()).unwrap(), body(5));
    }

    #[test]
    fn tampering_or_wrong_key_fails() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let signed = sign_batch(&key, &body(5)).unwrap();
        assert_eq!(
            signed.verify(&other.verifying_key()),
            Err(ProtocolError::BadSignature)
        );
        let mut flipped = signed.clone();
        let last = flipped.body.len() - 1;
        flipped.body[last] ^= 1;
        assert_eq!(
            flipped.verify(&key.verifying_key()),
            Err(ProtocolError::BadSignature)
        );
        let mut bad_sig = signed;
        bad_sig.signature[0] ^= 1;
        assert_eq!(
            bad_sig.verify(&key.verifying_key()),
            Err(ProtocolError::BadSignature)
        );
    }
}
