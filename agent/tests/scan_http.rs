//! HTTP security-header check against loopback servers with crafted headers.

mod scan_support;

use std::net::SocketAddr;
use std::time::Duration;

use agent::scan::{ScanOptions, http, run_job};
use protocol::{CheckKind, JobSpec, Observation, PortRange, Scope};
use scan_support::*;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn reads_every_security_header() {
    let addr = http_server(
        "HTTP/1.1 200 OK\r\n\
         Strict-Transport-Security: max-age=63072000; includeSubDomains; preload\r\n\
         Content-Security-Policy: default-src 'self'\r\n\
         X-Frame-Options: DENY\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\n\
         Permissions-Policy: geolocation=()\r\n\
         Server: Apache/2.4.41 (Ubuntu)\r\n\
         X-Powered-By: PHP/7.4.3\r\n\
         Content-Length: 0\r\n\r\n"
            .into(),
    )
    .await;
    let obs = http::check(addr, "localhost", false, T)
        .await
        .expect("check");
    assert_eq!(obs.url, format!("http://localhost:{}/", addr.port()));
    assert_eq!(obs.status, 200);
    assert_eq!(obs.hsts_max_age, Some(63072000));
    assert!(obs.hsts_include_subdomains);
    assert_eq!(obs.csp.as_deref(), Some("default-src 'self'"));
    assert_eq!(obs.x_frame_options.as_deref(), Some("DENY"));
    assert_eq!(obs.x_content_type_options.as_deref(), Some("nosniff"));
    assert_eq!(obs.referrer_policy.as_deref(), Some("no-referrer"));
    assert_eq!(obs.permissions_policy.as_deref(), Some("geolocation=()"));
    assert_eq!(obs.server.as_deref(), Some("Apache/2.4.41 (Ubuntu)"));
    assert_eq!(obs.x_powered_by.as_deref(), Some("PHP/7.4.3"));
    assert_eq!(obs.redirects_to_https, Some(false));
}

#[tokio::test]
async fn bare_server_has_no_headers() {
    let addr = http_server("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into()).await;
    let obs = http::check(addr, "127.0.0.1", false, T)
        .await
        .expect("check");
    assert_eq!(obs.status, 404);
    assert_eq!(obs.hsts, None);
    assert_eq!(obs.hsts_max_age, None);
    assert!(!obs.hsts_include_subdomains);
    assert_eq!(obs.csp, None);
    assert_eq!(obs.x_frame_options, None);
    assert_eq!(obs.server, None);
}

#[tokio::test]
async fn redirect_to_https_is_detected_and_not_followed() {
    let to_https = http_server(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: https://localhost/\r\nContent-Length: 0\r\n\r\n"
            .into(),
    )
    .await;
    let obs = http::check(to_https, "localhost", false, T)
        .await
        .expect("check");
    assert_eq!(obs.status, 301);
    assert_eq!(obs.redirects_to_https, Some(true));

    let to_http = http_server(
        "HTTP/1.1 302 Found\r\nLocation: http://localhost/login\r\nContent-Length: 0\r\n\r\n"
            .into(),
    )
    .await;
    let obs = http::check(to_http, "localhost", false, T)
        .await
        .expect("check");
    assert_eq!(obs.redirects_to_https, Some(false));
}

fn rcgen_identity() -> Identity {
    let key = rcgen::KeyPair::generate().expect("keygen");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    Identity {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
    }
}

#[tokio::test]
async fn https_job_detects_scheme_on_explicit_port() {
    init_crypto();
    let addr: SocketAddr = tls_server(
        server_config(&rcgen_identity(), rustls::DEFAULT_VERSIONS),
        "HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=300\r\nContent-Length: 0\r\n\r\n"
            .into(),
    )
    .await;
    let spec = JobSpec {
        job_id: "job-http".into(),
        targets: vec![format!("127.0.0.1:{}", addr.port())],
        ports: vec![],
        checks: vec![CheckKind::Http],
        every_secs: None,
    };
    let scope = Scope {
        cidrs: vec!["127.0.0.0/8".into()],
        hostnames: vec![],
        ports: vec![PortRange {
            start: addr.port(),
            end: addr.port(),
        }],
    };
    let records = run_job(&spec, &scope, &ScanOptions::default())
        .await
        .expect("job");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].job_id, "job-http");
    let Observation::Http(obs) = &records[0].observation else {
        panic!("expected an HTTP observation: {records:?}");
    };
    assert_eq!(obs.url, format!("https://127.0.0.1:{}/", addr.port()));
    assert_eq!(obs.hsts_max_age, Some(300));
    assert!(!obs.hsts_include_subdomains);
    assert_eq!(obs.redirects_to_https, None);
}

#[tokio::test]
async fn job_ports_without_port_check_probe_only_open_ports() {
    init_crypto();
    let tls = tls_server(
        server_config(&rcgen_identity(), rustls::DEFAULT_VERSIONS),
        "HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=600\r\nContent-Length: 0\r\n\r\n"
            .into(),
    )
    .await;
    let plain = http_server(
        "HTTP/1.1 301 Moved\r\nLocation: https://localhost/\r\nContent-Length: 0\r\n\r\n".into(),
    )
    .await;
    let closed = closed_port().await;
    let ranges: Vec<PortRange> = [tls.port(), plain.port(), closed]
        .iter()
        .map(|&p| PortRange { start: p, end: p })
        .collect();
    let spec = JobSpec {
        job_id: "job-mixed".into(),
        targets: vec!["127.0.0.1".into()],
        ports: ranges.clone(),
        checks: vec![CheckKind::Tls, CheckKind::Http],
        every_secs: None,
    };
    let scope = Scope {
        cidrs: vec!["127.0.0.1/32".into()],
        hostnames: vec![],
        ports: ranges,
    };
    let records = run_job(&spec, &scope, &ScanOptions::default())
        .await
        .expect("job");
    let tls_obs: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.observation {
            Observation::Tls(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tls_obs.len(), 1, "{records:?}");
    assert_eq!(tls_obs[0].port, tls.port());
    let mut http_obs: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.observation {
            Observation::Http(h) => Some(h),
            _ => None,
        })
        .collect();
    http_obs.sort_by_key(|h| h.url.clone());
    assert_eq!(http_obs.len(), 2, "{records:?}");
    assert_eq!(
        http_obs[0].url,
        format!("http://127.0.0.1:{}/", plain.port())
    );
    assert_eq!(http_obs[0].redirects_to_https, Some(true));
    assert_eq!(
        http_obs[1].url,
        format!("https://127.0.0.1:{}/", tls.port())
    );
    assert_eq!(http_obs[1].hsts_max_age, Some(600));
    assert!(
        records
            .iter()
            .all(|r| !matches!(&r.observation, Observation::Port(_)))
    );
}
