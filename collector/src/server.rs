//! The running collector: QUIC endpoint, metrics endpoint and admin socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use thiserror::Error;

use crate::admin::{Admin, LiveAgents};
use crate::admin_socket;
use crate::config::Settings;
use crate::console_api;
use crate::findings::FindingError;
use crate::findings::pipeline::Pipeline;
use crate::group_commit::GroupCommit;
use crate::metrics::Metrics;
use crate::pki::{Pki, PkiError};
use crate::scheduler::Scheduler;
use crate::session;
use crate::store::{SledStore, Store, StoreError};
use crate::time::{Clock, SystemClock};
use crate::udp_buffer;
use crate::verifier::AgentCertVerifier;

/// Failures while starting the collector.
#[derive(Debug, Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CAs could not be loaded or created.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The findings pipeline (rules, findings state, search index) could not start.
    #[error(transparent)]
    Findings(#[from] FindingError),
    /// The console account store could not be opened.
    #[error("console accounts: {0}")]
    Console(String),
    /// A socket could not be bound.
    #[error("{what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
}

/// State shared by every connection.
pub struct Shared {
    /// Validated configuration.
    pub settings: Settings,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Certificate authorities.
    pub pki: Arc<Pki>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Connected agents.
    pub live: Arc<LiveAgents>,
    /// Collector-driven scan runs.
    pub scheduler: Arc<Scheduler>,
    /// Findings pipeline: rule evaluation, change detection, search.
    pub findings: Arc<Pipeline>,
    /// Wakes the findings pipeline after a batch is stored.
    pub findings_notify: Arc<tokio::sync::Notify>,
    /// Alert channels, rules, mute windows and the delivery queue.
    pub alerts: Arc<crate::alerts::AlertService>,
    /// Collector-wide group commit behind every ack.
    pub commits: Arc<GroupCommit>,
    /// Bounds the batches verified and stored at once (backpressure).
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
}

/// A started collector; dropping it does not stop it, call [`Collector::shutdown`].
pub struct Collector {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    metrics_addr: Option<SocketAddr>,
    console_addr: Option<SocketAddr>,
    accounts: Option<Arc<dyn console::AccountStore>>,
    compliance: Option<Arc<crate::compliance_api::Compliance>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn quinn_server_config(shared: &Shared) -> Result<quinn::ServerConfig, StartError> {
    let tls_err = |e: &dyn std::fmt::Display| StartError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AgentCertVerifier::new(
        shared.pki.clone(),
        shared.store.clone(),
        provider.clone(),
    ));
    let (chain, key) = shared
        .pki
        .server_identity(&shared.settings.raw.server_names)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&e))?;
    tls.alpn_protocols = vec![protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| tls_err(&e))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(
            shared
                .settings
                .idle_timeout
                .try_into()
                .map_err(|e| tls_err(&e))?,
        ))
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((16u32 * 1024 * 1024).into())
        .receive_window((32u32 * 1024 * 1024).into())
        .send_window(8 * 1024 * 1024);
    config.transport_config(Arc::new(transport));
    Ok(config)
}

impl Collector {
    /// Opens the embedded store in the configured data directory and starts serving.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let dir = &settings.raw.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| StartError::Bind {
            what: "creating data directory",
            addr: dir.display().to_string(),
            source,
        })?;
        let store: Arc<dyn Store> = if settings.raw.backend.is_scaleout() {
            crate::backend::open_collector_store(&settings)
                .map_err(|e| StoreError::Backend(e.to_string()))?
        } else {
            Arc::new(SledStore::open(&dir.join("db"))?)
        };
        Self::start_with_store(settings, store).await
    }

    /// Starts serving over an already opened store.
    pub async fn start_with_store(
        settings: Settings,
        store: Arc<dyn Store>,
    ) -> Result<Self, StartError> {
        Self::start_with_clock(settings, store, Arc::new(SystemClock)).await
    }

    /// Starts serving with the scan scheduler reading time from `clock`.
    pub async fn start_with_clock(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let pki = Arc::new(Pki::open(store.clone())?);
        let metrics = Arc::new(Metrics::default());
        let compliance_clock = clock.clone();
        let scheduler = Arc::new(Scheduler::new(
            &settings,
            store.clone(),
            metrics.clone(),
            clock,
        ));
        let rules = settings
            .load_rules()
            .map_err(|e| FindingError::Rules(e.to_string()))?;
        tracing::info!("{} compliance rules loaded", rules.rules().len());
        let findings = Arc::new(crate::backend::open_pipeline(
            &settings,
            store.clone(),
            Arc::new(rules),
            metrics.clone(),
        )?);
        let alerts = Arc::new(crate::alerts::AlertService::new(
            findings.finding_store().clone(),
            settings.alerts.clone(),
            metrics.clone(),
        ));
        let ingest_slots = match settings.raw.ingest_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let (commits, flusher) = GroupCommit::start(store.clone(), metrics.clone());
        let shared = Arc::new(Shared {
            alerts,
            commits,
            ingest_slots: Arc::new(tokio::sync::Semaphore::new(ingest_slots)),
            store,
            pki,
            metrics,
            live: Arc::new(LiveAgents::default()),
            scheduler,
            findings,
            findings_notify: Arc::new(tokio::sync::Notify::new()),
            settings,
        });
        let listen = shared.settings.raw.listen;
        let bind_err = |source| StartError::Bind {
            what: "QUIC listener",
            addr: listen.to_string(),
            source,
        };
        // A stateless-reset key that survives restarts lets a restarted collector
        // tell agents at once that their old connection is gone, instead of them
        // waiting for the idle timeout.
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StartError::Tls(e.to_string()))?;
        let reset_secret = shared.store.secret("quic-stateless-reset", fresh)?;
        let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset_secret);
        let socket = std::net::UdpSocket::bind(listen).map_err(bind_err)?;
        let rcvbuf =
            udp_buffer::grow_receive_buffer(&socket, shared.settings.raw.udp_receive_buffer);
        tracing::info!("QUIC socket receive buffer: {rcvbuf:?} bytes");
        let runtime = quinn::default_runtime()
            .ok_or_else(|| StartError::Tls("no async runtime for QUIC".into()))?;
        // The connection-id key must survive restarts too, or the restarted
        // endpoint drops old connections' packets as invalid instead of resetting them.
        let cid_key = u64::from_be_bytes(reset_secret[..8].try_into().unwrap_or_default())
            ^ u64::from_be_bytes(reset_secret[24..].try_into().unwrap_or_default());
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(quinn_server_config(&shared)?),
            socket,
            runtime,
        )
        .map_err(bind_err)?;
        let mut tasks = vec![
            tokio::spawn(accept_loop(endpoint.clone(), shared.clone())),
            flusher,
        ];
        // Cron has one-second resolution; waking on agent connects covers the rest.
        tasks.push(tokio::spawn(
            shared
                .scheduler
                .clone()
                .run(std::time::Duration::from_secs(1)),
        ));
        // Findings are derived off the ack path, woken after each stored batch.
        // Disabled, the collector only ingests; the durable per-agent cursors let
        // a later start with the pipeline enabled catch up on everything stored.
        // Scale-out collectors only publish; `collector worker` derives findings.
        if shared.settings.raw.findings_pipeline && !shared.settings.raw.backend.is_scaleout() {
            tasks.push(
                shared
                    .findings
                    .clone()
                    .spawn(shared.findings_notify.clone()),
            );
        } else {
            tracing::info!("findings pipeline disabled: ingest only");
        }
        if shared.settings.alerts.enabled {
            tasks.push(shared.alerts.clone().spawn());
        } else {
            tracing::info!("alert dispatcher disabled: events wait in the outbox");
        }
        let sock = admin_socket::socket_path(&shared.settings.raw.data_dir);
        let admin = Admin::new(
            shared.store.clone(),
            shared.pki.clone(),
            shared.settings.token_ttl,
            Some(shared.live.clone()),
        )
        .with_scheduler(shared.scheduler.clone())
        .with_findings(shared.findings.clone());
        // Console accounts live in the same sled database as everything else.
        let accounts = console_api::account_store(shared.store.as_ref())
            .transpose()
            .map_err(|e| StartError::Console(e.to_string()))?;
        let admin = match &accounts {
            Some(a) => admin.with_accounts(a.clone()),
            None => admin,
        };
        // Reports and incidents keep their trees in the same sled database.
        let compliance = match shared.store.sled_db() {
            Some(db) => Some(Arc::new(
                crate::compliance_api::Compliance::open(
                    &shared.settings,
                    &db,
                    shared.findings.clone(),
                    compliance_clock,
                )
                .map_err(StartError::Console)?,
            )),
            None => None,
        };
        if let Some(c) = &compliance {
            c.incidents
                .set_reminder_sink(Arc::new(crate::alerts::IncidentReminders(
                    shared.alerts.clone(),
                )));
            tasks.extend(c.spawn());
        }
        let admin = match &compliance {
            Some(c) => admin.with_reports(c.reports.clone()),
            None => admin,
        };
        let mut console_addr = None;
        match (shared.settings.console_listen, &accounts) {
            (Some(addr), Some(a)) => {
                let ops = Arc::new(
                    console_api::ConsoleOps::new(admin.clone(), shared.store.clone())
                        .with_tenant_config(shared.settings.raw.tenants.clone())
                        .with_alerts(shared.alerts.clone()),
                );
                let options = console::ConsoleOptions {
                    trusted_proxies: shared.settings.console_trusted_proxies.clone(),
                    ..console::ConsoleOptions::default()
                };
                let state = console::ConsoleState::with_options(a.clone(), ops, options);
                if let Some(c) = &compliance {
                    state.set_compliance(c.ops());
                }
                let (local, task) =
                    console_api::serve(addr, state)
                        .await
                        .map_err(|source| StartError::Bind {
                            what: "console listener",
                            addr: addr.to_string(),
                            source,
                        })?;
                console_addr = Some(local);
                tasks.push(task);
            }
            (Some(_), None) => {
                tracing::warn!("console API disabled: it needs the sled store");
            }
            (None, _) => {}
        }
        tasks.push(
            admin_socket::serve(&sock, admin).map_err(|source| StartError::Bind {
                what: "admin socket",
                addr: sock.display().to_string(),
                source,
            })?,
        );
        let mut metrics_addr = None;
        if let Some(addr) = shared.settings.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    what: "metrics listener",
                    addr: addr.to_string(),
                    source,
                })?;
            metrics_addr = listener.local_addr().ok();
            let s = shared.clone();
            let extra = compliance.as_ref().map(|c| c.metrics.clone());
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let s = s.clone();
                    let extra = extra.clone();
                    async move {
                        let mut body =
                            tokio::task::spawn_blocking(move || s.metrics.render(s.store.as_ref()))
                                .await
                                .unwrap_or_default();
                        if let Some(m) = extra {
                            body.push_str(&m.render());
                        }
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            body,
                        )
                    }
                }),
            );
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("metrics server stopped: {e}");
                }
            }));
        }
        Ok(Self {
            shared,
            endpoint,
            metrics_addr,
            console_addr,
            accounts,
            compliance,
            tasks,
        })
    }

    /// Address the QUIC endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or(self.shared.settings.raw.listen)
    }

    /// Address of the metrics endpoint, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Address of the console HTTP API, if enabled.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_addr
    }

    /// The console account store (present on the sled store).
    pub fn accounts(&self) -> Option<Arc<dyn console::AccountStore>> {
        self.accounts.clone()
    }

    /// Administrative operations on this collector.
    pub fn admin(&self) -> Admin {
        let admin = Admin::new(
            self.shared.store.clone(),
            self.shared.pki.clone(),
            self.shared.settings.token_ttl,
            Some(self.shared.live.clone()),
        )
        .with_scheduler(self.shared.scheduler.clone())
        .with_findings(self.shared.findings.clone());
        let admin = match &self.compliance {
            Some(c) => admin.with_reports(c.reports.clone()),
            None => admin,
        };
        match &self.accounts {
            Some(a) => admin.with_accounts(a.clone()),
            None => admin,
        }
    }

    /// Report and incident services (present on the sled store).
    pub fn compliance(&self) -> Option<Arc<crate::compliance_api::Compliance>> {
        self.compliance.clone()
    }

    /// Alerting: channels, rules, deliveries and the incident reminder hook.
    pub fn alerts(&self) -> Arc<crate::alerts::AlertService> {
        self.shared.alerts.clone()
    }

    /// The findings pipeline (search, suppression, changes, posture).
    pub fn findings(&self) -> Arc<Pipeline> {
        self.shared.findings.clone()
    }

    /// The scan scheduler (tests tick it after moving a manual clock).
    pub fn scheduler(&self) -> Arc<Scheduler> {
        self.shared.scheduler.clone()
    }

    /// The store (for inspection and tests).
    pub fn store(&self) -> Arc<dyn Store> {
        self.shared.store.clone()
    }

    /// Counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Server CA fingerprint agents pin at enrolment.
    pub fn ca_fingerprint(&self) -> String {
        self.shared.pki.server_ca_fingerprint()
    }

    /// Stops accepting, closes connections and flushes the store.
    pub async fn shutdown(self) {
        self.endpoint.close(0u32.into(), b"collector shutting down");
        for t in &self.tasks {
            t.abort();
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.endpoint.wait_idle())
            .await;
        let _ = std::fs::remove_file(admin_socket::socket_path(
            &self.shared.settings.raw.data_dir,
        ));
        if let Err(e) = self.shared.store.flush() {
            tracing::error!("final flush failed: {e}");
        }
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    Metrics::inc(&shared.metrics.handshakes_failed);
                    tracing::warn!("handshake with {remote} failed: {e}");
                    return;
                }
            };
            Metrics::inc(&shared.metrics.connections_total);
            shared
                .metrics
                .connections_active
                .fetch_add(1, Ordering::Relaxed);
            if let Err(e) = session::run(shared.clone(), conn).await {
                tracing::warn!("session with {remote} ended: {e}");
            }
            shared
                .metrics
                .connections_active
                .fetch_sub(1, Ordering::Relaxed);
        });
    }
}
