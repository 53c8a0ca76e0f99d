//! The findings pipeline (issue 4): stored batches → rule evaluation →
//! findings with a lifecycle, change events against a per-asset baseline,
//! compliance posture and a tenant-filtered search index.
//!
//! # Resolution
//!
//! A *scan run* is the set of records of one stored batch that share
//! `(asset, job_id, check kind)`. A finding's identity is
//! `(tenant, asset, rule, location)`. Each finding belongs to the scan scope
//! `(tenant, asset, job_id, check kind)` that last produced it. When a run of
//! a scope is processed, every still-unresolved finding of that scope that the
//! run did not produce is **resolved**; a resolved finding produced again is
//! **reopened**. Findings of other jobs or other check kinds on the same asset
//! are untouched, so a TLS-only job never resolves port findings. A finding is
//! **new** until a later run produces it again, then **open**.
//!
//! The agent splits one job's results into batches of `batch_records`; a run
//! larger than that is split and can resolve too early (the next batch reopens
//! the finding). Runs of one target are far below the default 1000 records.
//!
//! # Crash safety
//!
//! Every batch is applied in one transaction that also advances the agent's
//! processing cursor, so after a crash a batch is either fully applied or
//! applied again from scratch. Search documents to refresh are written to an
//! outbox in the same transaction and only removed after the index commit.

pub mod changes;
pub mod optimistic;
pub mod pipeline;
pub mod posture;
pub mod requests;
pub mod store;

use std::collections::HashMap;

use protocol::{AgentId, Observation, Record, TenantId};
use rules::{Kind, Mapping, RuleSet, Severity};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use changes::{AssetState, ChangeEvent, ChangeType, DriftItem, Section};
pub use store::{FindingError, FindingStore, FindingTx, SledFindingStore, Space};

/// Lifecycle state of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingState {
    /// Produced by one scan run so far.
    New,
    /// Produced again by a later run.
    Open,
    /// A later run of its scope no longer produced it.
    Resolved,
    /// Produced again after being resolved.
    Reopened,
}

impl FindingState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingState::New => "new",
            FindingState::Open => "open",
            FindingState::Resolved => "resolved",
            FindingState::Reopened => "reopened",
        }
    }
}

/// Whether a suppression marks a false positive or an accepted risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionKind {
    /// Not a real problem here (false positive, compensating control).
    Suppressed,
    /// A real problem the owner accepts until the expiry.
    AcceptedRisk,
}

/// A suppression or risk acceptance on a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Suppression or accepted risk.
    pub kind: SuppressionKind,
    /// Why.
    pub reason: String,
    /// Who is accountable.
    pub owner: String,
    /// When it was recorded, ms since the epoch.
    pub created_ms: u64,
    /// When it lapses, ms since the epoch; `None` never.
    pub expires_ms: Option<u64>,
}

impl Suppression {
    /// Whether it is in force at `now_ms`.
    pub fn active(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|e| e > now_ms)
    }
}

/// One lifecycle transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When (observation time of the run that caused it), ms since the epoch.
    pub at_ms: u64,
    /// New state.
    pub state: FindingState,
}

/// Transitions kept per finding; older ones are dropped first.
pub const MAX_TRANSITIONS: usize = 32;

/// A finding as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// `hash(tenant, asset, rule, location)`, 32 hex digits.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Asset.
    pub asset: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Observation kind (`port`, `tls`, `http`, `dns`).
    pub check: String,
    /// Job of the latest run that produced it.
    pub job_id: String,
    /// What distinguishes it from other findings of the rule on the asset.
    pub location: String,
    /// Latest evidence.
    pub evidence: String,
    /// How to fix it.
    pub remediation: String,
    /// Framework controls.
    pub mappings: Vec<Mapping>,
    /// Lifecycle state.
    pub state: FindingState,
    /// First observation, ms since the epoch.
    pub first_seen_ms: u64,
    /// Latest observation that produced it, ms since the epoch.
    pub last_seen_ms: u64,
    /// When it was last resolved.
    pub resolved_ms: Option<u64>,
    /// Times it was reopened.
    pub reopened: u32,
    /// Port of the observation, when it has one.
    pub port: Option<u16>,
    /// Certificate expiry of a TLS observation, ms since the epoch.
    pub not_after_ms: Option<i64>,
    /// Suppression or accepted risk, if any (kept after expiry for the record).
    pub suppression: Option<Suppression>,
    /// Lifecycle history, oldest first.
    pub history: Vec<Transition>,
}

impl FindingRecord {
    /// Whether an unexpired suppression applies.
    pub fn suppressed(&self, now_ms: u64) -> bool {
        self.suppression.as_ref().is_some_and(|s| s.active(now_ms))
    }

    /// Unresolved and not suppressed: counts against compliance.
    pub fn active(&self, now_ms: u64) -> bool {
        self.state != FindingState::Resolved && !self.suppressed(now_ms)
    }

    fn transition(&mut self, state: FindingState, at_ms: u64) {
        self.state = state;
        self.history.push(Transition { at_ms, state });
        if self.history.len() > MAX_TRANSITIONS {
            let excess = self.history.len() - MAX_TRANSITIONS;
            self.history.drain(..excess);
        }
    }
}

fn h(parts: &[&str]) -> [u8; 32] {
    let mut d = Sha256::new();
    for p in parts {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        d.update((p.len() as u64).to_be_bytes());
        d.update(p.as_bytes());
    }
    d.finalize().into()
}

/// Stable finding id: `(tenant, asset, rule, location)` hashed, 32 hex digits.
pub fn finding_id(tenant: &str, asset: &str, rule: &str, location: &str) -> String {
    hex::encode(&h(&[tenant, asset, rule, location])[..16])
}

/// Key of a tenant's record `id` in a per-tenant space.
pub fn tenant_key(tenant: &str, id: &str) -> Vec<u8> {
    format!("{tenant}/{id}").into_bytes()
}

/// Prefix of every key of a tenant.
pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    format!("{tenant}/").into_bytes()
}

fn scope_key(tenant: &str, asset: &str, job: &str, kind: &str) -> Vec<u8> {
    tenant_key(tenant, &hex::encode(&h(&[asset, job, kind])[..16]))
}

/// Key of an asset's state.
pub fn asset_key(tenant: &str, asset: &str) -> Vec<u8> {
    tenant_key(tenant, &hex::encode(&h(&[asset])[..16]))
}

/// Key of a change event: tenant, big-endian time, id, so a tenant's events sort by time.
pub fn change_key(tenant: &str, detected_ms: u64, id: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(&detected_ms.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn cursor_key(tenant: &TenantId, agent: &AgentId) -> Vec<u8> {
    format!("{tenant}/{agent}").into_bytes()
}

/// Outbox entry of a search document: `f` + finding key or `c` + change key.
pub fn outbox_key(prefix: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(prefix);
    k.extend_from_slice(key);
    k
}

/// JSON-encodes a stored value.
pub fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, FindingError> {
    serde_json::to_vec(v).map_err(|e| FindingError::Backend(e.to_string()))
}

/// Decodes a stored value.
pub fn dec<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T, FindingError> {
    serde_json::from_slice(v).map_err(|e| FindingError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// The agent's processing cursor (0 before the first batch).
pub fn cursor(
    fs: &dyn FindingStore,
    tenant: &TenantId,
    agent: &AgentId,
) -> Result<u64, FindingError> {
    Ok(fs
        .get(Space::Cursors, &cursor_key(tenant, agent))?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// A finding produced in a run, with the facts the index needs.
struct Produced {
    id: String,
    finding: rules::Finding,
    port: Option<u16>,
    not_after_ms: Option<i64>,
}

/// Records of one batch sharing `(asset, job, kind)`.
struct Run {
    asset: String,
    job_id: String,
    kind: Kind,
    observed_ms: u64,
    produced: Vec<Produced>,
    section: Section,
}

/// What applying one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchEffects {
    /// Whether the batch was applied (false: the cursor was already past it).
    pub applied: bool,
    /// Records evaluated.
    pub records: u64,
    /// Findings seen for the first time.
    pub new: u64,
    /// Findings resolved.
    pub resolved: u64,
    /// Findings reopened.
    pub reopened: u64,
    /// Change events recorded.
    pub changes: u64,
}

fn facts(rec: &Record) -> (Option<u16>, Option<i64>) {
    match &rec.observation {
        Observation::Port(p) => (Some(p.port), None),
        Observation::Tls(t) => (Some(t.port), t.certificate.as_ref().map(|c| c.not_after_ms)),
        Observation::Http(h) => (url_port(&h.url), None),
        Observation::Dns(_) => (None, None),
    }
}

/// Port of an `http(s)://host[:port]/...` URL (scheme default when absent).
pub fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit('@').next()?;
    let explicit = match host_port.rfind(']') {
        Some(i) => host_port[i + 1..].strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, p)| p),
    };
    match explicit {
        Some(p) => p.parse().ok(),
        None => match scheme {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        },
    }
}

fn group_runs(tenant: &str, rules: &RuleSet, records: &[Record]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut index: HashMap<(String, String, Kind), usize> = HashMap::new();
    let mut members: Vec<Vec<&Record>> = Vec::new();
    let mut scratch = Vec::new();
    for rec in records {
        let kind = Kind::of(&rec.observation);
        let key = (rec.asset.clone(), rec.job_id.clone(), kind);
        let i = *index.entry(key).or_insert_with(|| {
            runs.push(Run {
                asset: rec.asset.clone(),
                job_id: rec.job_id.clone(),
                kind,
                observed_ms: 0,
                produced: Vec::new(),
                section: Section::new(),
            });
            members.push(Vec::new());
            runs.len() - 1
        });
        let run = &mut runs[i];
        run.observed_ms = run.observed_ms.max(rec.observed_ms);
        members[i].push(rec);
        scratch.clear();
        rules.evaluate_into(rec, &mut scratch);
        let (port, not_after_ms) = facts(rec);
        for f in scratch.drain(..) {
            let id = finding_id(tenant, &f.asset, &f.rule_id, &f.location);
            // One observation per (rule, location) per run: keep the latest.
            if let Some(p) = run.produced.iter_mut().find(|p| p.id == id) {
                if f.observed_ms >= p.finding.observed_ms {
                    *p = Produced {
                        id,
                        finding: f,
                        port,
                        not_after_ms,
                    };
                }
            } else {
                run.produced.push(Produced {
                    id,
                    finding: f,
                    port,
                    not_after_ms,
                });
            }
        }
    }
    for (run, recs) in runs.iter_mut().zip(members) {
        run.section = changes::section_of(recs);
    }
    runs
}

fn change_event(
    tenant: &str,
    run_asset: &str,
    origin: &str,
    item: &DriftItem,
    check: &str,
    job_id: &str,
    at_ms: u64,
) -> ChangeEvent {
    let id = hex::encode(
        &h(&[
            tenant,
            run_asset,
            origin,
            item.change.as_str(),
            &item.subject,
            item.after.as_deref().unwrap_or(""),
        ])[..16],
    );
    ChangeEvent {
        id,
        tenant: tenant.to_string(),
        asset: run_asset.to_string(),
        change: item.change,
        subject: item.subject.clone(),
        before: item.before.clone(),
        after: item.after.clone(),
        check: check.to_string(),
        job_id: job_id.to_string(),
        detected_ms: at_ms,
        port: changes::subject_port(&item.subject),
    }
}

/// Writes a change event and queues it for indexing.
pub fn put_change(
    tx: &dyn FindingTx,
    ev: &ChangeEvent,
    version: &[u8],
) -> Result<(), FindingError> {
    let key = change_key(&ev.tenant, ev.detected_ms, &ev.id);
    tx.put(Space::Changes, &key, &enc(ev)?)?;
    tx.put(Space::Outbox, &outbox_key(b'c', &key), version)?;
    // Alerting (issue 5): the alert event commits with the change event.
    crate::alerts::outbox::enqueue_change(tx, ev)
}

/// Writes a finding and queues it for indexing.
pub fn put_finding(
    tx: &dyn FindingTx,
    f: &FindingRecord,
    version: &[u8],
) -> Result<(), FindingError> {
    let key = tenant_key(&f.tenant, &f.id);
    tx.put(Space::Findings, &key, &enc(f)?)?;
    tx.put(Space::Outbox, &outbox_key(b'f', &key), version)
}

fn get_json<T: DeserializeOwned>(
    tx: &dyn FindingTx,
    space: Space,
    key: &[u8],
) -> Result<Option<T>, FindingError> {
    tx.get(space, key)?.map(|v| dec(key, &v)).transpose()
}

/// Evaluates and applies one batch atomically, advancing the agent's cursor to
/// `sequence`. A batch at or below the cursor is skipped, so re-running after a
/// crash is harmless. `version` tags the outbox entries written.
pub fn apply_batch(
    fs: &dyn FindingStore,
    rules: &RuleSet,
    tenant: &TenantId,
    agent: &AgentId,
    sequence: u64,
    records: &[Record],
    version: u64,
) -> Result<BatchEffects, FindingError> {
    let batch = EvaluatedBatch::new(rules, tenant, agent, sequence, records, version);
    let mut effects = BatchEffects::default();
    fs.transact(&mut |tx| {
        effects = apply_batch_tx(tx, &batch)?;
        Ok(())
    })?;
    Ok(effects)
}

/// Applies many batches in one transaction, each exactly as [`apply_batch`]
/// would (later batches see the earlier ones' writes). Sharing the commit
/// amortises its cost and writes a key touched by several batches only once.
pub fn apply_batches(
    fs: &dyn FindingStore,
    batches: &[EvaluatedBatch],
) -> Result<Vec<BatchEffects>, FindingError> {
    let mut effects = Vec::with_capacity(batches.len());
    fs.transact(&mut |tx| {
        effects.clear();
        for b in batches {
            effects.push(apply_batch_tx(tx, b)?);
        }
        Ok(())
    })?;
    Ok(effects)
}

/// A batch with its rules evaluated, ready to apply: evaluation happens once,
/// outside the transaction, which the backend may retry.
pub struct EvaluatedBatch {
    tenant: TenantId,
    agent: AgentId,
    sequence: u64,
    records: u64,
    runs: Vec<Run>,
    version: [u8; 8],
}

impl EvaluatedBatch {
    /// Evaluates `records` of the batch `sequence` of `agent` against `rules`.
    pub fn new(
        rules: &RuleSet,
        tenant: &TenantId,
        agent: &AgentId,
        sequence: u64,
        records: &[Record],
        version: u64,
    ) -> Self {
        Self {
            tenant: tenant.clone(),
            agent: agent.clone(),
            sequence,
            records: records.len() as u64,
            runs: group_runs(tenant.as_str(), rules, records),
            version: version.to_be_bytes(),
        }
    }
}

/// Applies one evaluated batch inside `tx`: lifecycle, change events, assessed
/// kinds and the agent's cursor. Skipped when the cursor is already past it.
pub fn apply_batch_tx(
    tx: &dyn FindingTx,
    batch: &EvaluatedBatch,
) -> Result<BatchEffects, FindingError> {
    let t = batch.tenant.as_str();
    let (runs, version, sequence) = (&batch.runs, &batch.version, batch.sequence);
    let origin = format!("{}#{sequence}", batch.agent);
    let ckey = cursor_key(&batch.tenant, &batch.agent);
    let mut effects = BatchEffects::default();
    let done = tx
        .get(Space::Cursors, &ckey)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    if sequence <= done {
        return Ok(effects);
    }
    effects.applied = true;
    effects.records = batch.records;
    let mut kinds: Vec<String> =
        get_json(tx, Space::TenantKinds, t.as_bytes())?.unwrap_or_default();
    let kinds_before = kinds.len();
    for run in runs {
        let check = run.kind.as_str();
        if !kinds.iter().any(|k| k == check) {
            kinds.push(check.to_string());
        }
        apply_findings(tx, t, run, version, &mut effects)?;
        apply_changes(tx, t, run, &origin, version, &mut effects)?;
    }
    if kinds.len() != kinds_before {
        kinds.sort();
        tx.put(Space::TenantKinds, t.as_bytes(), &enc(&kinds)?)?;
    }
    tx.put(Space::Cursors, &ckey, &sequence.to_be_bytes())?;
    Ok(effects)
}

fn apply_findings(
    tx: &dyn FindingTx,
    t: &str,
    run: &Run,
    version: &[u8],
    effects: &mut BatchEffects,
) -> Result<(), FindingError> {
    let check = run.kind.as_str();
    let skey = scope_key(t, &run.asset, &run.job_id, check);
    let old_open: Vec<String> = get_json(tx, Space::OpenSets, &skey)?.unwrap_or_default();
    let mut open = Vec::with_capacity(run.produced.len());
    for p in &run.produced {
        let key = tenant_key(t, &p.id);
        let f = &p.finding;
        let mut alert = None;
        let rec = match get_json::<FindingRecord>(tx, Space::Findings, &key)? {
            None => {
                effects.new += 1;
                alert = Some(crate::alerts::EventKind::FindingNew);
                let mut r = FindingRecord {
                    id: p.id.clone(),
                    tenant: t.to_string(),
                    asset: f.asset.clone(),
                    rule_id: f.rule_id.clone(),
                    title: f.title.clone(),
                    severity: f.severity,
                    check: check.to_string(),
                    job_id: f.job_id.clone(),
                    location: f.location.clone(),
                    evidence: f.evidence.clone(),
                    remediation: f.remediation.clone(),
                    mappings: f.mappings.clone(),
                    state: FindingState::New,
                    first_seen_ms: f.observed_ms,
                    last_seen_ms: f.observed_ms,
                    resolved_ms: None,
                    reopened: 0,
                    port: p.port,
                    not_after_ms: p.not_after_ms,
                    suppression: None,
                    history: Vec::new(),
                };
                r.transition(FindingState::New, f.observed_ms);
                r
            }
            Some(mut r) => {
                match r.state {
                    FindingState::New => r.transition(FindingState::Open, f.observed_ms),
                    FindingState::Resolved => {
                        effects.reopened += 1;
                        alert = Some(crate::alerts::EventKind::FindingReopened);
                        r.reopened += 1;
                        r.transition(FindingState::Reopened, f.observed_ms);
                    }
                    FindingState::Open | FindingState::Reopened => {}
                }
                if r.job_id != f.job_id || r.check != check {
                    // It moves to this run's scope: leave the old scope's open set.
                    let old = scope_key(t, &r.asset, &r.job_id, &r.check);
                    if let Some(mut ids) = get_json::<Vec<String>>(tx, Space::OpenSets, &old)? {
                        ids.retain(|i| *i != r.id);
                        tx.put(Space::OpenSets, &old, &enc(&ids)?)?;
                    }
                }
                r.first_seen_ms = r.first_seen_ms.min(f.observed_ms);
                r.last_seen_ms = r.last_seen_ms.max(f.observed_ms);
                r.job_id = f.job_id.clone();
                r.check = check.to_string();
                r.evidence = f.evidence.clone();
                r.title = f.title.clone();
                r.severity = f.severity;
                r.remediation = f.remediation.clone();
                r.mappings = f.mappings.clone();
                r.port = p.port;
                r.not_after_ms = p.not_after_ms;
                r
            }
        };
        put_finding(tx, &rec, version)?;
        // Alerting (issue 5): the alert event commits with the finding.
        if let Some(kind) = alert {
            crate::alerts::outbox::enqueue_finding(tx, &rec, kind)?;
        }
        open.push(p.id.clone());
    }
    for id in old_open.iter().filter(|id| !open.contains(id)) {
        let key = tenant_key(t, id);
        if let Some(mut r) = get_json::<FindingRecord>(tx, Space::Findings, &key)?
            && r.state != FindingState::Resolved
        {
            effects.resolved += 1;
            r.resolved_ms = Some(run.observed_ms);
            r.transition(FindingState::Resolved, run.observed_ms);
            put_finding(tx, &r, version)?;
        }
    }
    if open.is_empty() {
        tx.remove(Space::OpenSets, &skey)
    } else {
        tx.put(Space::OpenSets, &skey, &enc(&open)?)
    }
}

fn apply_changes(
    tx: &dyn FindingTx,
    t: &str,
    run: &Run,
    origin: &str,
    version: &[u8],
    effects: &mut BatchEffects,
) -> Result<(), FindingError> {
    let check = run.kind.as_str();
    let akey = asset_key(t, &run.asset);
    let section_key = format!("{check}/{}", run.job_id);
    let mut events = Vec::new();
    let state = match get_json::<AssetState>(tx, Space::Assets, &akey)? {
        None => {
            let appeared = DriftItem {
                change: ChangeType::AssetAppeared,
                subject: run.asset.clone(),
                before: None,
                after: None,
            };
            events.push(change_event(
                t,
                &run.asset,
                origin,
                &appeared,
                "",
                &run.job_id,
                run.observed_ms,
            ));
            changes::new_asset(
                t,
                &run.asset,
                &section_key,
                run.section.clone(),
                run.observed_ms,
            )
        }
        Some(mut st) => {
            let (fresh, appeared) =
                changes::apply_section(&mut st, &section_key, run.section.clone(), run.observed_ms);
            if appeared {
                let item = DriftItem {
                    change: ChangeType::AssetAppeared,
                    subject: run.asset.clone(),
                    before: None,
                    after: None,
                };
                events.push(change_event(
                    t,
                    &run.asset,
                    origin,
                    &item,
                    "",
                    &run.job_id,
                    run.observed_ms,
                ));
            }
            for item in &fresh {
                events.push(change_event(
                    t,
                    &run.asset,
                    origin,
                    item,
                    check,
                    &run.job_id,
                    run.observed_ms,
                ));
            }
            st
        }
    };
    tx.put(Space::Assets, &akey, &enc(&state)?)?;
    for ev in &events {
        put_change(tx, ev, version)?;
    }
    effects.changes += events.len() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{PortObservation, PortState};

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

    fn all(fs: &dyn FindingStore, t: &str) -> Vec<FindingRecord> {
        fs.scan(Space::Findings, &tenant_prefix(t), None, false, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, v)| dec(&k, &v).unwrap())
            .collect()
    }

    #[test]
    fn lifecycle_new_open_resolved_reopened_and_idempotent_replay() {
        let dir = tempfile::tempdir().unwrap();
        let fs = SledFindingStore::open(sled::open(dir.path()).unwrap()).unwrap();
        let rules = RuleSet::builtin().unwrap();
        let (t, a) = (
            TenantId::new("acme").unwrap(),
            AgentId::new("ag-1").unwrap(),
        );
        let b1 = vec![port(23, "telnet", 10)];
        let e = apply_batch(&fs, &rules, &t, &a, 1, &b1, 1).unwrap();
        assert!(e.applied && e.new >= 1, "{e:?}");
        let ids: Vec<_> = all(&fs, "acme").iter().map(|f| f.id.clone()).collect();
        assert!(
            all(&fs, "acme")
                .iter()
                .all(|f| f.state == FindingState::New)
        );
        // Replaying the same sequence changes nothing.
        let again = apply_batch(&fs, &rules, &t, &a, 1, &b1, 2).unwrap();
        assert!(!again.applied);
        apply_batch(&fs, &rules, &t, &a, 2, &[port(23, "telnet", 20)], 3).unwrap();
        assert!(
            all(&fs, "acme")
                .iter()
                .all(|f| f.state == FindingState::Open)
        );
        // Telnet closed, SSH open instead: the telnet findings resolve.
        let e = apply_batch(&fs, &rules, &t, &a, 3, &[port(22, "ssh", 30)], 4).unwrap();
        assert!(e.resolved >= 1);
        for f in all(&fs, "acme").iter().filter(|f| ids.contains(&f.id)) {
            assert_eq!(f.state, FindingState::Resolved, "{}", f.rule_id);
            assert_eq!(f.resolved_ms, Some(30));
        }
        let e = apply_batch(&fs, &rules, &t, &a, 4, &[port(23, "telnet", 40)], 5).unwrap();
        assert!(e.reopened >= 1);
        let f = all(&fs, "acme")
            .into_iter()
            .find(|f| f.id == ids[0])
            .unwrap();
        assert_eq!(f.state, FindingState::Reopened);
        assert_eq!((f.first_seen_ms, f.last_seen_ms, f.reopened), (10, 40, 1));
        let states: Vec<_> = f.history.iter().map(|h| h.state).collect();
        assert_eq!(
            states,
            [
                FindingState::New,
                FindingState::Open,
                FindingState::Resolved,
                FindingState::Reopened
            ]
        );
        assert_eq!(cursor(&fs, &t, &a).unwrap(), 4);
        // A different tenant's identical observation is a different finding.
        assert_ne!(
            finding_id("acme", "10.0.0.1", "r", "l"),
            finding_id("globex", "10.0.0.1", "r", "l")
        );
    }

    #[test]
    fn other_check_kinds_and_jobs_do_not_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let fs = SledFindingStore::open(sled::open(dir.path()).unwrap()).unwrap();
        let rules = RuleSet::builtin().unwrap();
        let (t, a) = (
            TenantId::new("acme").unwrap(),
            AgentId::new("ag-1").unwrap(),
        );
        apply_batch(&fs, &rules, &t, &a, 1, &[port(23, "telnet", 10)], 1).unwrap();
        let mut other_job = port(22, "ssh", 20);
        other_job.job_id = "other".into();
        let e = apply_batch(&fs, &rules, &t, &a, 2, &[other_job], 2).unwrap();
        assert_eq!(e.resolved, 0);
        assert!(
            all(&fs, "acme")
                .iter()
                .all(|f| f.state != FindingState::Resolved)
        );
    }

    #[test]
    fn batches_in_one_transaction_match_one_by_one() {
        let rules = RuleSet::builtin().unwrap();
        let t = TenantId::new("acme").unwrap();
        let (a, b) = (AgentId::new("ag-1").unwrap(), AgentId::new("ag-2").unwrap());
        let plan: Vec<(&AgentId, u64, Vec<Record>)> = vec![
            (&a, 1, vec![port(23, "telnet", 10), port(3389, "rdp", 10)]),
            (&b, 1, vec![port(23, "telnet", 11)]),
            (&a, 2, vec![port(22, "ssh", 20)]),
            (&a, 3, vec![port(23, "telnet", 30)]),
            (&b, 2, vec![port(445, "smb", 31)]),
            // Already applied in the same transaction: skipped.
            (&a, 2, vec![port(80, "http", 40)]),
        ];
        let one = tempfile::tempdir().unwrap();
        let one = SledFindingStore::open(sled::open(one.path()).unwrap()).unwrap();
        let mut expected = Vec::new();
        for (i, (agent, seq, recs)) in plan.iter().enumerate() {
            expected.push(apply_batch(&one, &rules, &t, agent, *seq, recs, i as u64).unwrap());
        }
        let many = tempfile::tempdir().unwrap();
        let many = SledFindingStore::open(sled::open(many.path()).unwrap()).unwrap();
        let evaluated: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(i, (agent, seq, recs))| {
                EvaluatedBatch::new(&rules, &t, agent, *seq, recs, i as u64)
            })
            .collect();
        assert_eq!(apply_batches(&many, &evaluated).unwrap(), expected);
        assert!(expected.iter().any(|e| e.resolved > 0) && expected.iter().any(|e| e.reopened > 0));
        assert!(!expected[5].applied);
        for space in [
            Space::Findings,
            Space::OpenSets,
            Space::Assets,
            Space::Changes,
            Space::Cursors,
            Space::TenantKinds,
        ] {
            let all = |fs: &SledFindingStore| fs.scan(space, b"", None, false, usize::MAX).unwrap();
            assert_eq!(all(&one), all(&many), "{space:?}");
        }
    }

    #[test]
    fn url_ports() {
        assert_eq!(url_port("https://example.org/"), Some(443));
        assert_eq!(url_port("http://127.0.0.1:8080/x"), Some(8080));
        assert_eq!(url_port("http://[::1]:81/"), Some(81));
        assert_eq!(url_port("http://[::1]/"), Some(80));
        assert_eq!(url_port("nonsense"), None);
    }
}
