//! Findings search at scale: indexes synthetic findings built from the real
//! builtin rules (titles, severities, mappings, remediation) through the same
//! upsert + commit path the pipeline uses, then runs a mixed query workload
//! with facets and reports indexing throughput and latency percentiles.
//!
//! `cargo bench -p collector --bench findings_search -- [findings] [queries]`
//! (defaults: 1 000 000 findings, 2 000 queries).

use std::time::Instant;

use collector::findings::{FindingRecord, FindingState, Suppression, SuppressionKind, Transition};
use collector::search::{IndexDoc, IndexOptions, SearchIndex};

/// A small deterministic generator (xorshift) so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const TENANTS: u64 = 20;
const ASSETS_PER_TENANT: u64 = 2_000;
const DAY: u64 = 86_400_000;
const PORTS: [u16; 12] = [21, 22, 23, 25, 80, 443, 445, 3306, 3389, 5432, 6379, 8443];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let total: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let queries: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let rules = rules::RuleSet::builtin().expect("builtin rules");
    let dir = tempfile::tempdir().expect("tempdir");
    let index = SearchIndex::open(
        dir.path(),
        IndexOptions {
            threads: 2,
            heap_bytes: 512 * 1024 * 1024,
        },
    )
    .expect("index");
    let now = collector::time::now_ms();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let states = [
        FindingState::New,
        FindingState::Open,
        FindingState::Open,
        FindingState::Resolved,
        FindingState::Reopened,
    ];

    let chunk = 20_000u64;
    let started = Instant::now();
    let mut docs = Vec::with_capacity(chunk as usize);
    for i in 0..total {
        let rule = &rules.rules()[rng.below(rules.rules().len() as u64) as usize];
        let tenant = format!("tenant-{:02}", rng.below(TENANTS));
        let asset = format!("host-{:05}.corp.example", rng.below(ASSETS_PER_TENANT));
        let port = PORTS[rng.below(PORTS.len() as u64) as usize];
        let first = now - rng.below(90 * DAY);
        let last = first + rng.below(now - first + 1);
        let state = states[rng.below(states.len() as u64) as usize];
        let suppression = (rng.below(50) == 0).then(|| Suppression {
            kind: SuppressionKind::AcceptedRisk,
            reason: "compensating control".into(),
            owner: "secops".into(),
            created_ms: first,
            expires_ms: Some(now + rng.below(60 * DAY)),
        });
        let f = FindingRecord {
            id: format!("{i:032x}"),
            tenant,
            asset: asset.clone(),
            rule_id: rule.id.clone(),
            title: rule.title.clone(),
            severity: rule.severity,
            check: rule.applies_to.as_str().to_string(),
            job_id: "nightly".into(),
            location: format!(
                "10.{}.{}.{}:{port}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            ),
            evidence: format!(
                "observed on {asset} port {port} banner=svc/{}",
                rng.below(1000)
            ),
            remediation: rule.remediation.clone(),
            mappings: rule.mappings.clone(),
            state,
            first_seen_ms: first,
            last_seen_ms: last,
            resolved_ms: (state == FindingState::Resolved).then_some(last),
            reopened: u32::from(state == FindingState::Reopened),
            port: Some(port),
            not_after_ms: (rule.applies_to.as_str() == "tls")
                .then(|| (now + rng.below(400 * DAY)) as i64 - 30 * DAY as i64),
            suppression,
            history: vec![Transition {
                at_ms: first,
                state: FindingState::New,
            }],
        };
        docs.push(IndexDoc::Finding(Box::new(f)));
        if docs.len() as u64 == chunk {
            index.upsert(&docs).expect("upsert");
            index.commit().expect("commit");
            docs.clear();
        }
    }
    if !docs.is_empty() {
        index.upsert(&docs).expect("upsert");
        index.commit().expect("commit");
    }
    let secs = started.elapsed().as_secs_f64();
    let size: u64 = std::fs::read_dir(dir.path())
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "indexed {total} findings in {secs:.1}s: {:.0} docs/s (upsert + commit every {chunk}); index {:.0} MiB; {} docs",
        total as f64 / secs,
        size as f64 / 1048576.0,
        index.num_docs()
    );

    let mix = [
        "severity:high",
        "severity:>=high -state:resolved",
        "port:3389",
        "framework:nis2 control:\"21(2)(h)\"",
        "rule:tls.*",
        "rule:port.* sort:-last_seen",
        "days_left:<14",
        "seen:>now-7d sort:-last_seen",
        "port:[1 TO 1024] -state:resolved suppressed:false",
        "certificate expired",
        "asset:host-00042.corp.example",
        "framework:iso27001 control:\"A.8.24\" severity:medium",
        "(port:22 OR port:23) state:open",
        "cleartext sort:-severity",
        "",
    ];
    // Warm-up: first touches of each segment's files.
    for q in mix {
        let _ = index.search("tenant-00", q, 20, true, now);
    }
    let mut lat = Vec::with_capacity(queries);
    let mut per_query: Vec<Vec<f64>> = vec![Vec::new(); mix.len()];
    let mut hits = 0u64;
    for i in 0..queries {
        let tenant = format!("tenant-{:02}", rng.below(TENANTS));
        let qi = i % mix.len();
        let t = Instant::now();
        let r = index
            .search(&tenant, mix[qi], 20, true, now)
            .expect("search");
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        hits += r.total;
        lat.push(ms);
        per_query[qi].push(ms);
    }
    let pct = |v: &mut Vec<f64>, p: f64| -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or(0.0)
    };
    println!(
        "{queries} searches (limit 20, facets on, 1 thread): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; mean matches {:.0}",
        pct(&mut lat, 0.50),
        pct(&mut lat, 0.90),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        hits as f64 / queries as f64
    );
    for (q, v) in mix.iter().zip(per_query.iter_mut()) {
        println!(
            "  p50 {:>7.2} ms  p99 {:>7.2} ms  {q:?}",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
}
