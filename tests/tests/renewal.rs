//! Certificates are short-lived and renewed by the agent over its existing
//! connection, well before they expire.

use std::sync::Arc;
use std::time::Duration;

use agent::{AgentState, LinkStatus, Spool, Uplink, UplinkConfig};
use collector::{Collector, CollectorConfig};
use e2e::{RawClient, enroll, init};
use protocol::Message;

#[tokio::test]
async fn agent_renews_its_certificate_and_reconnects_with_it() {
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
    let first = agent::cert::validity(&state.cert_der().unwrap()).unwrap();
    assert!(
        (first.not_after - first.not_before - 66).abs() <= 2,
        "1 minute lifetime plus 6 s of backdating"
    );

    let spool = Arc::new(
        Spool::open(
            &dir.path().join("spool"),
            state.identity(),
            state.signing_key.clone(),
        )
        .unwrap(),
    );
    // A fresh certificate has 60 of 66 s left (0.91); it enters the 0.8 margin
    // after about 7 s, and the renewed one is fresh again.
    let uplink = Uplink::spawn(
        state.clone(),
        spool.clone(),
        UplinkConfig {
            renew_fraction: 0.8,
            renew_check: Duration::from_millis(100),
            ..UplinkConfig::default()
        },
    );
    let mut renewals = uplink.renewals.clone();
    tokio::time::timeout(Duration::from_secs(20), renewals.wait_for(|n| *n >= 1))
        .await
        .expect("renewal within 20 s")
        .unwrap();
    let mut status = uplink.status.clone();
    status
        .wait_for(|s| *s == LinkStatus::Connected)
        .await
        .unwrap();
    // A renewed certificate is not renewed again straight away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*uplink.renewals.borrow(), 1);
    uplink.stop().await.unwrap();

    let renewed = AgentState::load(&dir.path().join("a")).unwrap();
    assert_ne!(renewed.tls, state.tls, "new key and certificate on disk");
    assert_ne!(renewed.key_der().unwrap(), state.key_der().unwrap());
    let second = agent::cert::validity(&renewed.cert_der().unwrap()).unwrap();
    assert!(second.not_after >= first.not_after);
    assert_eq!(
        agent::cert::identity(&renewed.cert_der().unwrap()).unwrap(),
        state.identity()
    );
    // The renewed identity is accepted on a fresh connection.
    let (_, first_reply) = RawClient::as_agent(collector.local_addr(), &renewed)
        .await
        .unwrap();
    assert!(
        matches!(first_reply, Message::Welcome(_)),
        "{first_reply:?}"
    );
    let record = collector.store().agent(&state.meta.agent).unwrap().unwrap();
    assert_eq!(record.cert_not_after_ms / 1000, second.not_after as u64);
    assert_eq!(
        collector
            .metrics()
            .renewals
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    collector.shutdown().await;
}
