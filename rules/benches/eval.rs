//! Throughput of rule evaluation: observation × rule evaluations per second on
//! one core, over a mix of observations shaped like a real scan against the
//! full builtin rule set. Run with `cargo bench -p rules`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use protocol::{
    CertificateInfo, DmarcRecord, DnsObservation, HttpObservation, Observation, PortObservation,
    PortState, Record, SpfRecord, TlsObservation, TlsVersion, WeakCipher, WeakCipherClass,
};
use rules::RuleSet;

/// Port, service, product and banner of an open service in the mix.
type Service = (
    u16,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

/// Small deterministic generator so every run measures the same mix.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn port(rng: &mut Lcg, host: usize) -> Observation {
    // Mostly closed/filtered ports with a realistic set of open services.
    let services: &[Service] = &[
        (
            22,
            Some("ssh"),
            Some("OpenSSH_9.6p1"),
            Some("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5"),
        ),
        (
            22,
            Some("ssh"),
            Some("OpenSSH_7.4"),
            Some("SSH-2.0-OpenSSH_7.4"),
        ),
        (80, Some("http"), Some("nginx/1.24.0"), None),
        (443, Some("tls"), None, None),
        (3389, Some("rdp"), None, None),
        (445, Some("smb"), None, None),
        (6379, Some("redis"), Some("Redis 7.2.4"), None),
        (5432, None, None, None),
        (
            25,
            Some("smtp"),
            Some("Postfix"),
            Some("220 mail.example.com ESMTP Postfix"),
        ),
        (8080, Some("http"), Some("Apache Tomcat/9.0.85"), None),
    ];
    let (p, service, product, banner) = *rng.pick(services);
    let state = if rng.chance(70) {
        *rng.pick(&[PortState::Closed, PortState::Filtered])
    } else {
        PortState::Open
    };
    Observation::Port(PortObservation {
        ip: format!("10.0.{}.{}", host / 250, host % 250),
        port: p,
        state,
        service: service.map(Into::into),
        product: product.map(Into::into),
        banner: banner.map(Into::into),
        tls: p == 443,
    })
}

fn tls(rng: &mut Lcg, host: usize) -> Observation {
    let protocols = rng
        .pick(&[
            vec![TlsVersion::Tls12, TlsVersion::Tls13],
            vec![TlsVersion::Tls12],
            vec![TlsVersion::Tls10, TlsVersion::Tls11, TlsVersion::Tls12],
        ])
        .clone();
    let mut weak = Vec::new();
    if rng.chance(30) {
        weak.push(WeakCipher {
            version: TlsVersion::Tls12,
            name: "TLS_RSA_WITH_AES_128_CBC_SHA".into(),
            code: 0x002f,
            classes: vec![WeakCipherClass::CbcSha1, WeakCipherClass::StaticRsa],
        });
    }
    if rng.chance(10) {
        weak.push(WeakCipher {
            version: TlsVersion::Tls12,
            name: "TLS_RSA_WITH_3DES_EDE_CBC_SHA".into(),
            code: 0x000a,
            classes: vec![WeakCipherClass::TripleDes, WeakCipherClass::StaticRsa],
        });
    }
    let days_left = *rng.pick(&[-2, 5, 20, 45, 70, 300]);
    Observation::Tls(TlsObservation {
        ip: format!("10.0.{}.{}", host / 250, host % 250),
        port: 443,
        server_name: format!("host{host}.example.com"),
        certificate: Some(CertificateInfo {
            subject: format!("CN=host{host}.example.com"),
            issuer: "CN=R11, O=Let's Encrypt, C=US".into(),
            sans: vec![format!("host{host}.example.com")],
            not_before_ms: 1_745_000_000_000,
            not_after_ms: 1_745_000_000_000 + 90 * 86_400_000,
            days_left,
            key_type: rng.pick(&["rsa", "ec"]).to_string(),
            key_bits: *rng.pick(&[2048, 256, 1024]),
            signature_algorithm: rng
                .pick(&[
                    "sha256WithRSAEncryption",
                    "ecdsa-with-SHA256",
                    "sha1WithRSAEncryption",
                ])
                .to_string(),
            self_signed: rng.chance(10),
            fingerprint_sha256: "ab".repeat(32),
            serial: "03a1".into(),
        }),
        chain_length: 2,
        chain_valid: rng.chance(85),
        validation_error: None,
        name_matches: rng.chance(90),
        protocols,
        weak_ciphers: weak,
    })
}

fn http(rng: &mut Lcg, host: usize) -> Observation {
    let https = rng.chance(70);
    let opt = |rng: &mut Lcg, p: u64, v: &str| rng.chance(p).then(|| v.to_string());
    Observation::Http(HttpObservation {
        url: format!(
            "{}://host{host}.example.com/",
            if https { "https" } else { "http" }
        ),
        status: *rng.pick(&[200, 200, 200, 301, 404]),
        hsts: opt(rng, 50, "max-age=31536000; includeSubDomains"),
        hsts_max_age: rng.chance(50).then_some(31_536_000),
        hsts_include_subdomains: rng.chance(40),
        csp: opt(
            rng,
            40,
            "default-src 'self'; script-src 'self' 'unsafe-inline'",
        ),
        x_frame_options: opt(rng, 50, "SAMEORIGIN"),
        x_content_type_options: opt(rng, 60, "nosniff"),
        referrer_policy: opt(rng, 40, "strict-origin-when-cross-origin"),
        permissions_policy: opt(rng, 20, "camera=()"),
        server: Some(
            rng.pick(&[
                "nginx",
                "nginx/1.24.0",
                "Apache/2.4.58 (Debian)",
                "cloudflare",
            ])
            .to_string(),
        ),
        x_powered_by: opt(rng, 20, "PHP/8.2.12"),
        redirects_to_https: (!https).then(|| rng.chance(60)),
    })
}

fn dns(rng: &mut Lcg, host: usize) -> Observation {
    let q = *rng.pick(&["-", "~", "?", "+"]);
    Observation::Dns(DnsObservation {
        domain: format!("domain{host}.example"),
        spf: rng.chance(80).then(|| SpfRecord {
            raw: format!("v=spf1 include:_spf.example.net {q}all"),
            all_qualifier: Some(q.into()),
            dns_lookups: *rng.pick(&[1, 4, 12]),
        }),
        spf_count: 1,
        dmarc: rng.chance(60).then(|| DmarcRecord {
            raw: "v=DMARC1; p=none".into(),
            policy: Some(rng.pick(&["none", "quarantine", "reject"]).to_string()),
            pct: *rng.pick(&[100, 50]),
            has_rua: rng.chance(50),
        }),
        caa: if rng.chance(30) {
            vec!["0 issue \"letsencrypt.org\"".into()]
        } else {
            vec![]
        },
        mx: vec!["10 mx.example.net.".into()],
        dnssec_signed: rng.chance(20),
    })
}

fn workload(n: usize) -> Vec<Record> {
    let mut rng = Lcg(0x5eed);
    (0..n)
        .map(|i| {
            // A scan produces far more port observations than anything else.
            let roll = rng.next() % 100;
            let observation = match roll {
                0..=59 => port(&mut rng, i),
                60..=74 => tls(&mut rng, i),
                75..=89 => http(&mut rng, i),
                _ => dns(&mut rng, i),
            };
            Record {
                asset: format!("host{i}.example.com"),
                job_id: "bench".into(),
                observed_ms: 1_750_000_000_000 + i as u64,
                observation,
            }
        })
        .collect()
}

fn measure(label: &str, records: &[Record], evals_per_pass: u64, mut pass: impl FnMut() -> u64) {
    // Warm up caches and branch predictors before timing.
    let mut sink = 0u64;
    for _ in 0..3 {
        sink = sink.wrapping_add(pass());
    }
    let target = Duration::from_secs(2);
    let start = Instant::now();
    let mut passes = 0u64;
    while start.elapsed() < target {
        sink = sink.wrapping_add(pass());
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let evals = evals_per_pass * passes;
    println!(
        "{label}: {:.1} M evaluations/s ({:.2} M observations/s, {} passes over {} observations, {:.0} ns/evaluation, checksum {})",
        evals as f64 / secs / 1e6,
        (passes * records.len() as u64) as f64 / secs / 1e6,
        passes,
        records.len(),
        secs * 1e9 / evals as f64,
        black_box(sink),
    );
}

fn main() {
    let set = RuleSet::builtin().expect("builtin rules compile");
    let records = workload(10_000);
    let evals_per_pass: u64 = records
        .iter()
        .map(|r| set.rules_for(rules::Kind::of(&r.observation)).count() as u64)
        .sum();
    let findings_per_pass: usize = records.iter().map(|r| set.evaluate(r).len()).sum();
    println!(
        "rule set: {} rules; workload: {} observations, {} applicable observation×rule evaluations and {} findings per pass",
        set.rules().len(),
        records.len(),
        evals_per_pass,
        findings_per_pass
    );

    measure(
        "conditions only (count_matches)",
        &records,
        evals_per_pass,
        || {
            records
                .iter()
                .map(|r| set.count_matches(black_box(r)) as u64)
                .sum()
        },
    );

    let mut out = Vec::with_capacity(64);
    measure(
        "full evaluate (findings built)",
        &records,
        evals_per_pass,
        || {
            let mut n = 0u64;
            for r in &records {
                out.clear();
                set.evaluate_into(black_box(r), &mut out);
                n += out.len() as u64;
            }
            n
        },
    );
}
