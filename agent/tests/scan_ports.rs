//! Port scan and service identification against loopback servers.

mod scan_support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use agent::scan::{ConnectOptions, ScanOptions, ports, scan_ports};
use protocol::PortState;
use scan_support::*;

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn test_identity() -> Identity {
    let key = rcgen::KeyPair::generate().expect("keygen");
    let params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    Identity {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
    }
}

#[tokio::test]
async fn identifies_services_on_loopback() {
    init_crypto();
    let ssh = banner_server(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n").await;
    let http =
        http_server("HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nContent-Length: 0\r\n\r\n".into())
            .await;
    let redis = redis_server(false).await;
    let redis_auth = redis_server(true).await;
    let rdp = rdp_server().await;
    let smb = smb_server().await;
    let tls = tls_server(
        server_config(&test_identity(), rustls::DEFAULT_VERSIONS),
        "HTTP/1.1 200 OK\r\nServer: Caddy\r\nContent-Length: 0\r\n\r\n".into(),
    )
    .await;
    let closed = closed_port().await;

    let ports_list = vec![
        ssh.port(),
        http.port(),
        redis.port(),
        redis_auth.port(),
        rdp.port(),
        smb.port(),
        tls.port(),
        closed,
    ];
    let opts = ScanOptions {
        banner_timeout: Duration::from_millis(600),
        ..ScanOptions::default()
    };
    let obs = scan_ports(&[LOOPBACK], &ports_list, &opts).await;
    let find = |a: SocketAddr| {
        obs.iter()
            .find(|o| o.port == a.port())
            .unwrap_or_else(|| panic!("port {} not reported open: {obs:?}", a.port()))
    };
    assert!(
        obs.iter()
            .all(|o| o.state == PortState::Open && o.ip == "127.0.0.1")
    );
    assert!(
        obs.iter().all(|o| o.port != closed),
        "closed port reported: {obs:?}"
    );
    assert_eq!(obs.len(), 7, "{obs:?}");

    let o = find(ssh);
    assert_eq!(o.service.as_deref(), Some("ssh"));
    assert_eq!(o.product.as_deref(), Some("OpenSSH_9.6p1"));
    assert!(
        o.banner
            .as_deref()
            .is_some_and(|b| b.starts_with("SSH-2.0-OpenSSH_9.6p1"))
    );

    let o = find(http);
    assert_eq!(o.service.as_deref(), Some("http"));
    assert_eq!(o.product.as_deref(), Some("nginx/1.25.3"));
    assert!(!o.tls);

    let o = find(redis);
    assert_eq!(o.service.as_deref(), Some("redis"));
    assert_eq!(o.product.as_deref(), Some("Redis/7.2.4"));

    let o = find(redis_auth);
    assert_eq!(o.service.as_deref(), Some("redis"));
    assert_eq!(o.product, None);

    assert_eq!(find(rdp).service.as_deref(), Some("rdp"));
    let o = find(smb);
    assert_eq!(o.service.as_deref(), Some("smb"));
    assert_eq!(o.product.as_deref(), Some("SMB2+"));

    let o = find(tls);
    assert!(o.tls);
    assert_eq!(o.service.as_deref(), Some("https"));
    assert_eq!(o.product.as_deref(), Some("Caddy"));
}

#[tokio::test]
async fn full_range_scan_finds_every_listener() {
    let a = banner_server(b"hello\r\n").await;
    let b = http_server("HTTP/1.1 204 No Content\r\n\r\n".into()).await;
    let closed = closed_port().await;
    let all: Vec<u16> = (1..=u16::MAX).filter(|p| *p != RESERVED_PORT).collect();
    let started = Instant::now();
    let found = ports::connect_scan(&[LOOPBACK], &all, &ConnectOptions::default(), None)
        .await
        .expect("scan");
    let elapsed = started.elapsed();
    eprintln!("full loopback scan of {} ports took {elapsed:?}", all.len());
    let open: Vec<u16> = found
        .iter()
        .filter(|r| r.state == PortState::Open)
        .map(|r| r.addr.port())
        .collect();
    assert!(
        open.contains(&a.port()) && open.contains(&b.port()),
        "{open:?}"
    );
    assert!(!open.contains(&closed));
    assert!(found.iter().all(|r| r.addr.port() != RESERVED_PORT));
    // Loopback answers instantly: nothing should be filtered and the sweep must not crawl.
    assert!(
        found.iter().all(|r| r.state == PortState::Open),
        "{found:?}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "scan too slow: {elapsed:?}"
    );
}

#[tokio::test]
async fn rate_limit_is_honoured() {
    let ports_list: Vec<u16> = vec![closed_port().await; 1]
        .into_iter()
        .chain(std::iter::repeat_n(closed_port().await, 49))
        .collect();
    let opts = ConnectOptions {
        concurrency: 50,
        rate_per_sec: Some(100),
        connect_timeout: Duration::from_millis(500),
    };
    let started = Instant::now();
    let found = ports::connect_scan(&[LOOPBACK], &ports_list, &opts, None)
        .await
        .expect("scan");
    let elapsed = started.elapsed();
    assert!(found.is_empty());
    // 50 attempts at 100/s need at least ~490 ms even with 50 sockets allowed in flight.
    assert!(
        elapsed >= Duration::from_millis(450),
        "rate limit ignored: {elapsed:?}"
    );
}

#[tokio::test]
async fn ipv6_loopback_job_with_scope() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    };
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"SSH-2.0-dropbear_2022.83\r\n").await;
        }
    });
    let closed = closed_port().await;
    let spec = protocol::JobSpec {
        job_id: "j6".into(),
        targets: vec!["::1".into()],
        ports: vec![
            protocol::PortRange {
                start: port,
                end: port,
            },
            protocol::PortRange {
                start: closed,
                end: closed,
            },
        ],
        checks: vec![protocol::CheckKind::Ports],
        every_secs: None,
    };
    let scope = protocol::Scope {
        cidrs: vec!["::1/128".into()],
        hostnames: vec![],
        ports: spec.ports.clone(),
    };
    let opts = ScanOptions {
        banner_timeout: Duration::from_millis(500),
        ..ScanOptions::default()
    };
    let records = agent::scan::run_job(&spec, &scope, &opts)
        .await
        .expect("job");
    assert_eq!(records.len(), 1, "{records:?}");
    let protocol::Observation::Port(p) = &records[0].observation else {
        panic!("expected a port observation");
    };
    assert_eq!((p.ip.as_str(), p.port), ("::1", port));
    assert_eq!(p.product.as_deref(), Some("dropbear_2022.83"));
    // The IPv4 loopback is not in this scope.
    let v4 = protocol::JobSpec {
        targets: vec!["127.0.0.1".into()],
        ..spec
    };
    assert!(agent::scan::run_job(&v4, &scope, &opts).await.is_err());
}
