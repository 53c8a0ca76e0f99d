//! Fault injection on loopback: spool write failures (disk full), a long
//! network partition, agent clock skew, certificate expiry during a
//! connection, a corrupted spool file and a collector SIGKILL while another
//! agent enrols. Every test ends by checking that nothing the collector
//! acknowledged was lost or stored twice.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agent::{AgentError, AgentState, LinkStatus, Spool, Uplink, UplinkConfig};
use collector::admin::{AdminRequest, CreatedToken};
use collector::store::Store;
use collector::{Collector, CollectorConfig};
use e2e::{
    CollectorProcess, RawClient, UdpProxy, enroll, enroll_with, free_udp_port, init, records,
    start_collector, wait_for,
};
use protocol::{BatchBody, ErrorCode, Message, Observation, SignedBatch, TenantId, sign_batch};

fn fast_uplink() -> UplinkConfig {
    UplinkConfig {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        ..UplinkConfig::default()
    }
}

fn open_spool(dir: &Path, state: &AgentState) -> Arc<Spool> {
    Arc::new(Spool::open(dir, state.identity(), state.signing_key.clone()).unwrap())
}

/// The collector holds exactly `expected` sequences of this agent, each once,
/// every one verifying with the agent's key; returns the records inside.
fn assert_stored_exactly(store: &dyn Store, state: &AgentState, expected: &[u64]) -> u64 {
    let stored = store
        .batches(&state.meta.tenant, &state.meta.agent, 0)
        .unwrap();
    let seqs: Vec<u64> = stored.iter().map(|b| b.sequence).collect();
    assert_eq!(seqs, expected, "stored sequences, each exactly once");
    let key = state.signing_key.verifying_key();
    let mut records = 0;
    for b in &stored {
        let body = SignedBatch {
            body: b.body.clone(),
            signature: b.signature,
        }
        .verify(&key)
        .unwrap();
        assert_eq!(body.sequence, b.sequence);
        records += body.records.len() as u64;
    }
    let d = store
        .delivery(&state.meta.tenant, &state.meta.agent)
        .unwrap();
    assert_eq!(d.batches, expected.len() as u64);
    assert_eq!(d.records, records);
    assert_eq!(d.last_sequence, expected.last().copied().unwrap_or(0));
    records
}

const CHILD_ENV: &str = "VIGIL_FAULTS_SPOOL_CHILD";

/// Appends in a child process whose file-size limit (RLIMIT_FSIZE) makes any
/// write past 64 KiB fail the way a full disk does: part of the data written,
/// then an error from write(2).
fn spool_child(state_dir: &str) {
    let state = AgentState::load(Path::new(state_dir)).unwrap();
    let spool = Spool::open(
        &Path::new(state_dir).join("spool"),
        state.identity(),
        state.signing_key.clone(),
    )
    .unwrap();
    let report = |r: Result<u64, agent::spool::SpoolError>| match r {
        Ok(seq) => println!("CHILD ok {seq}"),
        Err(e) => println!("CHILD err {e}"),
    };
    report(spool.append(records("child-small-1", 5)));
    // About 150 KiB encoded: does not fit under the limit.
    report(spool.append(records("child-big", 2000)));
    report(spool.append(records("child-small-2", 5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_write_failure_is_a_clear_error_and_keeps_what_was_spooled() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        spool_child(&dir);
        return;
    }
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let state_dir = dir.path().join("a");
    let state = enroll(&collector, "acme", &state_dir).await.unwrap();
    {
        let spool = open_spool(&state_dir.join("spool"), &state);
        for i in 0..3 {
            assert_eq!(
                spool.append(records(&format!("before-{i}"), 5)).unwrap(),
                i + 1
            );
        }
    }

    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "spool_write_failure_is_a_clear_error_and_keeps_what_was_spooled",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD_ENV, &state_dir);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Ignored signals stay ignored across exec: write(2) then fails
            // with EFBIG instead of the process being killed by SIGXFSZ.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    let lines: Vec<&str> = stdout
        .lines()
        // The harness may print its "test ... " prefix on the same line.
        .filter_map(|l| l.find("CHILD ").map(|i| &l[i + 6..]))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], "ok 4");
    // A clear error: which file, and what the OS said.
    assert!(
        lines[1].starts_with("err spool ")
            && lines[1].contains("00000000000000000005.frame")
            && lines[1].contains("File too large"),
        "{}",
        lines[1]
    );
    // The failed batch did not use up a sequence number: no gap follows.
    assert_eq!(lines[2], "ok 5");

    // Reopening removes the half-written temporary file and keeps the rest.
    let spool = open_spool(&state_dir.join("spool"), &state);
    assert_eq!((spool.acked(), spool.last()), (0, 5));
    let leftovers: Vec<_> = std::fs::read_dir(state_dir.join("spool"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let uplink = Uplink::spawn(state.clone(), spool.clone(), fast_uplink());
    wait_for("all spooled batches acked", Duration::from_secs(30), || {
        spool.acked() == 5
    })
    .await;
    uplink.stop().await.unwrap();
    let n = assert_stored_exactly(collector.store().as_ref(), &state, &[1, 2, 3, 4, 5]);
    assert_eq!(n, 25, "five small batches; the big one never existed");
    collector.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_partition_then_the_whole_backlog_drains_exactly_once() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let mut state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let proxy = UdpProxy::start(collector.local_addr()).await.unwrap();
    state.meta.collector = proxy.addr().to_string();
    let spool = open_spool(&dir.path().join("spool"), &state);
    let uplink = Uplink::spawn(state.clone(), spool.clone(), fast_uplink());
    for i in 0..10 {
        spool.append(records(&format!("pre-{i}"), 20)).unwrap();
    }
    wait_for(
        "pre-partition batches acked",
        Duration::from_secs(30),
        || spool.acked() == 10,
    )
    .await;

    // Longer than the agent's 20 s idle timeout: its connection dies and every
    // reconnect attempt goes into the void, while scans keep spooling.
    proxy.partition(true);
    let cut_at = Instant::now();
    const BACKLOG: u64 = 3000;
    let producer = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..BACKLOG {
                spool.append(records(&format!("offline-{i}"), 20)).unwrap();
            }
        })
    };
    producer.await.unwrap();
    let mut status = uplink.status.clone();
    tokio::time::timeout(
        Duration::from_secs(40),
        status.wait_for(|s| *s == LinkStatus::Disconnected),
    )
    .await
    .expect("the agent notices the partition")
    .unwrap();
    assert_eq!(
        spool.acked(),
        10,
        "nothing is acknowledged across a partition"
    );
    assert_eq!(spool.pending(), BACKLOG);
    let partition_len = cut_at.elapsed();
    proxy.partition(false);

    let total = 10 + BACKLOG;
    wait_for("backlog drained", Duration::from_secs(90), || {
        spool.acked() == total
    })
    .await;
    uplink.stop().await.unwrap();
    assert_eq!(spool.pending(), 0);
    let expected: Vec<u64> = (1..=total).collect();
    let n = assert_stored_exactly(collector.store().as_ref(), &state, &expected);
    assert_eq!(n, total * 20);
    eprintln!(
        "partition of {:.1} s; {BACKLOG} batches drained afterwards",
        partition_len.as_secs_f64()
    );
    collector.shutdown().await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_agent_clock_is_accepted_and_ordered_by_sequence() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let now = now_ms();
    const YEAR_MS: u64 = 365 * 86_400_000;
    // Agent clocks: a century ahead, the epoch, and three days behind; the
    // sequence order is the reverse of neither.
    let clocks = [now + 100 * YEAR_MS, 1, now - 3 * 86_400_000];
    let (mut client, _) = RawClient::as_agent(collector.local_addr(), &state)
        .await
        .unwrap();
    let before = now_ms();
    for (i, created) in clocks.iter().enumerate() {
        let mut recs = records(&format!("skew-{i}"), 10);
        for r in &mut recs {
            r.observed_ms = *created;
        }
        let body = BatchBody {
            tenant: state.meta.tenant.clone(),
            agent: state.meta.agent.clone(),
            sequence: i as u64 + 1,
            created_ms: *created,
            records: recs,
        };
        client
            .send(&Message::Batch(
                sign_batch(&state.signing_key, &body).unwrap(),
            ))
            .await
            .unwrap();
    }
    let mut highest = 0;
    while highest < 3 {
        match client.next_reply().await.unwrap() {
            Some(Message::Ack(a)) => highest = a.sequence,
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    let after = now_ms();
    let store = collector.store();
    assert_stored_exactly(store.as_ref(), &state, &[1, 2, 3]);
    // The collector stamps its own clock on receipt; the agent's stays in the signed body.
    for b in store
        .batches(&state.meta.tenant, &state.meta.agent, 0)
        .unwrap()
    {
        assert!(
            (before..=after).contains(&b.received_ms),
            "{}",
            b.received_ms
        );
        let body = SignedBatch {
            body: b.body,
            signature: b.signature,
        }
        .decode_unverified()
        .unwrap();
        assert_eq!(body.created_ms, clocks[b.sequence as usize - 1]);
    }
    // The findings pipeline digests the odd timestamps without errors.
    let m = collector.metrics();
    wait_for("findings processed", Duration::from_secs(30), || {
        m.findings_batches_processed.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert_eq!(m.findings_errors.load(Ordering::Relaxed), 0);
    collector.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiring_mid_connection_keeps_the_connection_then_reconnect_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let settings = CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("c"),
        metrics_listen: String::new(),
        console_listen: String::new(),
        agent_cert_lifetime: "1m".into(),
        ..CollectorConfig::default()
    }
    .validate()
    .unwrap();
    let collector = Collector::start(settings).await.unwrap();
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let validity = agent::cert::validity(&state.cert_der().unwrap()).unwrap();
    let spool = open_spool(&dir.path().join("spool"), &state);
    // Renewal effectively disabled: the first check finds a fresh certificate,
    // the next would come after an hour.
    let uplink = Uplink::spawn(
        state.clone(),
        spool.clone(),
        UplinkConfig {
            renew_check: Duration::from_secs(3600),
            ..fast_uplink()
        },
    );
    spool.append(records("fresh", 5)).unwrap();
    wait_for("batch acked", Duration::from_secs(30), || {
        spool.acked() == 1
    })
    .await;

    let expired_at = validity.not_after;
    while (now_ms() / 1000) as i64 <= expired_at + 1 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The established connection was authenticated at its handshake and keeps working.
    assert_eq!(*uplink.status.borrow(), LinkStatus::Connected);
    spool.append(records("after-expiry", 5)).unwrap();
    wait_for("batch acked after expiry", Duration::from_secs(30), || {
        spool.acked() == 2
    })
    .await;
    assert_eq!(*uplink.renewals.borrow(), 0);
    uplink.stop().await.unwrap();

    // A new connection is refused at the handshake, with a clear error.
    let err = RawClient::as_agent(collector.local_addr(), &state)
        .await
        .err()
        .expect("expired certificate refused");
    assert!(matches!(err, AgentError::CertificateExpired(_)), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    // The uplink keeps trying (a clock fix on either side would let it back in)
    // but delivers nothing.
    let uplink = Uplink::spawn(state.clone(), spool.clone(), fast_uplink());
    spool.append(records("refused", 5)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(*uplink.status.borrow(), LinkStatus::Disconnected);
    assert_eq!(spool.acked(), 2);
    uplink.stop().await.unwrap();
    assert_stored_exactly(collector.store().as_ref(), &state, &[1, 2]);
    assert_eq!(spool.pending(), 1, "the refused batch waits in the spool");
    collector.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_spool_file_is_quarantined_and_the_rest_delivered_with_a_visible_gap() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let spool_dir = dir.path().join("spool");
    {
        let spool = open_spool(&spool_dir, &state);
        for i in 0..10 {
            spool.append(records(&format!("c{i}"), 7)).unwrap();
        }
    }
    // Bit rot in batch 4 (a torn write is caught the same way).
    let victim = spool_dir.join("00000000000000000004.frame");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&victim, bytes).unwrap();

    let spool = open_spool(&spool_dir, &state);
    assert!(
        spool_dir
            .join("corrupt")
            .join("00000000000000000004.frame")
            .exists()
    );
    let uplink = Uplink::spawn(state.clone(), spool.clone(), fast_uplink());
    wait_for("the rest acked", Duration::from_secs(30), || {
        spool.acked() == 10
    })
    .await;
    uplink.stop().await.unwrap();
    let store = collector.store();
    assert_stored_exactly(store.as_ref(), &state, &[1, 2, 3, 5, 6, 7, 8, 9, 10]);
    // The gap is visible to operators: `agent list` shows one batch fewer
    // than the last sequence.
    let agents = collector.admin().list_agents(None).unwrap();
    let d = agents[0].delivery;
    assert_eq!(d.last_sequence - d.batches, 1);
    collector.shutdown().await;
}

async fn admin_token(p: &CollectorProcess, tenant: &str) -> CreatedToken {
    let v = p
        .admin(&AdminRequest::CreateToken {
            tenant: TenantId::new(tenant).unwrap(),
            ttl_secs: None,
        })
        .await
        .expect("collector answers");
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigkill_while_another_agent_enrols() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("collector");
    let addr: SocketAddr = ([127, 0, 0, 1], free_udp_port()).into();
    let proc = CollectorProcess::start(&cdir, addr).await;

    let token = admin_token(&proc, "acme").await;
    let streamer = enroll_with(addr, &token, &dir.path().join("streamer"))
        .await
        .unwrap();
    let spool = open_spool(&dir.path().join("spool"), &streamer);
    let uplink = Uplink::spawn(streamer.clone(), spool.clone(), fast_uplink());
    const BATCHES: u64 = 150;
    let producer = {
        let spool = spool.clone();
        tokio::spawn(async move {
            for i in 0..BATCHES {
                let s = spool.clone();
                tokio::task::spawn_blocking(move || s.append(records(&format!("s{i}"), 20)))
                    .await
                    .unwrap()
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Agents enrolling, two at a time; the collector is killed as soon as the
    // first of them has its certificate, so the next ones are mid-enrolment.
    const ENROLLING: usize = 24;
    let mut tokens = Vec::new();
    for _ in 0..ENROLLING {
        tokens.push(admin_token(&proc, "globex").await);
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(2));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut enrolments = Vec::new();
    for (i, t) in tokens.iter().cloned().enumerate() {
        let (sem, d, done) = (
            sem.clone(),
            dir.path().join(format!("e{i}")),
            done_tx.clone(),
        );
        enrolments.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            let r = enroll_with(addr, &t, &d).await;
            let _ = done.send(());
            r
        }));
    }
    done_rx.recv().await.unwrap();
    proc.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let proc = CollectorProcess::start(&cdir, addr).await;

    let mut enrolled = Vec::new();
    let mut failed = Vec::new();
    for (i, t) in enrolments.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(state) => enrolled.push(state),
            Err(e) => {
                // The only acceptable failures say the connection broke.
                assert!(
                    matches!(e, AgentError::Connection(_) | AgentError::Timeout(_)),
                    "enrolment {i} failed unclearly: {e}"
                );
                failed.push(i);
            }
        }
    }
    // Every agent that received a certificate is known after the restart.
    for st in &enrolled {
        let (_, first) = RawClient::as_agent(addr, st).await.unwrap();
        assert!(matches!(first, Message::Welcome(_)), "{first:?}");
    }
    // An interrupted enrolment is retried with its token: it either works or
    // the token was consumed just before the kill — then a clear refusal.
    let mut retried_ok = 0;
    for i in &failed {
        let d = dir.path().join(format!("e{i}-retry"));
        match enroll_with(addr, &tokens[*i], &d).await {
            Ok(st) => {
                let (_, first) = RawClient::as_agent(addr, &st).await.unwrap();
                assert!(matches!(first, Message::Welcome(_)));
                retried_ok += 1;
            }
            Err(AgentError::Refused {
                code: ErrorCode::InvalidToken,
                ..
            }) => {}
            Err(e) => panic!("retry of enrolment {i}: {e}"),
        }
    }
    eprintln!(
        "{} enrolled across the kill, {} interrupted ({} re-enrolled with the same token)",
        enrolled.len(),
        failed.len(),
        retried_ok
    );
    assert!(
        !enrolled.is_empty(),
        "some enrolments succeed around the kill"
    );

    producer.await.unwrap();
    wait_for("streamer drained", Duration::from_secs(60), || {
        spool.acked() == BATCHES
    })
    .await;
    uplink.stop().await.unwrap();
    proc.kill();
    let store = collector::store::SledStore::open(&cdir.join("db")).unwrap();
    let expected: Vec<u64> = (1..=BATCHES).collect();
    assert_stored_exactly(&store, &streamer, &expected);
    let mut seen = BTreeSet::new();
    for b in store
        .batches(&streamer.meta.tenant, &streamer.meta.agent, 0)
        .unwrap()
    {
        let body = SignedBatch {
            body: b.body,
            signature: b.signature,
        }
        .decode_unverified()
        .unwrap();
        for r in body.records {
            let Observation::Port(p) = r.observation else {
                panic!("unexpected observation")
            };
            assert!(seen.insert(p.banner.unwrap()), "duplicate record");
        }
    }
    assert_eq!(seen.len() as u64, BATCHES * 20);
    // Enrolled agents are durable: each appears once in the restarted store.
    for st in &enrolled {
        assert!(store.agent(&st.meta.agent).unwrap().is_some());
    }
}
