//! Agent ↔ collector over mutual-TLS QUIC on loopback: who is accepted, who is
//! refused, and that batches are stored once.

use std::sync::Arc;
use std::time::Duration;

use agent::{AgentError, Spool, Uplink, UplinkConfig};
use e2e::{RawClient, enroll, init, records, start_collector, wait_for};
use protocol::{
    AgentId, BatchBody, ErrorCode, Message, SignedBatch, SigningKey, TenantId, sign_batch,
};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};

fn fast_uplink() -> UplinkConfig {
    UplinkConfig {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        ..UplinkConfig::default()
    }
}

fn batch(state: &agent::AgentState, key: &SigningKey, seq: u64, n: usize) -> SignedBatch {
    sign_batch(
        key,
        &BatchBody {
            tenant: state.meta.tenant.clone(),
            agent: state.meta.agent.clone(),
            sequence: seq,
            created_ms: 1,
            records: records(&format!("b{seq}"), n),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn good_agent_is_accepted_and_its_batches_stored() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    assert_eq!(state.meta.tenant.as_str(), "acme");
    let spool = Arc::new(
        Spool::open(
            &dir.path().join("spool"),
            state.identity(),
            state.signing_key.clone(),
        )
        .unwrap(),
    );
    for i in 0..5 {
        spool.append(records(&format!("batch{i}"), 100)).unwrap();
    }
    let uplink = Uplink::spawn(state.clone(), spool.clone(), fast_uplink());
    wait_for("all batches acked", Duration::from_secs(30), || {
        spool.acked() == 5
    })
    .await;
    // More results while connected flow too.
    spool.append(records("late", 10)).unwrap();
    wait_for("late batch acked", Duration::from_secs(30), || {
        spool.acked() == 6
    })
    .await;
    uplink.stop().await.unwrap();

    let store = collector.store();
    let d = store
        .delivery(&state.meta.tenant, &state.meta.agent)
        .unwrap();
    assert_eq!((d.last_sequence, d.batches, d.records), (6, 6, 510));
    let stored = store
        .batches(&state.meta.tenant, &state.meta.agent, 0)
        .unwrap();
    let key = state.signing_key.verifying_key();
    let body = SignedBatch {
        body: stored[0].body.clone(),
        signature: stored[0].signature,
    }
    .verify(&key)
    .unwrap();
    assert_eq!(body.records, records("batch0", 100));
    // Acked batches are gone from the spool.
    assert_eq!(spool.pending(), 0);
    assert!(spool.read_frame(1).unwrap().is_none());
    collector.shutdown().await;
}

#[tokio::test]
async fn certificate_from_another_tenants_ca_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let acme = enroll(&collector, "acme", &dir.path().join("acme"))
        .await
        .unwrap();
    let globex = enroll(&collector, "globex", &dir.path().join("globex"))
        .await
        .unwrap();

    // A certificate signed by globex's CA that claims to be acme's agent.
    let globex_ca = collector
        .store()
        .tenant_ca(&TenantId::new("globex").unwrap())
        .unwrap()
        .unwrap();
    let ca_key = KeyPair::try_from(globex_ca.key_pkcs8.as_slice()).unwrap();
    let issuer = Issuer::from_ca_cert_der(&globex_ca.cert_der.clone().into(), ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(acme.identity().to_uri().try_into().unwrap())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let forged = params.signed_by(&key, &issuer).unwrap();
    let config = agent::tls::client_config(
        &acme.server_ca_der().unwrap(),
        Some((forged.der().to_vec(), key.serialize_der())),
    )
    .unwrap();
    let err = RawClient::connect(collector.local_addr(), config)
        .await
        .err()
        .expect("forged certificate must be refused");
    assert!(
        matches!(err, AgentError::CertificateRejected(_)),
        "unexpected: {err}"
    );

    // The same for a certificate from a CA the collector never made.
    let rogue_key = KeyPair::generate().unwrap();
    let mut rogue = CertificateParams::default();
    rogue.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let rogue_issuer = Issuer::new(rogue, rogue_key);
    let forged = params.signed_by(&key, &rogue_issuer).unwrap();
    let config = agent::tls::client_config(
        &acme.server_ca_der().unwrap(),
        Some((forged.der().to_vec(), key.serialize_der())),
    )
    .unwrap();
    assert!(matches!(
        RawClient::connect(collector.local_addr(), config).await,
        Err(AgentError::CertificateRejected(_))
    ));

    // Both genuine agents are accepted, each under its own tenant.
    for state in [&acme, &globex] {
        let (_, first) = RawClient::as_agent(collector.local_addr(), state)
            .await
            .unwrap();
        assert!(matches!(first, Message::Welcome(_)), "{first:?}");
    }
    assert!(
        collector
            .metrics()
            .handshakes_failed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    collector.shutdown().await;
}

#[tokio::test]
async fn connection_without_certificate_cannot_send_results() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let config = agent::tls::client_config(&state.server_ca_der().unwrap(), None).unwrap();
    let (mut client, first) = RawClient::connect(collector.local_addr(), config)
        .await
        .unwrap();
    assert!(matches!(first, Message::Welcome(_)));
    // A perfectly signed batch still needs the certificate to go with it.
    client
        .send(&Message::Batch(batch(&state, &state.signing_key, 1, 3)))
        .await
        .unwrap();
    match client.next_reply().await.unwrap() {
        Some(Message::Error(e)) => assert_eq!(e.code, ErrorCode::Unauthenticated),
        other => panic!("expected refusal, got {other:?}"),
    }
    let d = collector
        .store()
        .delivery(&state.meta.tenant, &state.meta.agent)
        .unwrap();
    assert_eq!(d.batches, 0);
    collector.shutdown().await;
}

#[tokio::test]
async fn forged_signature_and_foreign_identity_are_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let store = collector.store();

    let (mut client, _) = RawClient::as_agent(collector.local_addr(), &state)
        .await
        .unwrap();
    let forger = SigningKey::from_bytes(&[42; 32]);
    client
        .send(&Message::Batch(batch(&state, &forger, 1, 3)))
        .await
        .unwrap();
    match client.next_reply().await.unwrap() {
        Some(Message::Error(e)) => assert_eq!(e.code, ErrorCode::BadSignature),
        other => panic!("expected refusal, got {other:?}"),
    }

    // Tampering with a correctly signed body breaks the signature too.
    let (mut client, _) = RawClient::as_agent(collector.local_addr(), &state)
        .await
        .unwrap();
    let mut tampered = batch(&state, &state.signing_key, 1, 3);
    let n = tampered.body.len();
    tampered.body[n - 1] ^= 1;
    client.send(&Message::Batch(tampered)).await.unwrap();
    match client.next_reply().await.unwrap() {
        Some(Message::Error(e)) => assert_eq!(e.code, ErrorCode::BadSignature),
        other => panic!("expected refusal, got {other:?}"),
    }

    // Our own key, but claiming another agent of the tenant.
    let (mut client, _) = RawClient::as_agent(collector.local_addr(), &state)
        .await
        .unwrap();
    let mut other = state.clone();
    other.meta.agent = AgentId::new("ag-someone-else").unwrap();
    client
        .send(&Message::Batch(batch(&other, &state.signing_key, 1, 3)))
        .await
        .unwrap();
    match client.next_reply().await.unwrap() {
        Some(Message::Error(e)) => assert_eq!(e.code, ErrorCode::IdentityMismatch),
        other => panic!("expected refusal, got {other:?}"),
    }
    let d = store
        .delivery(&state.meta.tenant, &state.meta.agent)
        .unwrap();
    assert_eq!(d.batches, 0, "nothing refused may be stored");
    assert_eq!(
        collector
            .metrics()
            .batches_rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    collector.shutdown().await;
}

#[tokio::test]
async fn replayed_batches_are_acknowledged_but_stored_once() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let b1 = batch(&state, &state.signing_key, 1, 4);
    let b2 = batch(&state, &state.signing_key, 2, 4);

    let (mut client, _) = RawClient::as_agent(collector.local_addr(), &state)
        .await
        .unwrap();
    for b in [&b1, &b2, &b1] {
        client.send(&Message::Batch(b.clone())).await.unwrap();
    }
    let mut highest = 0;
    while highest < 2 {
        match client.next_reply().await.unwrap() {
            Some(Message::Ack(a)) => highest = a.sequence,
            other => panic!("expected ack, got {other:?}"),
        }
    }
    drop(client);
    // A replay on a new connection (an attacker who captured the frame, or an
    // agent that lost an ack) is acknowledged and dropped.
    let (mut client, first) = RawClient::as_agent(collector.local_addr(), &state)
        .await
        .unwrap();
    match first {
        Message::Welcome(w) => assert_eq!(w.last_acked, 2),
        other => panic!("{other:?}"),
    }
    client.send(&Message::Batch(b2.clone())).await.unwrap();
    match client.next_reply().await.unwrap() {
        Some(Message::Ack(a)) => assert_eq!(a.sequence, 2),
        other => panic!("expected ack, got {other:?}"),
    }
    let store = collector.store();
    let d = store
        .delivery(&state.meta.tenant, &state.meta.agent)
        .unwrap();
    assert_eq!((d.batches, d.records), (2, 8));
    assert_eq!(
        store
            .batches(&state.meta.tenant, &state.meta.agent, 0)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        collector
            .metrics()
            .batches_duplicate
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    collector.shutdown().await;
}

#[tokio::test]
async fn revoked_agent_is_disconnected_and_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let state = enroll(&collector, "acme", &dir.path().join("a"))
        .await
        .unwrap();
    let spool = Arc::new(
        Spool::open(
            &dir.path().join("spool"),
            state.identity(),
            state.signing_key.clone(),
        )
        .unwrap(),
    );
    let uplink = Uplink::spawn(state.clone(), spool.clone(), fast_uplink());
    let mut status = uplink.status.clone();
    status
        .wait_for(|s| *s == agent::LinkStatus::Connected)
        .await
        .unwrap();
    collector.admin().revoke_agent(&state.meta.agent).unwrap();
    // The live connection is cut and the reconnect is refused at the handshake:
    // the uplink gives up with a clear error instead of retrying forever.
    let result = tokio::time::timeout(Duration::from_secs(20), uplink.join())
        .await
        .expect("uplink stops after revocation");
    assert!(matches!(result, Err(AgentError::Revoked)), "{result:?}");
    let err = RawClient::as_agent(collector.local_addr(), &state)
        .await
        .err()
        .expect("revoked agent refused");
    assert!(matches!(err, AgentError::Revoked), "{err}");
    collector.shutdown().await;
}

#[tokio::test]
async fn tokens_are_single_use_and_pin_the_collector() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let token = collector
        .admin()
        .create_token(&TenantId::new("acme").unwrap(), None)
        .unwrap();
    // Wrong fingerprint: the agent refuses the collector before sending the token.
    let mut wrong = token.clone();
    wrong.ca_fingerprint = "00".repeat(32);
    let err = e2e::enroll_with(collector.local_addr(), &wrong, &dir.path().join("x"))
        .await
        .err()
        .expect("wrong pin refused");
    assert!(matches!(err, AgentError::ServerUntrusted(_)), "{err}");
    e2e::enroll_with(collector.local_addr(), &token, &dir.path().join("a1"))
        .await
        .unwrap();
    let err = e2e::enroll_with(collector.local_addr(), &token, &dir.path().join("a2"))
        .await
        .err()
        .expect("second use refused");
    assert!(
        matches!(
            err,
            AgentError::Refused {
                code: ErrorCode::InvalidToken,
                ..
            }
        ),
        "{err}"
    );
    let expired = collector
        .admin()
        .create_token(
            &TenantId::new("acme").unwrap(),
            Some(Duration::from_millis(1)),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        e2e::enroll_with(collector.local_addr(), &expired, &dir.path().join("a3"))
            .await
            .is_err()
    );
    collector.shutdown().await;
}
