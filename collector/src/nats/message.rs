//! Wire form of a verified batch on JetStream: identity in headers, the
//! signature and signed body as payload (so workers can re-verify).

use async_nats::HeaderMap;
use protocol::{AgentId, TenantId};

use super::NatsError;
use crate::store::StoredBatch;

const TENANT: &str = "Vigil-Tenant";
const AGENT: &str = "Vigil-Agent";
const SEQUENCE: &str = "Vigil-Sequence";
const RECEIVED: &str = "Vigil-Received-Ms";
const RECORDS: &str = "Vigil-Records";
/// JetStream's dedupe header.
const MSG_ID: &str = "Nats-Msg-Id";

/// A batch decoded from a message.
pub type BatchMessage = StoredBatch;

/// Headers and payload of `b`; the message id is `tenant/agent/sequence`.
pub fn encode_batch(b: &StoredBatch) -> (HeaderMap, Vec<u8>) {
    let mut h = HeaderMap::new();
    h.insert(
        MSG_ID,
        format!("{}/{}/{}", b.tenant, b.agent, b.sequence).as_str(),
    );
    h.insert(TENANT, b.tenant.as_str());
    h.insert(AGENT, b.agent.as_str());
    h.insert(SEQUENCE, b.sequence.to_string().as_str());
    h.insert(RECEIVED, b.received_ms.to_string().as_str());
    h.insert(RECORDS, b.records.to_string().as_str());
    let mut payload = Vec::with_capacity(64 + b.body.len());
    payload.extend_from_slice(&b.signature);
    payload.extend_from_slice(&b.body);
    (h, payload)
}

/// Decodes a message written by [`encode_batch`].
pub fn decode_batch(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<StoredBatch, NatsError> {
    let bad = |m: &str| NatsError::Malformed(m.to_string());
    let h = headers.ok_or_else(|| bad("no headers"))?;
    let get = |k: &str| {
        h.get(k)
            .map(|v| v.as_str().to_string())
            .ok_or_else(|| bad(&format!("missing {k}")))
    };
    let num = |k: &str| -> Result<u64, NatsError> {
        get(k)?
            .parse()
            .map_err(|_| bad(&format!("{k} is not a number")))
    };
    if payload.len() < 64 {
        return Err(bad("payload shorter than a signature"));
    }
    let (sig, body) = payload.split_at(64);
    Ok(StoredBatch {
        tenant: TenantId::new(get(TENANT)?).map_err(|e| bad(&e.to_string()))?,
        agent: AgentId::new(get(AGENT)?).map_err(|e| bad(&e.to_string()))?,
        sequence: num(SEQUENCE)?,
        received_ms: num(RECEIVED)?,
        records: u32::try_from(num(RECORDS)?).map_err(|_| bad("record count too large"))?,
        signature: sig.try_into().map_err(|_| bad("signature"))?,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_garbage_is_refused() {
        let b = StoredBatch {
            tenant: TenantId::new("acme").unwrap(),
            agent: AgentId::new("ag-1").unwrap(),
            sequence: 42,
            received_ms: 7,
            records: 3,
            body: b"body".to_vec(),
            signature: [5; 64],
        };
        let (h, p) = encode_batch(&b);
        assert_eq!(h.get(MSG_ID).unwrap().as_str(), "acme/ag-1/42");
        assert_eq!(decode_batch(Some(&h), &p).unwrap(), b);
        assert!(decode_batch(None, &p).is_err());
        assert!(decode_batch(Some(&h), &p[..10]).is_err());
        let mut h2 = h.clone();
        h2.insert(SEQUENCE, "x");
        assert!(decode_batch(Some(&h2), &p).is_err());
    }
}
