//! Outbox and planning against a real sled findings store.

use std::sync::Arc;

use protocol::{AgentId, Observation, PortObservation, PortState, Record, TenantId};
use rules::{RuleSet, Severity};
use serde_json::json;

use super::model::{AlertEvent, ChannelKind, DeliveryStatus, EventKind};
use super::outbox::put_event;
use super::service::{NewChannel, NewRule};
use super::{AlertService, AlertSettings};
use crate::findings::{
    FindingError, FindingStore, SledFindingStore, Space, apply_batch, dec, tenant_prefix,
};
use crate::metrics::Metrics;

fn store() -> (tempfile::TempDir, Arc<dyn FindingStore>) {
    let dir = tempfile::tempdir().unwrap();
    let fs = SledFindingStore::open(sled::open(dir.path()).unwrap()).unwrap();
    (dir, Arc::new(fs))
}

fn port(p: u16, service: &str, ms: u64) -> Record {
    Record {
        asset: "10.0.0.1".into(),
        job_id: "j".into(),
        observed_ms: ms,
        observation: Observation::Port(PortObservation {
            ip: "10.0.0.1".into(),
            port: p,
            state: PortState::Open,
            service: Some(service.into()),
            product: None,
            banner: None,
            tls: false,
        }),
    }
}

fn outbox(fs: &dyn FindingStore) -> Vec<AlertEvent> {
    fs.scan(Space::AlertOutbox, b"", None, false, usize::MAX)
        .unwrap()
        .iter()
        .map(|(k, v)| dec(k, v).unwrap())
        .collect()
}

fn clear_outbox(fs: &dyn FindingStore) {
    for (k, v) in fs
        .scan(Space::AlertOutbox, b"", None, false, usize::MAX)
        .unwrap()
    {
        fs.remove_if(Space::AlertOutbox, &k, &v).unwrap();
    }
}

/// Routes every finding and change event of `tenant` to a webhook.
fn route_everything(fs: &Arc<dyn FindingStore>, tenant: &str) -> AlertService {
    let svc = AlertService::new(
        fs.clone(),
        AlertSettings::default(),
        Arc::new(Metrics::default()),
    );
    let (ch, _) = svc
        .create_channel(
            tenant,
            NewChannel {
                name: "all".into(),
                kind: ChannelKind::Webhook,
                url: Some("http://127.0.0.1:9/h".into()),
                secret: None,
                to: vec![],
            },
        )
        .unwrap();
    svc.create_rule(
        tenant,
        NewRule {
            channel_id: ch.id,
            min_severity: Severity::Info,
            change_types: crate::findings::changes::ChangeType::ALL
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            events: vec![
                EventKind::FindingNew,
                EventKind::FindingReopened,
                EventKind::Change,
            ],
            enabled: true,
        },
    )
    .unwrap();
    svc
}

#[test]
fn tenants_without_rules_queue_nothing() {
    let (_d, fs) = store();
    let rules = RuleSet::builtin().unwrap();
    let (t, a) = (
        TenantId::new("acme").unwrap(),
        AgentId::new("ag-1").unwrap(),
    );
    // Another tenant's rules do not count for acme.
    route_everything(&fs, "globex");
    let e = apply_batch(fs.as_ref(), &rules, &t, &a, 1, &[port(23, "telnet", 10)], 1).unwrap();
    assert!(e.new >= 1 && e.changes >= 1);
    assert!(outbox(fs.as_ref()).is_empty());
}

#[test]
fn interest_follows_enabled_rules() {
    use super::model::{AlertRule, Interest};
    let rule = |min, events: Vec<EventKind>, changes: &[&str], enabled| AlertRule {
        id: "r".into(),
        channel_id: "c".into(),
        min_severity: min,
        change_types: changes.iter().map(|c| c.to_string()).collect(),
        events,
        enabled,
    };
    let i = Interest::of(&[
        rule(
            Severity::High,
            vec![EventKind::FindingNew],
            &["PORT_OPENED"],
            true,
        ),
        rule(
            Severity::Medium,
            vec![EventKind::FindingNew, EventKind::Change],
            &["CERT_EXPIRING"],
            true,
        ),
        rule(Severity::Info, vec![EventKind::FindingReopened], &[], false),
    ]);
    assert!(i.wants_finding(EventKind::FindingNew, Severity::Medium));
    assert!(!i.wants_finding(EventKind::FindingNew, Severity::Low));
    assert!(!i.wants_finding(EventKind::FindingReopened, Severity::Critical));
    assert!(i.wants_change("CERT_EXPIRING"));
    // Change types count only on rules that take change events.
    assert!(!i.wants_change("PORT_OPENED"));
    assert!(Interest::of(&[]).is_empty());
}

#[test]
fn alert_events_commit_with_the_batch_and_replays_add_none() {
    let (_d, fs) = store();
    let rules = RuleSet::builtin().unwrap();
    let (t, a) = (
        TenantId::new("acme").unwrap(),
        AgentId::new("ag-1").unwrap(),
    );
    route_everything(&fs, "acme");
    let e = apply_batch(fs.as_ref(), &rules, &t, &a, 1, &[port(23, "telnet", 10)], 1).unwrap();
    assert!(e.new >= 1 && e.changes >= 1, "{e:?}");
    let evs = outbox(fs.as_ref());
    let new: Vec<_> = evs
        .iter()
        .filter(|e| e.kind == EventKind::FindingNew)
        .collect();
    assert_eq!(new.len() as u64, e.new);
    assert_eq!(
        evs.iter().filter(|e| e.kind == EventKind::Change).count() as u64,
        e.changes
    );
    assert!(
        new.iter()
            .all(|e| e.tenant == "acme" && e.severity.is_some())
    );
    clear_outbox(fs.as_ref());
    // A replayed batch changes nothing, so it queues nothing.
    apply_batch(fs.as_ref(), &rules, &t, &a, 1, &[port(23, "telnet", 10)], 2).unwrap();
    assert!(outbox(fs.as_ref()).is_empty());
    // Seen again: open, no event. Resolved: no event. Produced again: reopened.
    apply_batch(fs.as_ref(), &rules, &t, &a, 2, &[port(23, "telnet", 20)], 3).unwrap();
    assert!(
        outbox(fs.as_ref())
            .iter()
            .all(|e| e.kind == EventKind::Change)
    );
    apply_batch(fs.as_ref(), &rules, &t, &a, 3, &[port(22, "ssh", 30)], 4).unwrap();
    clear_outbox(fs.as_ref());
    let e = apply_batch(fs.as_ref(), &rules, &t, &a, 4, &[port(23, "telnet", 40)], 5).unwrap();
    let reopened = outbox(fs.as_ref())
        .into_iter()
        .filter(|e| e.kind == EventKind::FindingReopened)
        .count();
    assert_eq!(reopened as u64, e.reopened);
    assert!(reopened >= 1);
    // An aborted transaction leaves no alert event behind.
    clear_outbox(fs.as_ref());
    let ev = AlertEvent {
        id: "x".into(),
        tenant: "acme".into(),
        kind: EventKind::Change,
        created_ms: 1,
        severity: None,
        change_type: Some("PORT_OPENED".into()),
        summary: String::new(),
        asset: None,
        details: json!({}),
    };
    let r = fs.transact(&mut |tx| {
        put_event(tx, &ev)?;
        Err(FindingError::Invalid("abort".into()))
    });
    assert!(r.is_err());
    assert!(outbox(fs.as_ref()).is_empty());
}

fn event(
    tenant: &str,
    id: &str,
    kind: EventKind,
    sev: Option<Severity>,
    change: Option<&str>,
) -> AlertEvent {
    AlertEvent {
        id: id.into(),
        tenant: tenant.into(),
        kind,
        created_ms: 1_700_000_000_000,
        severity: sev,
        change_type: change.map(str::to_string),
        summary: id.into(),
        asset: Some("10.0.0.1".into()),
        details: json!({}),
    }
}

#[test]
fn planning_applies_severity_change_types_kinds_and_tenants() {
    let (_d, fs) = store();
    let svc = AlertService::new(
        fs.clone(),
        AlertSettings::default(),
        Arc::new(Metrics::default()),
    );
    let hook = |name: &str| NewChannel {
        name: name.into(),
        kind: ChannelKind::Webhook,
        url: Some("http://127.0.0.1:9/h".into()),
        secret: None,
        to: vec![],
    };
    let (a, secret) = svc.create_channel("acme", hook("a")).unwrap();
    assert!(secret.unwrap().starts_with("whsec_"));
    let (b, _) = svc.create_channel("acme", hook("b")).unwrap();
    let rule = |ch: &str, min, events: Vec<EventKind>, changes: Vec<&str>| NewRule {
        channel_id: ch.into(),
        min_severity: min,
        change_types: changes.into_iter().map(str::to_string).collect(),
        events,
        enabled: true,
    };
    svc.create_rule(
        "acme",
        rule(&a.id, Severity::High, vec![EventKind::FindingNew], vec![]),
    )
    .unwrap();
    // A second rule to the same channel must not double the delivery.
    svc.create_rule(
        "acme",
        rule(
            &a.id,
            Severity::Critical,
            vec![EventKind::FindingNew],
            vec![],
        ),
    )
    .unwrap();
    svc.create_rule(
        "acme",
        rule(
            &b.id,
            Severity::Info,
            vec![EventKind::Change],
            vec!["PORT_OPENED"],
        ),
    )
    .unwrap();
    // Rules are validated: unknown change type, foreign channel, no events.
    assert!(
        svc.create_rule(
            "acme",
            rule(&b.id, Severity::Info, vec![EventKind::Change], vec!["NOPE"])
        )
        .is_err()
    );
    assert!(
        svc.create_rule(
            "globex",
            rule(&b.id, Severity::Info, vec![EventKind::Change], vec![])
        )
        .is_err()
    );
    assert!(
        svc.create_rule("acme", rule(&b.id, Severity::Info, vec![], vec![]))
            .is_err()
    );
    let evs = [
        event(
            "acme",
            "low",
            EventKind::FindingNew,
            Some(Severity::Low),
            None,
        ),
        event(
            "acme",
            "crit",
            EventKind::FindingNew,
            Some(Severity::Critical),
            None,
        ),
        event(
            "acme",
            "opened",
            EventKind::Change,
            None,
            Some("PORT_OPENED"),
        ),
        event(
            "acme",
            "closed",
            EventKind::Change,
            None,
            Some("PORT_CLOSED"),
        ),
        event(
            "acme",
            "reopen",
            EventKind::FindingReopened,
            Some(Severity::Critical),
            None,
        ),
        event(
            "globex",
            "crit-g",
            EventKind::FindingNew,
            Some(Severity::Critical),
            None,
        ),
    ];
    fs.transact(&mut |tx| evs.iter().try_for_each(|e| put_event(tx, e)))
        .unwrap();
    assert_eq!(svc.plan_once(1_000).unwrap(), evs.len());
    assert!(outbox(fs.as_ref()).is_empty());
    let ds = svc.deliveries("acme", None, 100).unwrap();
    let mut got: Vec<(String, String)> = ds
        .iter()
        .map(|d| (d.event.id.clone(), d.channel_id.clone()))
        .collect();
    got.sort();
    let mut want = vec![
        ("crit".to_string(), a.id.clone()),
        ("opened".to_string(), b.id.clone()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(
        ds.iter()
            .all(|d| d.status == DeliveryStatus::Pending && d.next_attempt_ms == 1_000)
    );
    assert!(svc.deliveries("globex", None, 100).unwrap().is_empty());
    assert_eq!(svc.pending_count().unwrap(), 2);
    // Planning the same event again (a crash before the outbox removal) adds nothing.
    fs.transact(&mut |tx| put_event(tx, &evs[1])).unwrap();
    svc.plan_once(2_000).unwrap();
    assert_eq!(svc.deliveries("acme", None, 100).unwrap().len(), 2);
    assert_eq!(svc.pending_count().unwrap(), 2);
    // Deliveries are tenant-scoped: another tenant's id is not found.
    assert!(svc.delivery("globex", &ds[0].id).is_err());
    assert!(svc.retry("globex", &ds[0].id).is_err());
    // Only dead deliveries can be retried.
    assert!(matches!(
        svc.retry("acme", &ds[0].id),
        Err(super::AlertError::Invalid(_))
    ));
    // Deleting a channel deletes its rules.
    svc.delete_channel("acme", &a.id).unwrap();
    assert!(
        svc.rules("acme")
            .unwrap()
            .iter()
            .all(|r| r.channel_id != a.id)
    );
    assert_eq!(
        fs.scan(Space::AlertConfig, &tenant_prefix("acme"), None, false, 100)
            .unwrap()
            .len(),
        3,
        "channel b, its rule and the interest summary remain"
    );
    // The summary no longer asks for findings (only channel a's rules did).
    let key = super::interest_key("acme");
    let interest: super::model::Interest =
        dec(&key, &fs.get(Space::AlertConfig, &key).unwrap().unwrap()).unwrap();
    assert!(!interest.wants_finding(EventKind::FindingNew, Severity::Critical));
    assert!(interest.wants_change("PORT_OPENED"));
}

#[test]
fn sweep_deletes_only_old_finished_deliveries() {
    let (_d, fs) = store();
    let svc = AlertService::new(
        fs.clone(),
        AlertSettings::default(),
        Arc::new(Metrics::default()),
    );
    let day = 86_400_000u64;
    let now = 100 * day;
    let mut ds = Vec::new();
    for (i, (status, age_days)) in [
        (DeliveryStatus::Delivered, 31),
        (DeliveryStatus::Dead, 31),
        (DeliveryStatus::Muted, 31),
        (DeliveryStatus::Pending, 31),
        (DeliveryStatus::Delivered, 29),
    ]
    .into_iter()
    .enumerate()
    {
        let ev = event(
            "acme",
            &format!("e{i}"),
            EventKind::Change,
            None,
            Some("PORT_OPENED"),
        );
        let d = super::dispatcher::new_delivery(&ev, "c", now - age_days * day, status);
        ds.push(d);
    }
    fs.transact(&mut |tx| {
        ds.iter().try_for_each(|d| {
            tx.put(
                Space::AlertDeliveries,
                &super::delivery_key(&d.tenant, &d.id),
                &crate::findings::enc(d)?,
            )
        })
    })
    .unwrap();
    assert_eq!(svc.sweep(now).unwrap(), 3);
    let mut left: Vec<String> = svc
        .deliveries("acme", None, 10)
        .unwrap()
        .into_iter()
        .map(|d| d.event.id)
        .collect();
    left.sort();
    assert_eq!(left, ["e3", "e4"]);
}

#[test]
fn a_suppressed_finding_coming_back_raises_no_alert() {
    let (_d, fs) = store();
    route_everything(&fs, "acme");
    let rules = RuleSet::builtin().unwrap();
    let (t, a) = (
        TenantId::new("acme").unwrap(),
        AgentId::new("ag-1").unwrap(),
    );
    apply_batch(fs.as_ref(), &rules, &t, &a, 1, &[port(23, "telnet", 10)], 1).unwrap();
    apply_batch(fs.as_ref(), &rules, &t, &a, 2, &[port(22, "ssh", 20)], 2).unwrap();
    let findings: Vec<crate::findings::FindingRecord> = fs
        .scan(
            Space::Findings,
            &tenant_prefix("acme"),
            None,
            false,
            usize::MAX,
        )
        .unwrap()
        .iter()
        .map(|(k, v)| dec(k, v).unwrap())
        .collect();
    fs.transact(&mut |tx| {
        findings.iter().try_for_each(|f| {
            let mut f = f.clone();
            f.suppression = Some(crate::findings::Suppression {
                kind: crate::findings::SuppressionKind::Suppressed,
                reason: "lab host".into(),
                owner: "ops".into(),
                created_ms: 1,
                expires_ms: None,
            });
            crate::findings::put_finding(tx, &f, &[0; 8])
        })
    })
    .unwrap();
    clear_outbox(fs.as_ref());
    let e = apply_batch(fs.as_ref(), &rules, &t, &a, 3, &[port(23, "telnet", 30)], 3).unwrap();
    assert!(e.reopened >= 1);
    assert!(
        outbox(fs.as_ref())
            .iter()
            .all(|e| e.kind != EventKind::FindingReopened)
    );
}
