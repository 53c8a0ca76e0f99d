//! The shipped rule set: it loads, it is complete, and each rule fires exactly
//! when it should on crafted observations.

use std::collections::BTreeSet;

use protocol::{
    CertificateInfo, DmarcRecord, DnsObservation, HttpObservation, Observation, PortObservation,
    PortState, Record, SpfRecord, TlsObservation, TlsVersion, WeakCipher, WeakCipherClass,
};
use rules::{Kind, RuleSet, Severity};

const DAY_MS: i64 = 86_400_000;

fn record(observation: Observation) -> Record {
    Record {
        asset: "example.com".into(),
        job_id: "job-1".into(),
        observed_ms: 1_750_000_000_000,
        observation,
    }
}

fn port() -> PortObservation {
    PortObservation {
        ip: "192.0.2.10".into(),
        port: 443,
        state: PortState::Open,
        service: Some("https".into()),
        product: Some("nginx".into()),
        banner: None,
        tls: true,
    }
}

fn cert() -> CertificateInfo {
    let not_before = 1_745_000_000_000;
    CertificateInfo {
        subject: "CN=www.example.com".into(),
        issuer: "CN=R11, O=Let's Encrypt, C=US".into(),
        sans: vec!["www.example.com".into(), "example.com".into()],
        not_before_ms: not_before,
        not_after_ms: not_before + 90 * DAY_MS,
        days_left: 60,
        key_type: "rsa".into(),
        key_bits: 2048,
        signature_algorithm: "sha256WithRSAEncryption".into(),
        self_signed: false,
        fingerprint_sha256: "ab".repeat(32),
        serial: "03a1".into(),
    }
}

fn tls() -> TlsObservation {
    TlsObservation {
        ip: "192.0.2.10".into(),
        port: 443,
        server_name: "www.example.com".into(),
        certificate: Some(cert()),
        chain_length: 2,
        chain_valid: true,
        validation_error: None,
        name_matches: true,
        protocols: vec![TlsVersion::Tls12, TlsVersion::Tls13],
        weak_ciphers: vec![],
    }
}

fn http() -> HttpObservation {
    HttpObservation {
        url: "https://www.example.com/".into(),
        status: 200,
        hsts: Some("max-age=63072000; includeSubDomains".into()),
        hsts_max_age: Some(63_072_000),
        hsts_include_subdomains: true,
        csp: Some("default-src 'self'; frame-ancestors 'none'".into()),
        x_frame_options: None,
        x_content_type_options: Some("nosniff".into()),
        referrer_policy: Some("strict-origin-when-cross-origin".into()),
        permissions_policy: Some("camera=(), microphone=()".into()),
        server: Some("nginx".into()),
        x_powered_by: None,
        redirects_to_https: None,
    }
}

fn dns() -> DnsObservation {
    DnsObservation {
        domain: "example.com".into(),
        spf: Some(SpfRecord {
            raw: "v=spf1 include:_spf.example.net -all".into(),
            all_qualifier: Some("-".into()),
            dns_lookups: 2,
        }),
        spf_count: 1,
        dmarc: Some(DmarcRecord {
            raw: "v=DMARC1; p=reject; rua=mailto:dmarc@example.com".into(),
            policy: Some("reject".into()),
            pct: 100,
            has_rua: true,
        }),
        caa: vec!["0 issue \"letsencrypt.org\"".into()],
        mx: vec!["10 mx.example.com.".into()],
        dnssec_signed: true,
    }
}

fn weak(name: &str, classes: &[WeakCipherClass]) -> WeakCipher {
    WeakCipher {
        version: TlsVersion::Tls12,
        name: name.into(),
        code: 0,
        classes: classes.to_vec(),
    }
}

fn ids(set: &RuleSet, obs: Observation) -> BTreeSet<String> {
    set.evaluate(&record(obs))
        .into_iter()
        .map(|f| f.rule_id)
        .collect()
}

/// (case name, observation, exact set of rule ids expected to fire)
#[allow(clippy::vec_init_then_push)] // one push per case keeps each case readable
fn cases() -> Vec<(&'static str, Observation, Vec<&'static str>)> {
    use Observation as O;
    let mut c: Vec<(&'static str, Observation, Vec<&'static str>)> = Vec::new();

    // --- ports ---
    c.push(("clean https port", O::Port(port()), vec![]));
    c.push((
        "closed telnet port",
        O::Port(PortObservation {
            port: 23,
            state: PortState::Closed,
            service: None,
            product: None,
            tls: false,
            ..port()
        }),
        vec![],
    ));
    c.push((
        "open telnet",
        O::Port(PortObservation {
            port: 23,
            service: Some("telnet".into()),
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.telnet.exposed"],
    ));
    c.push((
        "telnet on odd port by service name",
        O::Port(PortObservation {
            port: 2323,
            service: Some("telnet".into()),
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.telnet.exposed"],
    ));
    c.push((
        "plain ftp with version",
        O::Port(PortObservation {
            port: 21,
            service: Some("ftp".into()),
            product: Some("vsftpd 3.0.3".into()),
            tls: false,
            ..port()
        }),
        vec!["port.ftp.cleartext", "port.banner.version-disclosure"],
    ));
    c.push((
        "implicit-TLS ftp",
        O::Port(PortObservation {
            port: 21,
            service: Some("ftp".into()),
            product: None,
            tls: true,
            ..port()
        }),
        vec![],
    ));
    c.push((
        "rdp",
        O::Port(PortObservation {
            port: 3389,
            service: Some("rdp".into()),
            product: None,
            tls: true,
            ..port()
        }),
        vec!["port.rdp.exposed"],
    ));
    c.push((
        "filtered rdp",
        O::Port(PortObservation {
            port: 3389,
            state: PortState::Filtered,
            service: None,
            product: None,
            tls: false,
            ..port()
        }),
        vec![],
    ));
    c.push((
        "vnc",
        O::Port(PortObservation {
            port: 5900,
            service: None,
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.vnc.exposed"],
    ));
    c.push((
        "vnc greeting is a protocol version, not a product version",
        O::Port(PortObservation {
            port: 5901,
            service: Some("vnc".into()),
            product: Some("RFB 003.008".into()),
            banner: Some("RFB 003.008".into()),
            tls: false,
            ..port()
        }),
        vec!["port.vnc.exposed"],
    ));
    c.push((
        "winrm http",
        O::Port(PortObservation {
            port: 5985,
            service: Some("http".into()),
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.winrm.cleartext"],
    ));
    c.push((
        "smb",
        O::Port(PortObservation {
            port: 445,
            service: Some("smb".into()),
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.smb.exposed"],
    ));
    c.push((
        "postgres",
        O::Port(PortObservation {
            port: 5432,
            service: None,
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.database.exposed"],
    ));
    c.push((
        "mongodb by service name",
        O::Port(PortObservation {
            port: 27019,
            service: Some("mongodb".into()),
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.database.exposed"],
    ));
    c.push((
        "redis",
        O::Port(PortObservation {
            port: 6379,
            service: Some("redis".into()),
            product: Some("Redis 7.2.4".into()),
            tls: false,
            ..port()
        }),
        vec!["port.cache.exposed", "port.banner.version-disclosure"],
    ));
    c.push((
        "docker api",
        O::Port(PortObservation {
            port: 2375,
            service: None,
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.docker-api.exposed"],
    ));
    c.push((
        "imap plaintext",
        O::Port(PortObservation {
            port: 143,
            service: Some("imap".into()),
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.mail.cleartext"],
    ));
    c.push((
        "imaps",
        O::Port(PortObservation {
            port: 993,
            service: Some("imap".into()),
            product: None,
            tls: true,
            ..port()
        }),
        vec![],
    ));
    c.push((
        "ldap",
        O::Port(PortObservation {
            port: 389,
            service: None,
            product: None,
            tls: false,
            ..port()
        }),
        vec!["port.ldap.cleartext"],
    ));
    c.push((
        "ssh v1 and old openssh",
        O::Port(PortObservation {
            port: 22,
            service: Some("ssh".into()),
            product: Some("OpenSSH_5.3".into()),
            banner: Some("SSH-1.99-OpenSSH_5.3".into()),
            tls: false,
            ..port()
        }),
        vec![
            "port.ssh.protocol-v1",
            "port.ssh.outdated-openssh",
            "port.banner.version-disclosure",
        ],
    ));
    c.push((
        "regresshion range",
        O::Port(PortObservation {
            port: 22,
            service: Some("ssh".into()),
            product: Some("OpenSSH_9.6p1".into()),
            banner: Some("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13".into()),
            tls: false,
            ..port()
        }),
        vec!["port.ssh.regresshion", "port.banner.version-disclosure"],
    ));
    c.push((
        "current openssh",
        O::Port(PortObservation {
            port: 22,
            service: Some("ssh".into()),
            product: Some("OpenSSH_9.9".into()),
            banner: Some("SSH-2.0-OpenSSH_9.9".into()),
            tls: false,
            ..port()
        }),
        vec!["port.banner.version-disclosure"],
    ));
    c.push((
        "ssh without product",
        O::Port(PortObservation {
            port: 22,
            service: Some("ssh".into()),
            product: None,
            banner: Some("SSH-2.0-dropbear".into()),
            tls: false,
            ..port()
        }),
        vec![],
    ));

    // --- tls ---
    c.push(("clean tls", O::Tls(tls()), vec![]));
    c.push((
        "no handshake",
        O::Tls(TlsObservation {
            certificate: None,
            chain_valid: false,
            name_matches: false,
            protocols: vec![],
            chain_length: 0,
            ..tls()
        }),
        vec![],
    ));
    let with_cert = |f: &dyn Fn(&mut CertificateInfo)| {
        let mut c = cert();
        f(&mut c);
        TlsObservation {
            certificate: Some(c),
            ..tls()
        }
    };
    c.push((
        "expired (chain also fails)",
        O::Tls(TlsObservation {
            chain_valid: false,
            validation_error: Some("certificate expired".into()),
            ..with_cert(&|c| c.days_left = -3)
        }),
        vec!["tls.cert.expired"],
    ));
    c.push((
        "expires in 0 days",
        O::Tls(with_cert(&|c| c.days_left = 0)),
        vec!["tls.cert.expiring-soon"],
    ));
    c.push((
        "expires in 13 days",
        O::Tls(with_cert(&|c| c.days_left = 13)),
        vec!["tls.cert.expiring-soon"],
    ));
    c.push((
        "expires in 14 days",
        O::Tls(with_cert(&|c| c.days_left = 14)),
        vec!["tls.cert.expiring"],
    ));
    c.push((
        "expires in 29 days",
        O::Tls(with_cert(&|c| c.days_left = 29)),
        vec!["tls.cert.expiring"],
    ));
    c.push((
        "expires in 30 days",
        O::Tls(with_cert(&|c| c.days_left = 30)),
        vec![],
    ));
    c.push((
        "two-year certificate",
        O::Tls(with_cert(&|c| {
            c.not_after_ms = c.not_before_ms + 730 * DAY_MS
        })),
        vec!["tls.cert.validity-too-long"],
    ));
    c.push((
        "398-day certificate",
        O::Tls(with_cert(&|c| {
            c.not_after_ms = c.not_before_ms + 398 * DAY_MS
        })),
        vec![],
    ));
    c.push((
        "self-signed",
        O::Tls(TlsObservation {
            chain_valid: false,
            validation_error: Some("self-signed certificate".into()),
            ..with_cert(&|c| {
                c.self_signed = true;
                c.issuer = c.subject.clone();
            })
        }),
        vec!["tls.cert.self-signed"],
    ));
    c.push((
        "name mismatch",
        O::Tls(TlsObservation {
            server_name: "mail.example.com".into(),
            name_matches: false,
            ..tls()
        }),
        vec!["tls.cert.name-mismatch"],
    ));
    c.push((
        "missing intermediate",
        O::Tls(TlsObservation {
            chain_valid: false,
            chain_length: 1,
            validation_error: Some("unknown issuer".into()),
            ..tls()
        }),
        vec!["tls.chain.invalid"],
    ));
    c.push((
        "rsa 1024",
        O::Tls(with_cert(&|c| c.key_bits = 1024)),
        vec!["tls.cert.weak-rsa-key"],
    ));
    c.push((
        "rsa 4096",
        O::Tls(with_cert(&|c| c.key_bits = 4096)),
        vec![],
    ));
    c.push((
        "ec 224",
        O::Tls(with_cert(&|c| {
            c.key_type = "ec".into();
            c.key_bits = 224;
            c.signature_algorithm = "ecdsa-with-SHA256".into();
        })),
        vec!["tls.cert.weak-ec-key"],
    ));
    c.push((
        "ec 256",
        O::Tls(with_cert(&|c| {
            c.key_type = "ec".into();
            c.key_bits = 256;
        })),
        vec![],
    ));
    c.push((
        "ed25519 (short key_bits is not weak)",
        O::Tls(with_cert(&|c| {
            c.key_type = "ed25519".into();
            c.key_bits = 255;
            c.signature_algorithm = "ED25519".into();
        })),
        vec![],
    ));
    c.push((
        "sha1 signature",
        O::Tls(with_cert(&|c| {
            c.signature_algorithm = "sha1WithRSAEncryption".into()
        })),
        vec!["tls.cert.sha1-signature"],
    ));
    c.push((
        "ecdsa sha1 signature",
        O::Tls(with_cert(&|c| {
            c.signature_algorithm = "ecdsa-with-SHA1".into()
        })),
        vec!["tls.cert.sha1-signature"],
    ));
    c.push((
        "md5 signature",
        O::Tls(with_cert(&|c| {
            c.signature_algorithm = "md5WithRSAEncryption".into()
        })),
        vec!["tls.cert.md5-signature"],
    ));
    c.push((
        "legacy only",
        O::Tls(TlsObservation {
            protocols: vec![TlsVersion::Ssl3, TlsVersion::Tls10, TlsVersion::Tls11],
            ..tls()
        }),
        vec![
            "tls.protocol.sslv3",
            "tls.protocol.tls10",
            "tls.protocol.tls11",
            "tls.protocol.no-modern",
            "tls.protocol.no-tls13",
        ],
    ));
    c.push((
        "tls 1.0 to 1.2",
        O::Tls(TlsObservation {
            protocols: vec![TlsVersion::Tls10, TlsVersion::Tls12],
            ..tls()
        }),
        vec!["tls.protocol.tls10", "tls.protocol.no-tls13"],
    ));
    c.push((
        "tls 1.3 only",
        O::Tls(TlsObservation {
            protocols: vec![TlsVersion::Tls13],
            ..tls()
        }),
        vec![],
    ));
    use WeakCipherClass as W;
    let ciphers = |v: Vec<WeakCipher>| {
        O::Tls(TlsObservation {
            weak_ciphers: v,
            ..tls()
        })
    };
    c.push((
        "null cipher",
        ciphers(vec![weak(
            "TLS_RSA_WITH_NULL_SHA256",
            &[W::Null, W::StaticRsa],
        )]),
        vec!["tls.cipher.null", "tls.cipher.static-rsa"],
    ));
    c.push((
        "anon cipher",
        ciphers(vec![weak(
            "TLS_DH_anon_WITH_AES_128_GCM_SHA256",
            &[W::Anonymous],
        )]),
        vec!["tls.cipher.anonymous"],
    ));
    c.push((
        "export cipher",
        ciphers(vec![weak(
            "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA",
            &[W::Export],
        )]),
        vec!["tls.cipher.export"],
    ));
    c.push((
        "rc4",
        ciphers(vec![weak("TLS_ECDHE_RSA_WITH_RC4_128_SHA", &[W::Rc4])]),
        vec!["tls.cipher.rc4"],
    ));
    c.push((
        "3des + static rsa + cbc",
        ciphers(vec![
            weak(
                "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
                &[W::TripleDes, W::StaticRsa, W::CbcSha1],
            ),
            weak("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", &[W::CbcSha1]),
        ]),
        vec![
            "tls.cipher.triple-des",
            "tls.cipher.static-rsa",
            "tls.cipher.cbc-sha1",
        ],
    ));

    // --- http ---
    c.push(("clean https page", O::Http(http()), vec![]));
    c.push((
        "bare https page",
        O::Http(HttpObservation {
            hsts: None,
            hsts_max_age: None,
            hsts_include_subdomains: false,
            csp: None,
            x_frame_options: None,
            x_content_type_options: None,
            referrer_policy: None,
            permissions_policy: None,
            server: Some("Apache/2.4.41 (Ubuntu)".into()),
            x_powered_by: Some("PHP/7.4.3".into()),
            ..http()
        }),
        vec![
            "http.hsts.missing",
            "http.csp.missing",
            "http.clickjacking.unprotected",
            "http.x-content-type-options.missing",
            "http.referrer-policy.missing",
            "http.permissions-policy.missing",
            "http.server.version-disclosure",
            "http.x-powered-by.disclosure",
        ],
    ));
    c.push((
        "https redirect response only lacks hsts",
        O::Http(HttpObservation {
            status: 301,
            hsts: None,
            hsts_max_age: None,
            hsts_include_subdomains: false,
            csp: None,
            x_content_type_options: None,
            referrer_policy: None,
            permissions_policy: None,
            ..http()
        }),
        vec!["http.hsts.missing"],
    ));
    c.push((
        "weak hsts",
        O::Http(HttpObservation {
            hsts: Some("max-age=300".into()),
            hsts_max_age: Some(300),
            hsts_include_subdomains: false,
            ..http()
        }),
        vec!["http.hsts.short-max-age", "http.hsts.no-include-subdomains"],
    ));
    c.push((
        "hsts exactly one year",
        O::Http(HttpObservation {
            hsts: Some("max-age=31536000; includeSubDomains".into()),
            hsts_max_age: Some(31_536_000),
            ..http()
        }),
        vec![],
    ));
    c.push((
        "plain http without redirect",
        O::Http(HttpObservation {
            url: "http://www.example.com/".into(),
            hsts: None,
            hsts_max_age: None,
            hsts_include_subdomains: false,
            redirects_to_https: Some(false),
            ..http()
        }),
        vec!["http.redirect.no-https"],
    ));
    c.push((
        "plain http redirecting",
        O::Http(HttpObservation {
            url: "http://www.example.com/".into(),
            status: 301,
            hsts: None,
            hsts_max_age: None,
            hsts_include_subdomains: false,
            csp: None,
            redirects_to_https: Some(true),
            ..http()
        }),
        vec![],
    ));
    c.push((
        "xfo instead of frame-ancestors",
        O::Http(HttpObservation {
            csp: Some("default-src 'self'".into()),
            x_frame_options: Some("DENY".into()),
            ..http()
        }),
        vec![],
    ));
    c.push((
        "unsafe-inline csp",
        O::Http(HttpObservation {
            csp: Some(
                "default-src 'self'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
                    .into(),
            ),
            ..http()
        }),
        vec!["http.csp.unsafe-inline"],
    ));
    c.push((
        "unsafe-inline with nonce is ignored by browsers",
        O::Http(HttpObservation {
            csp: Some("script-src 'nonce-r4nd0m' 'unsafe-inline'; frame-ancestors 'self'".into()),
            ..http()
        }),
        vec![],
    ));
    c.push((
        "wrong nosniff value",
        O::Http(HttpObservation {
            x_content_type_options: Some("sniff-away".into()),
            ..http()
        }),
        vec!["http.x-content-type-options.missing"],
    ));
    c.push((
        "unsafe-url referrer",
        O::Http(HttpObservation {
            referrer_policy: Some("unsafe-url".into()),
            ..http()
        }),
        vec!["http.referrer-policy.unsafe-url"],
    ));

    // --- dns ---
    c.push(("clean domain", O::Dns(dns()), vec![]));
    c.push((
        "nothing published",
        O::Dns(DnsObservation {
            spf: None,
            spf_count: 0,
            dmarc: None,
            caa: vec![],
            mx: vec![],
            dnssec_signed: false,
            ..dns()
        }),
        vec![
            "dns.spf.missing",
            "dns.dmarc.missing",
            "dns.caa.missing",
            "dns.mx.missing",
            "dns.dnssec.unsigned",
        ],
    ));
    c.push((
        "two spf records",
        O::Dns(DnsObservation {
            spf: None,
            spf_count: 2,
            ..dns()
        }),
        vec!["dns.spf.multiple"],
    ));
    let spf = |raw: &str, q: Option<&str>, lookups: u32| {
        O::Dns(DnsObservation {
            spf: Some(SpfRecord {
                raw: raw.into(),
                all_qualifier: q.map(Into::into),
                dns_lookups: lookups,
            }),
            ..dns()
        })
    };
    c.push((
        "+all",
        spf("v=spf1 +all", Some("+"), 0),
        vec!["dns.spf.pass-all"],
    ));
    c.push((
        "?all",
        spf("v=spf1 mx ?all", Some("?"), 1),
        vec!["dns.spf.neutral-all"],
    ));
    c.push((
        "~all",
        spf("v=spf1 mx ~all", Some("~"), 1),
        vec!["dns.spf.softfail-all"],
    ));
    c.push(("no all", spf("v=spf1 mx", None, 1), vec!["dns.spf.no-all"]));
    c.push((
        "redirect instead of all",
        spf("v=spf1 redirect=_spf.example.net", None, 1),
        vec![],
    ));
    c.push((
        "11 lookups",
        spf("v=spf1 include:a include:b -all", Some("-"), 11),
        vec!["dns.spf.too-many-lookups"],
    ));
    c.push((
        "10 lookups",
        spf("v=spf1 include:a include:b -all", Some("-"), 10),
        vec![],
    ));
    let dmarc = |raw: &str, p: Option<&str>, pct: u32, rua: bool| {
        O::Dns(DnsObservation {
            dmarc: Some(DmarcRecord {
                raw: raw.into(),
                policy: p.map(Into::into),
                pct,
                has_rua: rua,
            }),
            ..dns()
        })
    };
    c.push((
        "p=none",
        dmarc("v=DMARC1; p=none; rua=mailto:a@b", Some("none"), 100, true),
        vec!["dns.dmarc.policy-none"],
    ));
    c.push((
        "no p=",
        dmarc("v=DMARC1; rua=mailto:a@b", None, 100, true),
        vec!["dns.dmarc.invalid-policy"],
    ));
    c.push((
        "bad p=",
        dmarc("v=DMARC1; p=block", Some("block"), 100, false),
        vec!["dns.dmarc.invalid-policy", "dns.dmarc.no-rua"],
    ));
    c.push((
        "pct=50 quarantine",
        dmarc(
            "v=DMARC1; p=quarantine; pct=50; rua=mailto:a@b",
            Some("quarantine"),
            50,
            true,
        ),
        vec!["dns.dmarc.partial-pct"],
    ));
    c.push((
        "pct=50 with none is not partial enforcement",
        dmarc(
            "v=DMARC1; p=none; pct=50; rua=mailto:a@b",
            Some("none"),
            50,
            true,
        ),
        vec!["dns.dmarc.policy-none"],
    ));
    c
}

#[test]
fn builtin_set_loads_with_at_least_40_valid_rules() {
    let set = RuleSet::builtin().unwrap_or_else(|e| panic!("builtin rules: {e}"));
    assert!(set.rules().len() >= 40, "only {} rules", set.rules().len());
    for kind in Kind::ALL {
        assert!(
            set.rules_for(kind).count() >= 8,
            "few {} rules",
            kind.as_str()
        );
    }
    for rule in set.rules() {
        assert!(
            rule.id
                .starts_with(&format!("{}.", rule.applies_to.as_str())),
            "{} should be named after its kind",
            rule.id
        );
        assert!(
            !rule.title.is_empty() && !rule.description.is_empty(),
            "{}",
            rule.id
        );
        assert!(
            !rule.remediation.is_empty() && !rule.evidence.is_empty(),
            "{}",
            rule.id
        );
        assert!(
            rule.defined_at.file.starts_with("rules/data/"),
            "{}",
            rule.defined_at
        );
        // Every condition and template re-parses from its stored source.
        rules::parse_condition(&rule.condition).unwrap_or_else(|e| panic!("{}: {e}", rule.id));
        // The four frameworks are each either mapped or explained.
        for fw in ["nis2", "iso27001", "soc2", "cis"] {
            let mapped = rule.mappings.iter().any(|m| m.framework == fw);
            let explained = rule
                .unmapped
                .iter()
                .any(|(f, why)| f == fw && !why.is_empty());
            assert!(
                mapped || explained,
                "{} has no {fw} mapping and no reason",
                rule.id
            );
        }
        for m in &rule.mappings {
            assert!(
                !m.title.is_empty(),
                "{}: {} {}",
                rule.id,
                m.framework,
                m.control
            );
        }
    }
}

#[test]
fn every_rule_family_fires_exactly_on_crafted_observations() {
    let set = RuleSet::builtin().expect("builtin rules");
    let mut fired = BTreeSet::new();
    for (name, obs, expected) in cases() {
        let got = ids(&set, obs);
        let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "case {name:?}");
        fired.extend(got);
    }
    let never: Vec<&str> = set
        .rules()
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !fired.contains(*id))
        .collect();
    assert!(
        never.is_empty(),
        "rules without a positive test case: {never:?}"
    );
}

#[test]
fn findings_carry_rendered_location_evidence_and_mappings() {
    let set = RuleSet::builtin().expect("builtin rules");
    let rec = record(Observation::Port(PortObservation {
        port: 6379,
        service: Some("redis".into()),
        product: None,
        tls: false,
        ..port()
    }));
    let findings = set.evaluate(&rec);
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f.rule_id, "port.cache.exposed");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.asset, "example.com");
    assert_eq!(f.job_id, "job-1");
    assert_eq!(f.observed_ms, 1_750_000_000_000);
    assert_eq!(f.location, "192.0.2.10:6379");
    assert_eq!(
        f.evidence,
        "port 6379/tcp open; service=redis; product=-; banner=-"
    );
    let frameworks: BTreeSet<&str> = f.mappings.iter().map(|m| m.framework.as_str()).collect();
    assert_eq!(
        frameworks,
        ["cis", "iso27001", "nis2", "nis2_ir", "soc2"]
            .into_iter()
            .collect()
    );
    let iso = f
        .mappings
        .iter()
        .find(|m| m.control == "A.8.20")
        .expect("ISO A.8.20 mapping");
    assert_eq!(iso.title, "Networks security");

    let json = serde_json::to_string(f).expect("serializes");
    assert!(json.contains(r#""severity":"high""#), "{json}");
    let back: rules::Finding = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(&back, f);

    let tls_findings = set.evaluate(&record(Observation::Tls(TlsObservation {
        weak_ciphers: vec![
            weak(
                "TLS_RSA_WITH_RC4_128_SHA",
                &[WeakCipherClass::Rc4, WeakCipherClass::StaticRsa],
            ),
            weak("TLS_ECDHE_RSA_WITH_RC4_128_SHA", &[WeakCipherClass::Rc4]),
        ],
        ..tls()
    })));
    let rc4 = tls_findings
        .iter()
        .find(|f| f.rule_id == "tls.cipher.rc4")
        .expect("rc4 finding");
    assert_eq!(rc4.location, "192.0.2.10:443 (www.example.com)");
    assert_eq!(
        rc4.evidence,
        "suites=TLS_RSA_WITH_RC4_128_SHA, TLS_ECDHE_RSA_WITH_RC4_128_SHA"
    );
    let static_rsa = tls_findings
        .iter()
        .find(|f| f.rule_id == "tls.cipher.static-rsa")
        .expect("static rsa finding");
    assert_eq!(static_rsa.evidence, "suites=TLS_RSA_WITH_RC4_128_SHA");
}

#[test]
fn readme_documents_every_field_and_shipped_rule() {
    let readme = include_str!("../README.md");
    for f in rules::FIELDS {
        assert!(
            readme.contains(&format!("| `{}` |", f.path)),
            "README lacks field {}",
            f.path
        );
    }
    for r in RuleSet::builtin().expect("builtin").rules() {
        assert!(
            readme.contains(&format!("| `{}` |", r.id)),
            "README lacks rule {}",
            r.id
        );
    }
}
