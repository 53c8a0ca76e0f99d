//! Collector-scheduled scan runs end to end: the collector's scheduler (on a
//! manual clock) sends due runs over mutual-TLS QUIC, the agent scans a real
//! loopback listener, spools the results and reports; the run is recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent::scan::ScanOptions;
use agent::{AgentState, LinkStatus, Spool, Uplink, UplinkConfig};
use collector::admin::AdminRequest;
use collector::config::{JobConfig, ScopeConfig, TenantConfig};
use collector::scheduler::ScheduleSummary;
use collector::store::{RunFilter, RunRecord, RunStatus, SledStore, Store};
use collector::time::ManualClock;
use collector::{Collector, CollectorConfig};
use e2e::{enroll, init, wait_for};
use protocol::{CheckKind, Observation, PortState, SignedBatch, TenantId};
use tokio::io::AsyncWriteExt;

/// Monday 2030-01-07 00:00:00 UTC.
const MONDAY_MS: u64 = 1_893_974_400_000;
const HOUR_MS: u64 = 3_600_000;
const MINUTE_MS: u64 = 60_000;

/// Monday at `h:m:s` UTC.
fn monday(h: u64, m: u64, s: u64) -> u64 {
    MONDAY_MS + h * HOUR_MS + m * MINUTE_MS + s * 1000
}

fn fast_uplink() -> UplinkConfig {
    UplinkConfig {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        ..UplinkConfig::default()
    }
}

/// A loopback TCP service that greets like an SSH server.
async fn ssh_like_listener() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert_ne!(addr.port(), 2024, "port 2024 belongs to the machine");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6p1 vigil-test\r\n").await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            });
        }
    });
    (addr, task)
}

fn job(id: &str, target: &str, port: u16, windows: &[&str]) -> JobConfig {
    JobConfig {
        id: id.into(),
        targets: vec![target.into()],
        ports: Some(port.to_string()),
        checks: vec![CheckKind::Ports],
        every: None,
        schedule: Some("0 0 * * * *".into()),
        windows: windows.iter().map(|w| w.to_string()).collect(),
        timezone: None,
    }
}

/// A collector whose tenant `acme` may scan only 127.0.0.1:`port`.
async fn start(dir: &Path, port: u16, jobs: Vec<JobConfig>, clock: Arc<ManualClock>) -> Collector {
    let mut tenants = BTreeMap::new();
    tenants.insert(
        "acme".to_string(),
        TenantConfig {
            scope: ScopeConfig {
                cidrs: vec!["127.0.0.1/32".into()],
                hostnames: vec![],
                ports: port.to_string(),
            },
            jobs,
        },
    );
    let settings = CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        metrics_listen: String::new(),
        console_listen: String::new(),
        tenants,
        ..CollectorConfig::default()
    }
    .validate()
    .expect("valid settings");
    std::fs::create_dir_all(dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.join("db")).unwrap());
    Collector::start_with_clock(settings, store, clock)
        .await
        .expect("collector starts")
}

/// A running agent: uplink plus the executor for collector-scheduled runs.
struct RunningAgent {
    uplink: Uplink,
    executor: tokio::task::JoinHandle<()>,
}

impl RunningAgent {
    async fn start(state: &AgentState, spool: &Arc<Spool>) -> Self {
        let mut uplink = Uplink::spawn(state.clone(), spool.clone(), fast_uplink());
        let executor = tokio::spawn(agent::runner::run_requests(
            uplink.take_run_requests().expect("run requests"),
            uplink.run_reporter(),
            spool.clone(),
            500,
            ScanOptions::default(),
        ));
        let mut status = uplink.status.clone();
        tokio::time::timeout(
            Duration::from_secs(30),
            status.wait_for(|s| *s == LinkStatus::Connected),
        )
        .await
        .expect("agent connects")
        .unwrap();
        Self { uplink, executor }
    }

    async fn stop(self) {
        self.executor.abort();
        self.uplink.stop().await.unwrap();
    }
}

fn open_spool(dir: &Path, state: &AgentState) -> Arc<Spool> {
    Arc::new(
        Spool::open(
            &dir.join("spool"),
            state.identity(),
            state.signing_key.clone(),
        )
        .unwrap(),
    )
}

fn runs(collector: &Collector) -> Vec<RunRecord> {
    let mut runs = collector.store().runs(&RunFilter::default()).unwrap();
    runs.sort_by_key(|r| (r.scheduled_ms, r.job_id.clone()));
    runs
}

fn run_of(collector: &Collector, job_id: &str, due: u64) -> Option<RunRecord> {
    runs(collector)
        .into_iter()
        .find(|r| r.job_id == job_id && r.scheduled_ms == due)
}

/// Port observations for `port` stored for the agent, with their job ids.
fn stored_port_observations(
    collector: &Collector,
    state: &AgentState,
    port: u16,
) -> Vec<(String, PortState, Option<String>)> {
    let key = state.signing_key.verifying_key();
    let mut out = Vec::new();
    for b in collector
        .store()
        .batches(&state.meta.tenant, &state.meta.agent, 0)
        .unwrap()
    {
        let body = SignedBatch {
            body: b.body,
            signature: b.signature,
        }
        .verify(&key)
        .unwrap();
        for r in body.records {
            if let Observation::Port(p) = r.observation
                && p.port == port
            {
                out.push((r.job_id, p.state, p.service));
            }
        }
    }
    out
}

#[tokio::test]
async fn due_run_is_sent_to_the_connected_agent_scanned_and_recorded() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (target, _listener) = ssh_like_listener().await;
    let clock = Arc::new(ManualClock::new(monday(10, 30, 0)));
    let collector = start(
        &dir.path().join("c"),
        target.port(),
        vec![
            job("hourly", "127.0.0.1", target.port(), &[]),
            // Outside the tenant's scope: the agent must refuse it.
            job("rogue", "127.0.0.2", target.port(), &[]),
        ],
        clock.clone(),
    )
    .await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let spool = open_spool(dir.path(), &state);
    let agent = RunningAgent::start(&state, &spool).await;
    let scheduler = collector.scheduler();

    // First evaluation only starts the schedule: nothing before it is backfilled.
    scheduler.tick().unwrap();
    assert!(runs(&collector).is_empty());
    // Still before the hour: nothing due.
    clock.set(monday(10, 59, 59));
    assert_eq!(scheduler.tick().unwrap().created, 0);

    clock.set(monday(11, 0, 0));
    let tick = scheduler.tick().unwrap();
    assert_eq!(
        tick.created, 2,
        "one run per job for the tenant's one agent"
    );
    wait_for(
        "the in-scope run to succeed",
        Duration::from_secs(30),
        || {
            run_of(&collector, "hourly", monday(11, 0, 0))
                .is_some_and(|r| r.status == RunStatus::Succeeded)
        },
    )
    .await;
    wait_for(
        "the out-of-scope run to fail",
        Duration::from_secs(30),
        || {
            run_of(&collector, "rogue", monday(11, 0, 0))
                .is_some_and(|r| r.status == RunStatus::Failed)
        },
    )
    .await;

    let run = run_of(&collector, "hourly", monday(11, 0, 0)).unwrap();
    assert_eq!(run.agent, state.meta.agent);
    assert_eq!(run.tenant.as_str(), "acme");
    assert_eq!(run.dispatched_ms, Some(monday(11, 0, 0)));
    assert_eq!(run.dispatches, 1);
    assert!(run.observations >= 1, "{run:?}");
    assert!(run.batches >= 1 && run.last_sequence >= 1, "{run:?}");
    let (started, finished) = (run.started_ms.unwrap(), run.finished_ms.unwrap());
    assert!(started <= finished);
    assert_eq!(run.duration_ms(), Some(finished - started));
    assert_eq!(run.error, None);

    let rogue = run_of(&collector, "rogue", monday(11, 0, 0)).unwrap();
    let why = rogue.error.clone().unwrap_or_default();
    assert!(
        why.contains("127.0.0.2") && why.contains("refused"),
        "{why}"
    );
    assert_eq!(rogue.observations, 0);

    // The results were on the wire before the report: already stored.
    let d = collector
        .store()
        .delivery(&state.meta.tenant, &state.meta.agent)
        .unwrap();
    assert!(d.last_sequence >= run.last_sequence);
    let seen = stored_port_observations(&collector, &state, target.port());
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "hourly");
    assert_eq!(seen[0].1, PortState::Open);
    assert_eq!(seen[0].2.as_deref(), Some("ssh"));

    let m = collector.metrics();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&m.runs_dispatched), 2);
    assert_eq!(get(&m.runs_succeeded), 1);
    assert_eq!(get(&m.runs_failed), 1);
    assert_eq!(get(&m.runs_missed), 0);

    // The admin view: runs of this agent, and the next due time of each schedule.
    let v = collector
        .admin()
        .handle(AdminRequest::ListRuns {
            tenant: Some(TenantId::new("acme").unwrap()),
            agent: Some(state.meta.agent.clone()),
            limit: Some(10),
        })
        .unwrap();
    let listed: Vec<RunRecord> = serde_json::from_value(v).unwrap();
    assert_eq!(listed.len(), 2);
    let v = collector
        .admin()
        .handle(AdminRequest::ListSchedules { tenant: None })
        .unwrap();
    let schedules: Vec<ScheduleSummary> = serde_json::from_value(v).unwrap();
    assert_eq!(schedules.len(), 2);
    for s in &schedules {
        assert_eq!(s.next_due_ms, Some(monday(12, 0, 0)), "{s:?}");
        assert_eq!(s.pending_runs, 0);
    }

    agent.stop().await;
    collector.shutdown().await;
}

#[tokio::test]
async fn run_missed_while_offline_is_sent_when_the_agent_reconnects() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (target, _listener) = ssh_like_listener().await;
    let clock = Arc::new(ManualClock::new(monday(10, 30, 0)));
    let collector = start(
        &dir.path().join("c"),
        target.port(),
        vec![job("hourly", "127.0.0.1", target.port(), &[])],
        clock.clone(),
    )
    .await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let spool = open_spool(dir.path(), &state);
    let scheduler = collector.scheduler();
    scheduler.tick().unwrap();

    // Connected once, then gone.
    let agent = RunningAgent::start(&state, &spool).await;
    agent.stop().await;
    let admin = collector.admin();
    wait_for(
        "the collector to see the agent leave",
        Duration::from_secs(30),
        || admin.list_agents(None).unwrap().iter().all(|a| !a.online),
    )
    .await;

    // Two fire times pass while it is offline.
    clock.set(monday(11, 0, 5));
    let t = scheduler.tick().unwrap();
    assert_eq!((t.created, t.dispatched), (1, 0));
    assert_eq!(
        run_of(&collector, "hourly", monday(11, 0, 0))
            .unwrap()
            .status,
        RunStatus::Queued
    );
    clock.set(monday(12, 0, 5));
    let t = scheduler.tick().unwrap();
    assert_eq!((t.created, t.dispatched, t.missed), (1, 0, 1));
    // The agent ran nothing meanwhile.
    assert_eq!(spool.last(), 0);

    // Back online: the session hands it the owed run without any further tick from us.
    let agent = RunningAgent::start(&state, &spool).await;
    wait_for("the owed run to succeed", Duration::from_secs(30), || {
        run_of(&collector, "hourly", monday(12, 0, 0))
            .is_some_and(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    let older = run_of(&collector, "hourly", monday(11, 0, 0)).unwrap();
    assert_eq!(older.status, RunStatus::Missed);
    assert!(older.error.unwrap_or_default().contains("superseded"));
    let run = run_of(&collector, "hourly", monday(12, 0, 0)).unwrap();
    assert_eq!(run.dispatched_ms, Some(monday(12, 0, 5)));
    assert!(run.duration_ms().is_some());
    // Exactly one scan ran: one observation of the listener, from that run.
    wait_for("results stored", Duration::from_secs(30), || {
        collector
            .store()
            .delivery(&state.meta.tenant, &state.meta.agent)
            .unwrap()
            .last_sequence
            >= run.last_sequence
    })
    .await;
    assert_eq!(
        stored_port_observations(&collector, &state, target.port()).len(),
        1
    );
    let m = collector.metrics();
    assert_eq!(m.runs_missed.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        m.runs_dispatched.load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    agent.stop().await;
    collector.shutdown().await;
}

#[tokio::test]
async fn run_due_outside_its_window_starts_when_the_window_opens() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (target, _listener) = ssh_like_listener().await;
    let clock = Arc::new(ManualClock::new(monday(20, 30, 0)));
    let collector = start(
        &dir.path().join("c"),
        target.port(),
        vec![job(
            "nightly",
            "127.0.0.1",
            target.port(),
            &["Mon-Fri 21:30-06:00"],
        )],
        clock.clone(),
    )
    .await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let spool = open_spool(dir.path(), &state);
    let agent = RunningAgent::start(&state, &spool).await;
    let scheduler = collector.scheduler();
    scheduler.tick().unwrap();

    // Due at 21:00, but the window opens at 21:30: queued, with the agent online.
    clock.set(monday(21, 0, 0));
    let t = scheduler.tick().unwrap();
    assert_eq!((t.created, t.dispatched), (1, 0));
    clock.set(monday(21, 29, 59));
    for _ in 0..10 {
        assert_eq!(scheduler.tick().unwrap().dispatched, 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = run_of(&collector, "nightly", monday(21, 0, 0)).unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.dispatched_ms, None);
    assert_eq!(spool.last(), 0, "the agent scanned nothing yet");
    let v = collector
        .admin()
        .handle(AdminRequest::ListSchedules { tenant: None })
        .unwrap();
    let s: Vec<ScheduleSummary> = serde_json::from_value(v).unwrap();
    assert_eq!(s[0].pending_runs, 1);
    assert_eq!(s[0].next_due_ms, Some(monday(22, 0, 0)));
    assert_eq!(s[0].windows, vec!["Mon-Fri 21:30-06:00".to_string()]);

    clock.set(monday(21, 30, 0));
    assert_eq!(scheduler.tick().unwrap().dispatched, 1);
    wait_for("the run to succeed", Duration::from_secs(30), || {
        run_of(&collector, "nightly", monday(21, 0, 0))
            .is_some_and(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    let run = run_of(&collector, "nightly", monday(21, 0, 0)).unwrap();
    assert_eq!(run.dispatched_ms, Some(monday(21, 30, 0)));
    assert!(run.observations >= 1);

    agent.stop().await;
    collector.shutdown().await;
}

#[tokio::test]
async fn run_started_on_demand_is_scanned_and_recorded_before_its_schedule() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (target, _listener) = ssh_like_listener().await;
    let clock = Arc::new(ManualClock::new(monday(10, 30, 0)));
    let collector = start(
        &dir.path().join("c"),
        target.port(),
        vec![job("hourly", "127.0.0.1", target.port(), &[])],
        clock.clone(),
    )
    .await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let spool = open_spool(dir.path(), &state);
    let agent = RunningAgent::start(&state, &spool).await;
    collector.scheduler().tick().unwrap();
    assert!(runs(&collector).is_empty(), "nothing due before the hour");

    // An operator asks for the job now, half an hour before its schedule.
    let admin = collector.admin();
    let v = admin
        .handle(AdminRequest::StartRun {
            tenant: TenantId::new("acme").unwrap(),
            job_id: "hourly".into(),
        })
        .unwrap();
    let queued: Vec<RunRecord> = serde_json::from_value(v).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].scheduled_ms, monday(10, 30, 0));
    let id = queued[0].run_id.clone();
    // The scheduler loop is woken; no manual tick needed.
    wait_for(
        "the on-demand run to succeed",
        Duration::from_secs(30),
        || {
            runs(&collector)
                .iter()
                .any(|r| r.run_id == id && r.status == RunStatus::Succeeded)
        },
    )
    .await;
    let seen = stored_port_observations(&collector, &state, target.port());
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "hourly");

    // Unknown jobs and other tenants' jobs are refused.
    for (tenant, job) in [("acme", "nightly"), ("globex", "hourly")] {
        let err = admin
            .handle(AdminRequest::StartRun {
                tenant: TenantId::new(tenant).unwrap(),
                job_id: job.into(),
            })
            .unwrap_err();
        assert!(err.to_string().contains("no scheduled job"), "{err}");
    }
    // The schedule itself is unaffected: the hourly run still comes at 11:00.
    clock.set(monday(11, 0, 0));
    assert_eq!(collector.scheduler().tick().unwrap().created, 1);

    agent.stop().await;
    collector.shutdown().await;
}
