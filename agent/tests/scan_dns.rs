//! DNS/mail check and scope enforcement against an in-process authoritative
//! server on loopback. The system resolver is never involved.

mod scan_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent::scan::{ScanError, ScanOptions, ScopeError, dns, run_job};
use protocol::{CheckKind, JobSpec, Observation, PortRange, Scope};
use scan_support::dns_server::*;
use tokio::net::TcpListener;

fn zones() -> Vec<Zone> {
    vec![
        Zone {
            apex: name("good.test."),
            signed: true,
            records: vec![
                soa("good.test."),
                txt("good.test.", &["v=spf1 mx -all"]),
                txt("good.test.", &["google-site-verification=abc"]),
                txt(
                    "_dmarc.good.test.",
                    &["v=DMARC1; p=reject; ", "rua=mailto:d@good.test"],
                ),
                caa_issue("good.test.", "letsencrypt.org"),
                mx("good.test.", 20, "backup.good.test."),
                mx("good.test.", 10, "mail.good.test."),
                a("www.good.test.", [127, 0, 0, 1]),
            ],
        },
        Zone {
            apex: name("weak.test."),
            signed: false,
            records: vec![
                soa("weak.test."),
                txt(
                    "weak.test.",
                    &["v=spf1 include:a.weak.test include:b.weak.test a mx +all"],
                ),
                txt(
                    "a.weak.test.",
                    &["v=spf1 include:c.weak.test a mx ptr ~all"],
                ),
                txt(
                    "b.weak.test.",
                    &["v=spf1 a mx exists:x.weak.test include:c.weak.test ?all"],
                ),
                txt("c.weak.test.", &["v=spf1 a mx ip4:192.0.2.0/24 -all"]),
                txt("_dmarc.weak.test.", &["v=DMARC1; p=none"]),
            ],
        },
        Zone {
            apex: name("twospf.test."),
            signed: false,
            records: vec![
                soa("twospf.test."),
                txt("twospf.test.", &["v=spf1 -all"]),
                txt("twospf.test.", &["v=spf1 mx ~all"]),
            ],
        },
        Zone {
            apex: name("scope.test."),
            signed: false,
            records: vec![
                soa("scope.test."),
                a("in.scope.test.", [127, 0, 0, 1]),
                // TEST-NET-1: must be refused by scope before any packet is sent to it.
                a("out.scope.test.", [192, 0, 2, 1]),
            ],
        },
    ]
}

const T: Duration = Duration::from_secs(3);

#[tokio::test]
async fn well_configured_signed_domain() {
    let ns = serve(zones()).await;
    let obs = dns::check("good.test", ns, T).await.expect("check");
    assert_eq!(obs.domain, "good.test");
    assert_eq!(obs.spf_count, 1);
    let spf = obs.spf.expect("spf");
    assert_eq!(spf.raw, "v=spf1 mx -all");
    assert_eq!(spf.all_qualifier.as_deref(), Some("-"));
    assert_eq!(spf.dns_lookups, 1);
    let dmarc = obs.dmarc.expect("dmarc");
    assert_eq!(dmarc.policy.as_deref(), Some("reject"));
    assert_eq!(dmarc.pct, 100);
    assert!(dmarc.has_rua);
    assert_eq!(obs.caa, vec!["0 issue letsencrypt.org".to_string()]);
    assert_eq!(obs.mx, vec!["10 mail.good.test", "20 backup.good.test"]);
    assert!(obs.dnssec_signed);
}

#[tokio::test]
async fn subdomain_inherits_caa_and_signing() {
    let ns = serve(zones()).await;
    let obs = dns::check("www.good.test", ns, T).await.expect("check");
    assert_eq!(obs.caa, vec!["0 issue letsencrypt.org".to_string()]);
    assert!(obs.spf.is_none());
    assert_eq!(obs.spf_count, 0);
    assert!(obs.dmarc.is_none());
    assert!(obs.mx.is_empty());
    // NODATA for the SOA of a non-apex name carries the signed SOA in the authority section.
    assert!(obs.dnssec_signed);
}

#[tokio::test]
async fn weak_domain_exceeds_spf_lookup_limit() {
    let ns = serve(zones()).await;
    let obs = dns::check("weak.test", ns, T).await.expect("check");
    let spf = obs.spf.expect("spf");
    assert_eq!(spf.all_qualifier.as_deref(), Some("+"));
    assert!(
        spf.dns_lookups > dns::SPF_LOOKUP_LIMIT,
        "{}",
        spf.dns_lookups
    );
    assert_eq!(obs.dmarc.expect("dmarc").policy.as_deref(), Some("none"));
    assert!(obs.caa.is_empty());
    assert!(!obs.dnssec_signed);
}

#[tokio::test]
async fn two_spf_records_are_unusable() {
    let ns = serve(zones()).await;
    let obs = dns::check("twospf.test", ns, T).await.expect("check");
    assert_eq!(obs.spf_count, 2);
    assert!(obs.spf.is_none());
}

#[tokio::test]
async fn dns_job_uses_configured_nameserver() {
    let ns = serve(zones()).await;
    let opts = ScanOptions {
        nameserver: Some(ns),
        ..ScanOptions::default()
    };
    let spec = JobSpec {
        job_id: "j-dns".into(),
        targets: vec!["good.test".into()],
        ports: vec![],
        checks: vec![CheckKind::Dns],
        every_secs: None,
    };
    let scope = Scope {
        cidrs: vec!["127.0.0.0/8".into()],
        hostnames: vec!["good.test".into()],
        ports: vec![],
    };
    // good.test has no address records: resolution fails, so the job is refused as unresolvable.
    let err = run_job(&spec, &scope, &opts).await;
    assert!(matches!(err, Err(ScanError::Resolve { .. })), "{err:?}");

    let spec = JobSpec {
        targets: vec!["www.good.test".into()],
        ..spec
    };
    let scope = Scope {
        hostnames: vec!["*.good.test".into()],
        ..scope
    };
    let records = run_job(&spec, &scope, &opts).await.expect("job");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].asset, "www.good.test");
    assert!(matches!(&records[0].observation, Observation::Dns(d) if d.dnssec_signed));
}

/// Listener counting its connections, to prove refused jobs send nothing.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

#[tokio::test]
async fn scope_is_enforced_before_and_after_resolution() {
    let ns = serve(zones()).await;
    let opts = ScanOptions {
        nameserver: Some(ns),
        banners: false,
        ..ScanOptions::default()
    };
    let (port, hits) = counting_listener().await;
    let scope = Scope {
        cidrs: vec!["127.0.0.0/8".into()],
        hostnames: vec!["*.scope.test".into()],
        ports: vec![PortRange {
            start: port,
            end: port,
        }],
    };
    let job = |targets: Vec<&str>| JobSpec {
        job_id: "j-scope".into(),
        targets: targets.into_iter().map(String::from).collect(),
        ports: vec![PortRange {
            start: port,
            end: port,
        }],
        checks: vec![CheckKind::Ports],
        every_secs: None,
    };

    // In scope by name and by address: scanned.
    let records = run_job(&job(vec!["in.scope.test"]), &scope, &opts)
        .await
        .expect("job");
    assert_eq!(records.len(), 1);
    assert!(
        matches!(&records[0].observation, Observation::Port(p) if p.port == port && p.ip == "127.0.0.1")
    );
    // The kernel completes the handshake before our accept task counts it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while hits.load(Ordering::SeqCst) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let after_first = hits.load(Ordering::SeqCst);
    assert!(after_first >= 1);

    // The name matches, but it resolves outside the CIDRs: refused, and the whole job with it.
    let err = run_job(&job(vec!["in.scope.test", "out.scope.test"]), &scope, &opts).await;
    match err {
        Err(ScanError::Scope {
            target,
            source: ScopeError::ResolvedOutOfScope { addresses, .. },
        }) => {
            assert_eq!(target, "out.scope.test");
            assert_eq!(
                addresses,
                vec!["192.0.2.1".parse::<std::net::IpAddr>().expect("ip")]
            );
        }
        other => panic!("expected ResolvedOutOfScope, got {other:?}"),
    }
    // Give a stray probe the same chance to be counted before concluding none came.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        after_first,
        "a refused job must not probe anything"
    );

    let refused = |r: Result<_, ScanError>| match r {
        Err(ScanError::Scope { source, .. }) => source,
        other => panic!("expected a scope refusal, got {other:?}"),
    };
    assert!(matches!(
        refused(run_job(&job(vec!["evil.test"]), &scope, &opts).await),
        ScopeError::HostnameOutOfScope(_)
    ));
    assert!(matches!(
        refused(
            run_job(
                &job(vec!["127.0.0.1"]),
                &Scope {
                    cidrs: vec!["10.0.0.0/8".into()],
                    ..scope.clone()
                },
                &opts
            )
            .await
        ),
        ScopeError::AddressOutOfScope(_)
    ));
    let mut wide = job(vec!["127.0.0.1"]);
    wide.ports = vec![PortRange {
        start: 1,
        end: 1024,
    }];
    assert!(matches!(
        refused(run_job(&wide, &scope, &opts).await),
        ScopeError::PortOutOfScope(_)
    ));
    assert!(matches!(
        refused(
            run_job(
                &job(vec![&format!("127.0.0.1:{}", port + 1)]),
                &scope,
                &opts
            )
            .await
        ),
        ScopeError::PortOutOfScope(_)
    ));
    // The default (empty) scope allows nothing: no port, no address.
    assert!(matches!(
        refused(run_job(&job(vec!["127.0.0.1"]), &Scope::default(), &opts).await),
        ScopeError::PortOutOfScope(_)
    ));
    let ports_only = Scope {
        ports: scope.ports.clone(),
        ..Scope::default()
    };
    assert!(matches!(
        refused(run_job(&job(vec!["127.0.0.1"]), &ports_only, &opts).await),
        ScopeError::AddressOutOfScope(_)
    ));
    assert!(matches!(
        refused(run_job(&job(vec!["in.scope.test"]), &ports_only, &opts).await),
        ScopeError::HostnameOutOfScope(_)
    ));
    assert_eq!(hits.load(Ordering::SeqCst), after_first);
}
