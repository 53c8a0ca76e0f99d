//! The agent's connection to the collector: streams spooled batches with a
//! bounded window, applies acks to the spool, receives jobs and renews the
//! certificate; reconnects with jittered exponential backoff.
//!
//! Collector-scheduled runs arrive as `RunJob` and are handed to the run
//! executor ([`Uplink::take_run_requests`]); its reports ([`Uplink::run_reporter`])
//! are sent only once every batch holding the run's results is on the wire,
//! and wait across reconnects until a write succeeds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use protocol::{Heartbeat, JobPush, Message, RenewRequest, RunReport, RunRequest};
use rand::Rng;
use tokio::sync::{mpsc, watch};

use crate::error::AgentError;
use crate::link;
use crate::scan::now_ms;
use crate::spool::Spool;
use crate::state::{AgentState, TlsIdentity};
use crate::tls;

/// Tuning of the uplink.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// Batches sent but not yet acknowledged, at most.
    pub window: u64,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Renew the certificate when less than this fraction of its lifetime is left.
    pub renew_fraction: f64,
    /// How often to check whether renewal is due while connected.
    pub renew_check: Duration,
    /// Heartbeat interval when idle (the collector's Welcome overrides it).
    pub heartbeat: Duration,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        Self {
            window: 64,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            renew_fraction: 1.0 / 3.0,
            renew_check: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// Connection state visible to the rest of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Not connected (yet, or between retries).
    Disconnected,
    /// Accepted by the collector.
    Connected,
}

/// Handles for observing and stopping a running uplink.
pub struct Uplink {
    /// Latest job push from the collector.
    pub jobs: watch::Receiver<Option<JobPush>>,
    /// Connection status.
    pub status: watch::Receiver<LinkStatus>,
    /// Number of completed certificate renewals.
    pub renewals: watch::Receiver<u64>,
    runs: Option<mpsc::Receiver<RunRequest>>,
    reports: mpsc::Sender<RunReport>,
    shutdown: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
}

/// Asks a running uplink to close gracefully.
#[derive(Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Requests the graceful stop.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Uplink {
    /// Starts streaming `spool` to the collector named in `state`.
    pub fn spawn(state: AgentState, spool: Arc<Spool>, config: UplinkConfig) -> Self {
        let (jobs_tx, jobs) = watch::channel(None);
        let (status_tx, status) = watch::channel(LinkStatus::Disconnected);
        let (renew_tx, renewals) = watch::channel(0);
        let (runs_tx, runs) = mpsc::channel(RUN_QUEUE);
        let (reports, reports_rx) = mpsc::channel(RUN_QUEUE);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Ctx {
            state: Arc::new(RwLock::new(state)),
            spool,
            config,
            jobs_tx,
            status_tx,
            renew_tx,
            runs_tx,
            reports: Arc::new(tokio::sync::Mutex::new(ReportQueue {
                rx: reports_rx,
                waiting: VecDeque::new(),
            })),
            shutdown: shutdown_rx,
        };
        let task = tokio::spawn(run(ctx));
        Self {
            jobs,
            status,
            renewals,
            runs: Some(runs),
            reports,
            shutdown: Arc::new(shutdown),
            task,
        }
    }

    /// Run requests from the collector, for the run executor; `None` once taken.
    pub fn take_run_requests(&mut self) -> Option<mpsc::Receiver<RunRequest>> {
        self.runs.take()
    }

    /// Where the run executor sends its reports for the collector.
    pub fn run_reporter(&self) -> mpsc::Sender<RunReport> {
        self.reports.clone()
    }

    /// A handle that can stop the uplink while another task waits on [`Uplink::join`].
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.shutdown.clone())
    }

    /// Asks the uplink to stop after a graceful close and waits for it.
    pub async fn stop(self) -> Result<(), AgentError> {
        let _ = self.shutdown.send(true);
        self.join().await
    }

    /// Waits until the uplink stops (after a stop request or a fatal error).
    pub async fn join(self) -> Result<(), AgentError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(AgentError::Unexpected(format!("uplink task failed: {e}"))),
        }
    }
}

struct Ctx {
    state: Arc<RwLock<AgentState>>,
    spool: Arc<Spool>,
    config: UplinkConfig,
    jobs_tx: watch::Sender<Option<JobPush>>,
    status_tx: watch::Sender<LinkStatus>,
    renew_tx: watch::Sender<u64>,
    runs_tx: mpsc::Sender<RunRequest>,
    reports: Arc<tokio::sync::Mutex<ReportQueue>>,
    shutdown: watch::Receiver<bool>,
}

/// Run requests or reports buffered at most; the collector resends a run
/// request that did not fit, and the executor waits for report space.
const RUN_QUEUE: usize = 256;

/// Reports not yet written, kept across connections.
struct ReportQueue {
    rx: mpsc::Receiver<RunReport>,
    /// Received from the executor, waiting for their batches to be sent first.
    waiting: VecDeque<RunReport>,
}

enum End {
    Shutdown,
    Closed,
}

async fn run(mut ctx: Ctx) -> Result<(), AgentError> {
    let collector = ctx
        .state
        .read()
        .map_err(|_| AgentError::Unexpected("state lock poisoned".into()))?
        .meta
        .collector
        .clone();
    let mut attempt: u32 = 0;
    loop {
        let result = match link::resolve(&collector).await {
            Ok((addr, name)) => session(&mut ctx, addr, &name, &mut attempt).await,
            Err(e) => Err(e),
        };
        ctx.status_tx.send_replace(LinkStatus::Disconnected);
        match result {
            Ok(End::Shutdown) => return Ok(()),
            Ok(End::Closed) => tracing::info!("collector closed the connection"),
            Err(e) if e.is_fatal() => {
                tracing::error!("{e}");
                return Err(e);
            }
            Err(e) => tracing::warn!("{e}"),
        }
        let cap = ctx
            .config
            .backoff_min
            .saturating_mul(1u32 << attempt.min(16))
            .min(ctx.config.backoff_max);
        // Full jitter keeps a fleet that lost the collector at once from reconnecting at once.
        let delay = rand::rng().random_range(cap / 2..=cap);
        attempt = attempt.saturating_add(1);
        tracing::info!("reconnecting in {delay:?}");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut ctx.shutdown) => return Ok(()),
        }
    }
}

fn read_state(ctx: &Ctx) -> Result<AgentState, AgentError> {
    ctx.state
        .read()
        .map(|s| s.clone())
        .map_err(|_| AgentError::Unexpected("state lock poisoned".into()))
}

async fn session(
    ctx: &mut Ctx,
    addr: std::net::SocketAddr,
    server_name: &str,
    attempt: &mut u32,
) -> Result<End, AgentError> {
    let st = read_state(ctx)?;
    let config = tls::client_config(&st.server_ca_der()?, Some((st.cert_der()?, st.key_der()?)))?;
    let endpoint = link::endpoint(addr)?;
    let (conn, mut send, mut reader) = link::open(&endpoint, config, addr, server_name).await?;
    link::write(&mut send, &link::hello()).await?;
    // connect() succeeds even when the collector rejects our certificate; the
    // first reply is what tells us we were accepted.
    let welcome = match reader.first().await? {
        Message::Welcome(w) => w,
        other => return Err(AgentError::Unexpected(format!("{other:?}"))),
    };
    *attempt = 0;
    let spool = ctx.spool.clone();
    let acked = welcome.last_acked;
    tokio::task::spawn_blocking(move || spool.ack(acked))
        .await
        .map_err(|e| AgentError::Unexpected(e.to_string()))??;
    ctx.status_tx.send_replace(LinkStatus::Connected);
    tracing::info!(
        "connected to collector {addr}; it holds our batches up to {}, {} pending",
        welcome.last_acked,
        ctx.spool.pending()
    );
    let heartbeat = match welcome.heartbeat_interval_ms {
        0 => ctx.config.heartbeat,
        ms => Duration::from_millis(ms),
    };

    let pending_key: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
    let mut receiver = tokio::spawn(receive(
        reader,
        ctx.spool.clone(),
        ctx.jobs_tx.clone(),
        ctx.state.clone(),
        pending_key.clone(),
        ctx.renew_tx.clone(),
        ctx.runs_tx.clone(),
    ));
    let result = stream(ctx, &mut send, &mut receiver, &pending_key, heartbeat).await;
    if !receiver.is_finished() {
        // Let the collector drain and answer before we go.
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut receiver).await;
        receiver.abort();
    }
    conn.close(0u32.into(), b"agent closing");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    result
}

async fn stream(
    ctx: &Ctx,
    send: &mut quinn::SendStream,
    receiver: &mut tokio::task::JoinHandle<Result<(), AgentError>>,
    pending_key: &Arc<Mutex<Option<Vec<u8>>>>,
    heartbeat: Duration,
) -> Result<End, AgentError> {
    let mut last_rx = ctx.spool.subscribe_last();
    let mut acked_rx = ctx.spool.subscribe_acked();
    let mut next = ctx.spool.acked() + 1;
    let mut idle = tokio::time::interval(heartbeat);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renew_tick = tokio::time::interval(ctx.config.renew_check);
    let mut shutdown = ctx.shutdown.clone();
    let mut reports = ctx.reports.lock().await;
    loop {
        let acked = ctx.spool.acked();
        next = next.max(acked + 1);
        let last = ctx.spool.last();
        let mut sent_any = false;
        while next <= last && next - acked <= ctx.config.window {
            let spool = ctx.spool.clone();
            let seq = next;
            let frame = tokio::task::spawn_blocking(move || spool.read_frame(seq))
                .await
                .map_err(|e| AgentError::Unexpected(e.to_string()))??;
            // A missing file was quarantined as damaged: the collector accepts the gap.
            if let Some(frame) = frame {
                send.write_all(&frame)
                    .await
                    .map_err(|e| AgentError::Connection(e.to_string()))?;
                sent_any = true;
            }
            next += 1;
        }
        // A report follows the batches holding its results on the same ordered
        // stream, so the collector has stored them when it reads the report.
        // It leaves the queue only once written: a failed write keeps it for
        // the next connection.
        while let Some(report) = reports.waiting.front() {
            if report.last_sequence >= next {
                break;
            }
            link::write(send, &Message::RunReport(report.clone())).await?;
            reports.waiting.pop_front();
            sent_any = true;
        }
        if sent_any {
            idle.reset();
        }
        tokio::select! {
            Some(report) = reports.rx.recv() => reports.waiting.push_back(report),
            _ = last_rx.changed() => {}
            _ = acked_rx.changed() => {}
            _ = idle.tick() => {
                link::write(send, &Message::Heartbeat(Heartbeat { sent_ms: now_ms() })).await?;
            }
            _ = renew_tick.tick() => maybe_renew(ctx, send, pending_key).await?,
            r = &mut *receiver => {
                return match r {
                    Ok(Ok(())) => Ok(End::Closed),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(AgentError::Unexpected(e.to_string())),
                };
            }
            _ = stopped(&mut shutdown) => {
                // Give in-flight batches a moment to be acknowledged, then leave.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while ctx.spool.acked() < next - 1 && tokio::time::Instant::now() < deadline {
                    if tokio::time::timeout_at(deadline, acked_rx.changed()).await.is_err() {
                        break;
                    }
                }
                return Ok(End::Shutdown);
            }
        }
    }
}

async fn maybe_renew(
    ctx: &Ctx,
    send: &mut quinn::SendStream,
    pending_key: &Arc<Mutex<Option<Vec<u8>>>>,
) -> Result<(), AgentError> {
    if pending_key.lock().map(|k| k.is_some()).unwrap_or(true) {
        return Ok(());
    }
    let st = read_state(ctx)?;
    let validity = crate::cert::validity(&st.cert_der()?)?;
    if !validity.needs_renewal(now_ms() as i64 / 1000, ctx.config.renew_fraction) {
        return Ok(());
    }
    tracing::info!(
        "certificate expires at {}; requesting renewal",
        validity.not_after
    );
    let (key, csr_der) = crate::enroll::new_tls_key_and_csr(st.meta.agent.as_str())?;
    if let Ok(mut k) = pending_key.lock() {
        *k = Some(key.serialize_der());
    }
    link::write(send, &Message::Renew(RenewRequest { csr_der })).await
}

async fn receive(
    mut reader: link::FrameReader,
    spool: Arc<Spool>,
    jobs_tx: watch::Sender<Option<JobPush>>,
    state: Arc<RwLock<AgentState>>,
    pending_key: Arc<Mutex<Option<Vec<u8>>>>,
    renew_tx: watch::Sender<u64>,
    runs_tx: mpsc::Sender<RunRequest>,
) -> Result<(), AgentError> {
    while let Some(msg) = reader.next().await? {
        match msg {
            Message::Ack(a) => {
                let s = spool.clone();
                tokio::task::spawn_blocking(move || s.ack(a.sequence))
                    .await
                    .map_err(|e| AgentError::Unexpected(e.to_string()))??;
            }
            Message::Jobs(j) => {
                tracing::info!("received {} job(s) from the collector", j.jobs.len());
                jobs_tx.send_replace(Some(j));
            }
            Message::Renewed(r) => {
                let key = pending_key
                    .lock()
                    .ok()
                    .and_then(|mut k| k.take())
                    .ok_or_else(|| AgentError::Unexpected("renewal we did not ask for".into()))?;
                let mut st = state
                    .write()
                    .map_err(|_| AgentError::Unexpected("state lock poisoned".into()))?;
                if crate::cert::identity(&r.certificate_der)? != st.identity() {
                    return Err(AgentError::Unexpected(
                        "renewed certificate names another agent".into(),
                    ));
                }
                st.tls = TlsIdentity {
                    cert_hex: hex::encode(&r.certificate_der),
                    key_hex: hex::encode(&key),
                };
                st.save_tls()?;
                renew_tx.send_modify(|n| *n += 1);
                tracing::info!("certificate renewed; used from the next connection");
            }
            Message::Heartbeat(_) => {}
            Message::RunJob(req) => {
                tracing::info!(
                    "collector requests run {} of job {}",
                    req.run_id,
                    req.job.job_id
                );
                // Never block the receive loop (acks flow through it): a request
                // that does not fit is dropped and resent after a reconnect.
                if let Err(e) = runs_tx.try_send(req) {
                    tracing::warn!("run request not queued: {e}");
                }
            }
            Message::Error(e) => return Err(link::refused(e)),
            other => {
                return Err(AgentError::Unexpected(format!("{other:?}")));
            }
        }
    }
    Ok(())
}

/// Resolves once shutdown was requested (never, if the handle is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
