//! One agent connection: handshake, enrolment or batch ingest with group-committed acks.

use std::sync::Arc;
use std::time::Duration;

use protocol::{
    Ack, AgentId, AgentIdentity, EnrollRequest, EnrollResponse, ErrorCode, ErrorMessage,
    FrameDecoder, Heartbeat, JobPush, Message, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
    ProtocolError, RenewResponse, SignedBatch, Welcome,
};
use rustls_pki_types::CertificateDer;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::admin::token_hash;
use crate::metrics::Metrics;
use crate::pki::{PkiError, identity_from_cert};
use crate::server::Shared;
use crate::store::{AgentRecord, BatchOutcome, StoreError, StoredBatch};
use crate::time::now_ms;

/// Why a session ended abnormally.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The peer sent bytes that are not valid protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Reading the stream failed.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The connection failed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Certificate issuance failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The peer was too slow to speak.
    #[error("timed out waiting for the agent")]
    Timeout,
    /// We refused the peer (already told it why).
    #[error("refused: {0}")]
    Refused(String),
}

struct FrameReader {
    recv: quinn::RecvStream,
    dec: FrameDecoder,
}

impl FrameReader {
    async fn next(&mut self) -> Result<Option<Message>, SessionError> {
        loop {
            if let Some(m) = self.dec.next_message()? {
                return Ok(Some(m));
            }
            match self.recv.read_chunk(usize::MAX, true).await? {
                Some(chunk) => self.dec.push(&chunk.bytes),
                None => {
                    self.dec.finish()?;
                    return Ok(None);
                }
            }
        }
    }
}

async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Message>, max: usize) {
    while let Some(msg) = rx.recv().await {
        let frame = match protocol::encode_frame(&msg, max) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("cannot encode reply: {e}");
                break;
            }
        };
        if send.write_all(&frame).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
    // Give the peer a moment to read the last frames before the connection closes.
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
}

/// The agent identity proven by the connection's client certificate, if any.
fn peer_identity(conn: &quinn::Connection) -> Option<AgentIdentity> {
    let any = conn.peer_identity()?;
    let chain = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    identity_from_cert(chain.first()?).ok()
}

fn error(code: ErrorCode, message: impl Into<String>) -> Message {
    Message::Error(ErrorMessage {
        code,
        message: message.into(),
    })
}

/// Runs a connection to completion.
pub async fn run(shared: Arc<Shared>, conn: quinn::Connection) -> Result<(), SessionError> {
    let identity = peer_identity(&conn);
    let (send, recv) = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi())
        .await
        .map_err(|_| SessionError::Timeout)??;
    let max = shared.settings.raw.max_frame_bytes;
    let (out, out_rx) = mpsc::channel(256);
    let writer = tokio::spawn(write_loop(send, out_rx, max));
    let mut reader = FrameReader {
        recv,
        dec: FrameDecoder::new(max),
    };
    let result = async {
        let hello = match tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .map_err(|_| SessionError::Timeout)??
        {
            Some(Message::Hello(h)) => h,
            Some(_) => return refuse(&out, ErrorCode::BadRequest, "expected Hello").await,
            None => return Ok(()),
        };
        let version = match protocol::negotiate(
            hello.min_version,
            hello.max_version,
            PROTOCOL_VERSION_MIN,
            PROTOCOL_VERSION_MAX,
        ) {
            Ok(v) => v,
            Err(e) => return refuse(&out, ErrorCode::UnsupportedVersion, e.to_string()).await,
        };
        match identity {
            None => anonymous(&shared, &mut reader, &out, version).await,
            Some(id) => agent(&shared, &conn, &mut reader, &out, version, id).await,
        }
    }
    .await;
    drop(out);
    let _ = writer.await;
    conn.close(0u32.into(), b"session ended");
    result
}

async fn refuse(
    out: &mpsc::Sender<Message>,
    code: ErrorCode,
    message: impl Into<String>,
) -> Result<(), SessionError> {
    let message = message.into();
    let _ = out.send(error(code, message.clone())).await;
    Err(SessionError::Refused(message))
}

fn welcome(shared: &Shared, version: u16, last_acked: u64) -> Message {
    Message::Welcome(Welcome {
        version,
        last_acked,
        server_time_ms: now_ms(),
        heartbeat_interval_ms: shared.settings.heartbeat_interval.as_millis() as u64,
    })
}

/// A connection without a client certificate may only enrol.
async fn anonymous(
    shared: &Arc<Shared>,
    reader: &mut FrameReader,
    out: &mpsc::Sender<Message>,
    version: u16,
) -> Result<(), SessionError> {
    let _ = out.send(welcome(shared, version, 0)).await;
    match reader.next().await? {
        Some(Message::Enroll(req)) => {
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || enroll(&s, req)).await {
                Ok(Ok(resp)) => {
                    Metrics::inc(&shared.metrics.enrollments);
                    tracing::info!("enrolled agent {}/{}", resp.tenant, resp.agent);
                    let _ = out.send(Message::Enrolled(resp)).await;
                    Ok(())
                }
                Ok(Err((code, msg))) => {
                    Metrics::inc(&shared.metrics.enrollments_refused);
                    tracing::warn!("enrolment refused: {msg}");
                    refuse(out, code, msg).await
                }
                Err(e) => refuse(out, ErrorCode::Internal, e.to_string()).await,
            }
        }
        Some(Message::Batch(_)) => {
            Metrics::inc(&shared.metrics.batches_rejected);
            refuse(
                out,
                ErrorCode::Unauthenticated,
                "a client certificate is required to send results",
            )
            .await
        }
        Some(_) => {
            refuse(
                out,
                ErrorCode::Unauthenticated,
                "a client certificate is required",
            )
            .await
        }
        None => Ok(()),
    }
}

fn enroll(shared: &Shared, req: EnrollRequest) -> Result<EnrollResponse, (ErrorCode, String)> {
    let bad = |m: String| (ErrorCode::BadRequest, m);
    protocol::verifying_key(&req.signing_key).map_err(|e| bad(e.to_string()))?;
    shared
        .pki
        .check_csr(&req.csr_der)
        .map_err(|e| bad(e.to_string()))?;
    let token = shared
        .store
        .consume_token(token_hash(&req.token), now_ms())
        .map_err(|e| match e {
            StoreError::InvalidToken => (ErrorCode::InvalidToken, e.to_string()),
            other => (ErrorCode::Internal, other.to_string()),
        })?;
    let internal = |e: &dyn std::fmt::Display| (ErrorCode::Internal, e.to_string());
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).map_err(|e| internal(&e))?;
    let agent = AgentId::new(format!("ag-{}", hex::encode(raw))).map_err(|e| internal(&e))?;
    let cert = shared
        .pki
        .issue_agent_cert(
            &token.tenant,
            &agent,
            &req.csr_der,
            shared.settings.agent_cert_lifetime,
        )
        .map_err(|e| internal(&e))?;
    let tenant_ca = shared
        .pki
        .tenant_ca(&token.tenant)
        .map_err(|e| internal(&e))?;
    let now = now_ms();
    let record = AgentRecord {
        tenant: token.tenant.clone(),
        agent: agent.clone(),
        hostname: req.hostname.chars().take(253).collect(),
        signing_key: req.signing_key,
        enrolled_ms: now,
        cert_not_after_ms: cert.not_after_ms,
        revoked_ms: None,
        last_seen_ms: now,
    };
    shared.store.put_agent(&record).map_err(|e| internal(&e))?;
    shared.store.flush().map_err(|e| internal(&e))?;
    Ok(EnrollResponse {
        tenant: token.tenant,
        agent,
        certificate_der: cert.der,
        tenant_ca_der: tenant_ca.cert_der,
        server_ca_der: shared.pki.server_ca_der().to_vec(),
    })
}

/// An authenticated agent: ingest batches, ack after durable storage.
async fn agent(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    reader: &mut FrameReader,
    out: &mpsc::Sender<Message>,
    version: u16,
    id: AgentIdentity,
) -> Result<(), SessionError> {
    // The certificate verifier already checked this; re-read in case of a race with revocation.
    let Some(mut record) = shared.store.agent(&id.agent)? else {
        return refuse(out, ErrorCode::Revoked, "unknown agent").await;
    };
    if record.tenant != id.tenant || record.revoked_ms.is_some() {
        return refuse(out, ErrorCode::Revoked, "agent revoked").await;
    }
    let key = protocol::verifying_key(&record.signing_key)?;
    record.last_seen_ms = now_ms();
    shared.store.put_agent(&record)?;
    // Welcome tells the agent it may delete everything up to `last` from its
    // spool, so `last` must be durable first: an earlier session may have stored
    // batches whose flush and ack never happened.
    shared
        .commits
        .durable()
        .await
        .map_err(|e| SessionError::Refused(e.to_string()))?;
    let last = shared.store.delivery(&id.tenant, &id.agent)?.last_sequence;
    let _ = out.send(welcome(shared, version, last)).await;
    let jobs = shared
        .settings
        .jobs
        .get(&id.tenant)
        .cloned()
        .unwrap_or_else(JobPush::default);
    let _ = out.send(Message::Jobs(jobs)).await;
    shared.live.insert(id.agent.clone(), conn.clone());
    // Registered after Welcome and Jobs, so runs owed (missed while offline) follow them.
    shared
        .scheduler
        .connected(&id, conn.stable_id(), version, out.clone());
    tracing::info!(
        "agent {id} connected from {} (last stored sequence {last})",
        conn.remote_address()
    );

    let (stored_tx, stored_rx) = watch::channel(last);
    let acker = tokio::spawn(ack_loop(shared.clone(), stored_rx, out.clone()));
    let result = ingest(shared, reader, out, &id, &key, &stored_tx).await;
    drop(stored_tx);
    let _ = acker.await;
    shared.live.remove(&id.agent, conn);
    shared.scheduler.disconnected(&id.agent, conn.stable_id());
    tracing::info!("agent {id} disconnected");
    result
}

async fn ingest(
    shared: &Arc<Shared>,
    reader: &mut FrameReader,
    out: &mpsc::Sender<Message>,
    id: &AgentIdentity,
    key: &protocol::VerifyingKey,
    stored_tx: &watch::Sender<u64>,
) -> Result<(), SessionError> {
    while let Some(msg) = reader.next().await? {
        match msg {
            Message::Batch(batch) => {
                let sequence = match accept_batch_bounded(shared, id, key, batch).await {
                    Ok(seq) => seq,
                    Err((code, why)) => {
                        Metrics::inc(&shared.metrics.batches_rejected);
                        tracing::warn!("agent {id}: batch refused: {why}");
                        return refuse(out, code, why).await;
                    }
                };
                stored_tx.send_modify(|s| *s = (*s).max(sequence));
            }
            Message::Renew(req) => {
                let cert = shared.pki.issue_agent_cert(
                    &id.tenant,
                    &id.agent,
                    &req.csr_der,
                    shared.settings.agent_cert_lifetime,
                );
                let cert = match cert {
                    Ok(c) => c,
                    Err(e) => return refuse(out, ErrorCode::BadRequest, e.to_string()).await,
                };
                if let Some(mut rec) = shared.store.agent(&id.agent)? {
                    rec.cert_not_after_ms = cert.not_after_ms;
                    shared.store.put_agent(&rec)?;
                    shared.store.flush()?;
                }
                Metrics::inc(&shared.metrics.renewals);
                tracing::info!("renewed certificate of agent {id}");
                let _ = out
                    .send(Message::Renewed(RenewResponse {
                        certificate_der: cert.der,
                    }))
                    .await;
            }
            Message::Heartbeat(_) => {
                let _ = out
                    .send(Message::Heartbeat(Heartbeat { sent_ms: now_ms() }))
                    .await;
            }
            Message::Error(e) => {
                tracing::warn!("agent {id} reported: {:?}: {}", e.code, e.message);
            }
            Message::RunReport(report) => {
                let (scheduler, agent) = (shared.scheduler.clone(), id.clone());
                // Reports for unknown or foreign runs are logged, not fatal: a
                // pruned run must not cut the agent's result stream.
                match tokio::task::spawn_blocking(move || scheduler.report(&agent, report)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!("agent {id}: run report ignored: {e}"),
                    Err(e) => tracing::error!("agent {id}: run report task failed: {e}"),
                }
            }
            _ => {
                return refuse(out, ErrorCode::BadRequest, "unexpected message").await;
            }
        }
    }
    Ok(())
}

/// Runs [`accept_batch`] off the async workers once an ingest slot is free.
/// Until then this session reads nothing more, so QUIC flow control holds the
/// agent back while the workers keep every connection (and its heartbeats) alive.
async fn accept_batch_bounded(
    shared: &Arc<Shared>,
    id: &AgentIdentity,
    key: &protocol::VerifyingKey,
    batch: SignedBatch,
) -> Result<u64, (ErrorCode, String)> {
    let internal = |e: &dyn std::fmt::Display| (ErrorCode::Internal, e.to_string());
    let waiting = &shared.metrics.ingest_waiting;
    waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let slot = shared.ingest_slots.clone().acquire_owned().await;
    waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let slot = slot.map_err(|e| internal(&e))?;
    let (s, id, key) = (shared.clone(), id.clone(), *key);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        accept_batch(&s, &id, &key, batch)
    })
    .await
    .map_err(|e| internal(&e))?
}

/// Verifies and stores one batch; returns its sequence (also for replays).
fn accept_batch(
    shared: &Shared,
    id: &AgentIdentity,
    key: &protocol::VerifyingKey,
    batch: SignedBatch,
) -> Result<u64, (ErrorCode, String)> {
    let body = batch
        .verify(key)
        .map_err(|e| (ErrorCode::BadSignature, e.to_string()))?;
    if body.tenant != id.tenant || body.agent != id.agent {
        return Err((
            ErrorCode::IdentityMismatch,
            format!(
                "batch claims {}/{} but the certificate names {id}",
                body.tenant, body.agent
            ),
        ));
    }
    if body.sequence == 0 {
        return Err((ErrorCode::BadRequest, "sequence numbers start at 1".into()));
    }
    let stored = StoredBatch {
        tenant: id.tenant.clone(),
        agent: id.agent.clone(),
        sequence: body.sequence,
        received_ms: now_ms(),
        records: body.records.len() as u32,
        body: batch.body,
        signature: batch.signature,
    };
    match shared.store.store_batch(&stored) {
        Ok(BatchOutcome::Stored) => {
            Metrics::inc(&shared.metrics.batches_stored);
            shared.metrics.records_stored.fetch_add(
                u64::from(stored.records),
                std::sync::atomic::Ordering::Relaxed,
            );
            // Findings are derived in the background; this only wakes the pipeline.
            shared.findings_notify.notify_one();
        }
        Ok(BatchOutcome::Duplicate) => {
            Metrics::inc(&shared.metrics.batches_duplicate);
            tracing::debug!("agent {id}: replayed batch {} dropped", body.sequence);
        }
        Err(e) => return Err((ErrorCode::Internal, e.to_string())),
    }
    Ok(body.sequence)
}

/// Acks what the collector-wide group commit made durable: one flush covers
/// every batch stored, by any session, while the previous flush ran.
async fn ack_loop(
    shared: Arc<Shared>,
    mut stored: watch::Receiver<u64>,
    out: mpsc::Sender<Message>,
) {
    while stored.changed().await.is_ok() {
        let sequence = *stored.borrow_and_update();
        if let Err(e) = shared.commits.durable().await {
            tracing::error!("not acknowledging: {e}");
            return;
        }
        Metrics::inc(&shared.metrics.acks_sent);
        if out.send(Message::Ack(Ack { sequence })).await.is_err() {
            return;
        }
    }
}
