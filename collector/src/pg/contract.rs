//! Contract tests: one set of test functions over the storage traits, run
//! against the embedded sled backends always and against PostgreSQL when
//! `VIGIL_TEST_POSTGRES_URL` is set (each PostgreSQL run in a fresh schema).

use std::sync::Arc;

use protocol::{AgentId, TenantId};

use super::test_support::pool;
use super::{PgFindingStore, PgStore, search_findings};
use crate::findings::store::{FindingError, FindingStore, SledFindingStore, Space};
use crate::findings::{FindingRecord, FindingState, enc, tenant_key};
use crate::store::{
    AgentRecord, BatchOutcome, RunFilter, RunRecord, RunStatus, SledStore, Store, StoreError,
    StoredBatch, StoredCa, TokenRecord,
};

fn ids(tenant: &str) -> (TenantId, AgentId) {
    (
        TenantId::new(tenant).unwrap(),
        AgentId::new("ag-1").unwrap(),
    )
}

fn batch(tenant: &str, seq: u64) -> StoredBatch {
    let (tenant, agent) = ids(tenant);
    StoredBatch {
        tenant,
        agent,
        sequence: seq,
        received_ms: 10,
        records: 3,
        body: vec![seq as u8; 5],
        signature: [9; 64],
    }
}

fn agent_rec(tenant: &str, agent: &str) -> AgentRecord {
    AgentRecord {
        tenant: TenantId::new(tenant).unwrap(),
        agent: AgentId::new(agent).unwrap(),
        hostname: "h".into(),
        signing_key: [1; 32],
        enrolled_ms: 1,
        cert_not_after_ms: 2,
        revoked_ms: None,
        last_seen_ms: 3,
    }
}

fn run_rec(tenant: &str, agent: &str, id: &str, scheduled: u64, status: RunStatus) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        tenant: TenantId::new(tenant).unwrap(),
        agent: AgentId::new(agent).unwrap(),
        job_id: "job".into(),
        status,
        scheduled_ms: scheduled,
        dispatched_ms: None,
        dispatches: 0,
        started_ms: None,
        finished_ms: None,
        observations: 0,
        batches: 0,
        last_sequence: 0,
        error: None,
    }
}

fn batches_dedupe_and_count(s: &dyn Store) {
    assert_eq!(
        s.store_batch(&batch("acme", 1)).unwrap(),
        BatchOutcome::Stored
    );
    assert_eq!(
        s.store_batch(&batch("acme", 2)).unwrap(),
        BatchOutcome::Stored
    );
    assert_eq!(
        s.store_batch(&batch("acme", 2)).unwrap(),
        BatchOutcome::Duplicate
    );
    assert_eq!(
        s.store_batch(&batch("acme", 1)).unwrap(),
        BatchOutcome::Duplicate
    );
    // Same agent id in another tenant is a different stream.
    assert_eq!(
        s.store_batch(&batch("other", 1)).unwrap(),
        BatchOutcome::Stored
    );
    s.flush().unwrap();
    let (t, a) = ids("acme");
    let d = s.delivery(&t, &a).unwrap();
    assert_eq!((d.last_sequence, d.batches, d.records), (2, 2, 6));
    assert_eq!(
        s.batches(&t, &a, 0).unwrap(),
        vec![batch("acme", 1), batch("acme", 2)]
    );
    assert_eq!(s.batches(&t, &a, 2).unwrap(), vec![batch("acme", 2)]);
    assert_eq!(
        s.batches_from(&t, &a, 0, 1).unwrap(),
        vec![batch("acme", 1)]
    );
    let all = s.all_deliveries().unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .any(|(t, _, d)| t.as_str() == "other" && d.batches == 1)
    );
}

fn tokens_single_use(s: &dyn Store) {
    let rec = TokenRecord {
        tenant: ids("acme").0,
        created_ms: 0,
        expires_ms: 100,
    };
    s.put_token([1; 32], &rec).unwrap();
    s.put_token([2; 32], &rec).unwrap();
    assert_eq!(s.consume_token([1; 32], 50).unwrap(), rec);
    assert!(matches!(
        s.consume_token([1; 32], 50),
        Err(StoreError::InvalidToken)
    ));
    assert!(matches!(
        s.consume_token([2; 32], 100),
        Err(StoreError::InvalidToken)
    ));
}

fn cas_and_secrets_keep_the_first(s: &dyn Store) {
    let a = StoredCa {
        cert_der: vec![1],
        key_pkcs8: vec![2],
    };
    let b = StoredCa {
        cert_der: vec![3],
        key_pkcs8: vec![4],
    };
    let t = ids("acme").0;
    assert_eq!(s.tenant_ca(&t).unwrap(), None);
    assert_eq!(s.init_tenant_ca(&t, a.clone()).unwrap(), a);
    assert_eq!(s.init_tenant_ca(&t, b.clone()).unwrap(), a);
    assert_eq!(s.tenant_ca(&t).unwrap(), Some(a.clone()));
    assert_eq!(s.tenant_ca(&ids("other").0).unwrap(), None);
    assert_eq!(s.server_ca().unwrap(), None);
    assert_eq!(s.init_server_ca(b.clone()).unwrap(), b);
    assert_eq!(s.init_server_ca(a).unwrap(), b);
    assert_eq!(s.secret("k", [5; 32]).unwrap(), [5; 32]);
    assert_eq!(s.secret("k", [6; 32]).unwrap(), [5; 32]);
}

fn agents_by_tenant_and_revocation(s: &dyn Store) {
    s.put_agent(&agent_rec("acme", "ag-a")).unwrap();
    s.put_agent(&agent_rec("acme", "ag-b")).unwrap();
    s.put_agent(&agent_rec("other", "ag-c")).unwrap();
    assert_eq!(s.agents(None).unwrap().len(), 3);
    let acme = s.agents(Some(&ids("acme").0)).unwrap();
    assert_eq!(acme.len(), 2);
    assert!(acme.iter().all(|a| a.tenant.as_str() == "acme"));
    let r = s.revoke_agent(&AgentId::new("ag-a").unwrap(), 77).unwrap();
    assert_eq!(r.revoked_ms, Some(77));
    // Revoking again keeps the first time.
    let r = s.revoke_agent(&AgentId::new("ag-a").unwrap(), 99).unwrap();
    assert_eq!(r.revoked_ms, Some(77));
    assert_eq!(
        s.agent(&AgentId::new("ag-a").unwrap())
            .unwrap()
            .unwrap()
            .revoked_ms,
        Some(77)
    );
    assert!(matches!(
        s.revoke_agent(&AgentId::new("ag-zz").unwrap(), 1),
        Err(StoreError::UnknownAgent(_))
    ));
}

fn runs_lifecycle(s: &dyn Store) {
    s.put_run(&run_rec("acme", "ag-a", "r1", 100, RunStatus::Queued))
        .unwrap();
    s.put_run(&run_rec("acme", "ag-b", "r2", 200, RunStatus::Running))
        .unwrap();
    s.put_run(&run_rec("other", "ag-c", "r3", 300, RunStatus::Succeeded))
        .unwrap();
    let pending: Vec<_> = s
        .pending_runs(None)
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(pending, vec!["r1", "r2"]);
    let a = AgentId::new("ag-a").unwrap();
    assert_eq!(s.pending_runs(Some(&a)).unwrap().len(), 1);
    let updated = s
        .update_run("r1", &mut |r| {
            r.status = RunStatus::Failed;
            true
        })
        .unwrap()
        .unwrap();
    assert_eq!(updated.status, RunStatus::Failed);
    assert_eq!(s.run("r1").unwrap().unwrap().status, RunStatus::Failed);
    // A declined edit changes nothing.
    let same = s
        .update_run("r2", &mut |r| {
            r.status = RunStatus::Missed;
            false
        })
        .unwrap()
        .unwrap();
    assert_eq!(same.status, RunStatus::Missed);
    assert_eq!(s.run("r2").unwrap().unwrap().status, RunStatus::Running);
    assert!(s.update_run("nope", &mut |_| true).unwrap().is_none());
    let pending: Vec<_> = s
        .pending_runs(None)
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(pending, vec!["r2"]);
    let newest: Vec<_> = s
        .runs(&RunFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(newest, vec!["r3", "r2", "r1"]);
    let acme = s
        .runs(&RunFilter {
            tenant: Some(ids("acme").0),
            agent: None,
            limit: Some(1),
        })
        .unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].run_id, "r2");
    // Only finished runs due before the cut are pruned.
    assert_eq!(s.prune_runs(250).unwrap(), 1);
    assert!(s.run("r1").unwrap().is_none());
    assert!(s.run("r2").unwrap().is_some());
    let t = ids("acme").0;
    assert_eq!(s.schedule_cursor(&t, "job").unwrap(), None);
    s.set_schedule_cursor(&t, "job", 5).unwrap();
    s.set_schedule_cursor(&t, "job", 7).unwrap();
    assert_eq!(s.schedule_cursor(&t, "job").unwrap(), Some(7));
    assert_eq!(s.schedule_cursor(&ids("other").0, "job").unwrap(), None);
}

fn finding_tx_atomic_and_scans(s: &dyn FindingStore) {
    s.transact(&mut |tx| {
        tx.put(Space::Cursors, b"a/ag", b"1")?;
        tx.put(Space::Changes, b"a/1", b"x")?;
        tx.put(Space::Changes, b"a/2", b"y")?;
        tx.put(Space::Changes, b"b/1", b"z")?;
        assert_eq!(tx.get(Space::Changes, b"a/1")?, Some(b"x".to_vec()));
        tx.remove(Space::Changes, b"b/1")?;
        tx.put(Space::Changes, b"b/1", b"z")
    })
    .unwrap();
    let err = s.transact(&mut |tx| {
        tx.put(Space::Changes, b"a/3", b"w")?;
        Err(FindingError::Invalid("boom".into()))
    });
    assert!(matches!(err, Err(FindingError::Invalid(_))));
    assert_eq!(s.get(Space::Changes, b"a/3").unwrap(), None);
    // Same key in another space is separate.
    assert_eq!(s.get(Space::Assets, b"a/1").unwrap(), None);
    assert_eq!(
        s.scan(Space::Changes, b"a/", None, false, 10)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.scan(Space::Changes, b"", None, false, 10).unwrap().len(),
        3
    );
    assert_eq!(
        s.scan(Space::Changes, b"a/", Some(b"a/1"), false, 10)
            .unwrap(),
        vec![(b"a/2".to_vec(), b"y".to_vec())]
    );
    assert_eq!(
        s.scan(Space::Changes, b"a/", None, true, 1).unwrap()[0].0,
        b"a/2".to_vec()
    );
    assert_eq!(
        s.scan(Space::Changes, b"a/", Some(b"a/2"), true, 10)
            .unwrap(),
        vec![(b"a/1".to_vec(), b"x".to_vec())]
    );
    assert!(
        s.scan(Space::Changes, b"a/", None, false, 0)
            .unwrap()
            .is_empty()
    );
    assert!(!s.remove_if(Space::Changes, b"a/1", b"nope").unwrap());
    assert!(s.remove_if(Space::Changes, b"a/1", b"x").unwrap());
    assert_eq!(s.get(Space::Changes, b"a/1").unwrap(), None);
    s.flush().unwrap();
}

/// Concurrent read-modify-write transactions on one counter lose no update.
fn finding_tx_serialises_conflicts(s: Arc<dyn FindingStore>) {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    s.transact(&mut |tx| {
                        let n = tx
                            .get(Space::Cursors, b"c/n")?
                            .map(|v| u64::from_be_bytes(v.try_into().unwrap_or_default()))
                            .unwrap_or(0);
                        tx.put(Space::Cursors, b"c/n", &(n + 1).to_be_bytes())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let v = s.get(Space::Cursors, b"c/n").unwrap().unwrap();
    assert_eq!(u64::from_be_bytes(v.try_into().unwrap()), 100);
}

fn sled() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&dir.path().join("db")).unwrap();
    (dir, s)
}

fn schedule_lock_is_exclusive_per_job(a: &dyn Store, b: &dyn Store, exclusive: bool) {
    let t = ids("acme").0;
    let held = a.try_lock_schedule(&t, "nightly").unwrap();
    assert!(held.is_some());
    // Another collector (b) is refused while a holds it, when the backend is shared.
    assert_eq!(
        b.try_lock_schedule(&t, "nightly").unwrap().is_none(),
        exclusive
    );
    assert!(b.try_lock_schedule(&t, "weekly").unwrap().is_some());
    assert!(
        b.try_lock_schedule(&ids("other").0, "nightly")
            .unwrap()
            .is_some()
    );
    drop(held);
    assert!(b.try_lock_schedule(&t, "nightly").unwrap().is_some());
}

#[test]
fn schedule_lock_on_sled_always_granted() {
    let (_d, s) = sled();
    schedule_lock_is_exclusive_per_job(&s, &s, false);
}

#[test]
fn schedule_lock_on_postgres_is_cluster_wide() {
    let Some(pool) = pool("schedlock") else {
        return;
    };
    let url = std::env::var("VIGIL_TEST_POSTGRES_URL").unwrap();
    // A second pool stands for a second collector process.
    let other = super::PgPool::new(&url, pool.schema(), 2).unwrap();
    schedule_lock_is_exclusive_per_job(&PgStore::new(pool), &PgStore::new(other), true);
}

macro_rules! store_contract {
    ($($name:ident),* $(,)?) => {
        mod store_on_sled {
            $(#[test] fn $name() { let (_d, s) = super::sled(); super::$name(&s); })*
        }
        mod store_on_postgres {
            $(#[test] fn $name() {
                let Some(pool) = super::pool(stringify!($name)) else { return };
                super::$name(&super::PgStore::new(pool));
            })*
        }
    };
}

store_contract!(
    batches_dedupe_and_count,
    tokens_single_use,
    cas_and_secrets_keep_the_first,
    agents_by_tenant_and_revocation,
    runs_lifecycle,
);

#[test]
fn finding_store_contract_on_sled() {
    let (_d, s) = sled();
    let fs: Arc<dyn FindingStore> = Arc::new(SledFindingStore::open(s.sled_db().unwrap()).unwrap());
    finding_tx_atomic_and_scans(fs.as_ref());
    finding_tx_serialises_conflicts(fs);
}

#[test]
fn finding_store_contract_on_postgres() {
    let Some(pool) = pool("findings") else { return };
    let fs: Arc<dyn FindingStore> = Arc::new(PgFindingStore::new(pool));
    finding_tx_atomic_and_scans(fs.as_ref());
    finding_tx_serialises_conflicts(fs);
}

fn finding(
    tenant: &str,
    id: &str,
    rule: &str,
    sev: rules::Severity,
    port: u16,
    first: u64,
) -> FindingRecord {
    FindingRecord {
        id: id.into(),
        tenant: tenant.into(),
        asset: "10.0.0.5".into(),
        rule_id: rule.into(),
        title: format!("{rule} exposed service telnet"),
        severity: sev,
        check: "port".into(),
        job_id: "nightly".into(),
        location: format!("tcp/{port}"),
        evidence: "banner OpenSSH_7.4".into(),
        remediation: String::new(),
        mappings: vec![rules::Mapping {
            framework: "cis".into(),
            control: "4.1".into(),
            title: String::new(),
        }],
        state: FindingState::Open,
        first_seen_ms: first,
        last_seen_ms: first + 1000,
        resolved_ms: None,
        reopened: 0,
        port: Some(port),
        not_after_ms: None,
        suppression: None,
        history: Vec::new(),
    }
}

#[test]
fn postgres_search_is_partitioned_tenant_scoped_and_parameterised() {
    let Some(pool) = pool("search") else { return };
    let fs = PgFindingStore::new(pool.clone());
    const JAN: u64 = 1_767_225_600_000; // 2026-01-01
    const MAR: u64 = 1_772_323_200_000; // 2026-03-01
    let docs = [
        finding(
            "acme",
            "f1",
            "port.telnet",
            rules::Severity::High,
            23,
            JAN + 5,
        ),
        finding("acme", "f2", "port.ssh", rules::Severity::Low, 22, MAR + 5),
        finding(
            "other",
            "f3",
            "port.telnet",
            rules::Severity::High,
            23,
            JAN + 9,
        ),
    ];
    fs.transact(&mut |tx| {
        for f in &docs {
            tx.put(Space::Findings, &tenant_key(&f.tenant, &f.id), &enc(f)?)?;
        }
        Ok(())
    })
    .unwrap();
    let ids = |q: &str| -> Vec<String> {
        search_findings(&pool, "acme", q, 50, MAR + 10_000)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect()
    };
    // Tenant filter is mandatory: "other"'s telnet finding never shows.
    let mut telnet = ids("telnet");
    telnet.sort();
    assert_eq!(telnet, vec!["f1", "f2"]);
    assert_eq!(ids("rule:port.telnet"), vec!["f1"]);
    assert_eq!(ids("severity:>=high"), vec!["f1"]);
    assert_eq!(ids("port:[20 TO 22]"), vec!["f2"]);
    assert_eq!(ids("rule:port.* NOT port:23"), vec!["f2"]);
    assert_eq!(
        ids("framework:cis control:4.1 sort:first_seen"),
        vec!["f1", "f2"]
    );
    assert_eq!(ids("expos* sort:-first_seen"), vec!["f2", "f1"]);
    assert_eq!(ids("first_seen:<2026-02-01"), vec!["f1"]);
    assert_eq!(ids("kind:change"), Vec::<String>::new());
    // Input that looks like SQL is only ever a bound value.
    assert_eq!(ids("asset:\"x' OR '1'='1\""), Vec::<String>::new());
    assert!(matches!(
        search_findings(&pool, "acme", "days_left:<30", 10, 0),
        Err(FindingError::Query(_))
    ));
    // Two monthly partitions were created on demand.
    let c = pool.get().unwrap();
    let parts: i64 = super::wait(c.query_one(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
         JOIN pg_namespace n ON n.oid = p.relnamespace
         WHERE p.relname = 'finding_search' AND n.nspname = $1",
        &[&pool.schema()],
    ))
    .unwrap()
    .get(0);
    assert_eq!(parts, 2);
    // Removing a finding removes its search row.
    fs.transact(&mut |tx| tx.remove(Space::Findings, b"acme/f1"))
        .unwrap();
    assert_eq!(ids("rule:port.telnet"), Vec::<String>::new());
}
