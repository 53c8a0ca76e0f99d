//! Compliance posture: per tenant and framework, each control's status.
//!
//! * **fail** — at least one active (unresolved, unsuppressed) finding maps to it;
//! * **pass** — some rule mapping to it evaluates an observation kind the tenant
//!   has sent (so the control was assessed) and no active finding maps to it;
//! * **not assessed** — otherwise.
//!
//! A history entry is stored whenever a recomputation differs from the last
//! stored one, so drift over time stays visible.

use std::collections::{BTreeMap, BTreeSet};

use rules::RuleSet;
use serde::{Deserialize, Serialize};

use super::store::{FindingError, FindingStore, Space};
use super::{FindingRecord, dec, enc, tenant_prefix};

/// Status of one control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlStatus {
    /// Assessed, no active finding.
    Pass,
    /// At least one active finding.
    Fail,
    /// No observation the tenant sent could assess it.
    NotAssessed,
}

/// One control's posture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPosture {
    /// Control id.
    pub control: String,
    /// Control title.
    pub title: String,
    /// Status.
    pub status: ControlStatus,
    /// Active findings mapped to it.
    pub active_findings: u64,
    /// Up to five of their ids.
    pub sample: Vec<String>,
}

/// Posture of a tenant against one framework.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posture {
    /// Tenant.
    pub tenant: String,
    /// Framework key.
    pub framework: String,
    /// Framework name.
    pub framework_name: String,
    /// When computed, ms since the epoch.
    pub computed_ms: u64,
    /// Controls passing.
    pub pass: u32,
    /// Controls failing.
    pub fail: u32,
    /// Controls not assessed.
    pub not_assessed: u32,
    /// Every control of the framework, in catalog order.
    pub controls: Vec<ControlPosture>,
}

/// A stored posture snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureSnapshot {
    /// When recorded, ms since the epoch.
    pub at_ms: u64,
    /// Controls passing.
    pub pass: u32,
    /// Controls failing.
    pub fail: u32,
    /// Controls not assessed.
    pub not_assessed: u32,
    /// Ids of the failing controls.
    pub failing: Vec<String>,
    /// Active findings mapped to the framework's controls (a finding counts once per control).
    pub active_findings: u64,
}

impl Posture {
    fn snapshot(&self) -> PostureSnapshot {
        PostureSnapshot {
            at_ms: self.computed_ms,
            pass: self.pass,
            fail: self.fail,
            not_assessed: self.not_assessed,
            failing: self
                .controls
                .iter()
                .filter(|c| c.status == ControlStatus::Fail)
                .map(|c| c.control.clone())
                .collect(),
            active_findings: self.controls.iter().map(|c| c.active_findings).sum(),
        }
    }
}

/// Active findings of a tenant: `(framework, control) → ids`.
fn active_by_control(
    fs: &dyn FindingStore,
    tenant: &str,
    now_ms: u64,
) -> Result<BTreeMap<(String, String), Vec<String>>, FindingError> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let prefix = tenant_prefix(tenant);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = fs.scan(Space::Findings, &prefix, after.as_deref(), false, 4096)?;
        let Some(last) = page.last() else { break };
        after = Some(last.0.clone());
        for (k, v) in &page {
            let f: FindingRecord = dec(k, v)?;
            if f.active(now_ms) {
                for m in &f.mappings {
                    out.entry((m.framework.clone(), m.control.clone()))
                        .or_default()
                        .push(f.id.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Observation kinds the tenant has sent.
pub fn tenant_kinds(fs: &dyn FindingStore, tenant: &str) -> Result<BTreeSet<String>, FindingError> {
    Ok(match fs.get(Space::TenantKinds, tenant.as_bytes())? {
        Some(v) => dec::<Vec<String>>(tenant.as_bytes(), &v)?
            .into_iter()
            .collect(),
        None => BTreeSet::new(),
    })
}

fn compute_with(
    rules: &RuleSet,
    tenant: &str,
    framework: &str,
    kinds: &BTreeSet<String>,
    active: &BTreeMap<(String, String), Vec<String>>,
    now_ms: u64,
) -> Result<Posture, FindingError> {
    let fw = rules
        .frameworks()
        .iter()
        .find(|f| f.key == framework)
        .ok_or_else(|| {
            let known: Vec<&str> = rules.frameworks().iter().map(|f| f.key.as_str()).collect();
            FindingError::NotFound(format!(
                "framework {framework:?} (known: {})",
                known.join(", ")
            ))
        })?;
    let assessed: BTreeSet<&str> = rules
        .rules()
        .iter()
        .filter(|r| kinds.contains(r.applies_to.as_str()))
        .flat_map(|r| r.mappings.iter())
        .filter(|m| m.framework == framework)
        .map(|m| m.control.as_str())
        .collect();
    let mut p = Posture {
        tenant: tenant.to_string(),
        framework: framework.to_string(),
        framework_name: fw.name.clone(),
        computed_ms: now_ms,
        pass: 0,
        fail: 0,
        not_assessed: 0,
        controls: Vec::new(),
    };
    for c in rules.controls().iter().filter(|c| c.framework == framework) {
        let ids = active.get(&(framework.to_string(), c.id.clone()));
        let status = if ids.is_some_and(|v| !v.is_empty()) {
            p.fail += 1;
            ControlStatus::Fail
        } else if assessed.contains(c.id.as_str()) {
            p.pass += 1;
            ControlStatus::Pass
        } else {
            p.not_assessed += 1;
            ControlStatus::NotAssessed
        };
        p.controls.push(ControlPosture {
            control: c.id.clone(),
            title: c.title.clone(),
            status,
            active_findings: ids.map_or(0, |v| v.len() as u64),
            sample: ids
                .map(|v| v.iter().take(5).cloned().collect())
                .unwrap_or_default(),
        });
    }
    Ok(p)
}

/// Current posture of `tenant` against `framework`.
pub fn compute(
    fs: &dyn FindingStore,
    rules: &RuleSet,
    tenant: &str,
    framework: &str,
    now_ms: u64,
) -> Result<Posture, FindingError> {
    let kinds = tenant_kinds(fs, tenant)?;
    let active = active_by_control(fs, tenant, now_ms)?;
    compute_with(rules, tenant, framework, &kinds, &active, now_ms)
}

fn history_prefix(tenant: &str, framework: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(framework.as_bytes());
    k.push(b'/');
    k
}

/// Stored history of `tenant` against `framework`, newest first.
pub fn history(
    fs: &dyn FindingStore,
    tenant: &str,
    framework: &str,
    limit: usize,
) -> Result<Vec<PostureSnapshot>, FindingError> {
    fs.scan(
        Space::Posture,
        &history_prefix(tenant, framework),
        None,
        true,
        limit,
    )?
    .into_iter()
    .map(|(k, v)| dec(&k, &v))
    .collect()
}

/// Recomputes every framework's posture for `tenant` and stores a history
/// entry where it differs from the latest one. Returns entries written.
pub fn record_history(
    fs: &dyn FindingStore,
    rules: &RuleSet,
    tenant: &str,
    now_ms: u64,
) -> Result<usize, FindingError> {
    let kinds = tenant_kinds(fs, tenant)?;
    let active = active_by_control(fs, tenant, now_ms)?;
    let mut written = 0;
    for fw in rules.frameworks() {
        let p = compute_with(rules, tenant, &fw.key, &kinds, &active, now_ms)?;
        let snap = p.snapshot();
        let last = history(fs, tenant, &fw.key, 1)?.into_iter().next();
        let same = last.is_some_and(|l| {
            (
                l.pass,
                l.fail,
                l.not_assessed,
                &l.failing,
                l.active_findings,
            ) == (
                snap.pass,
                snap.fail,
                snap.not_assessed,
                &snap.failing,
                snap.active_findings,
            )
        });
        if !same {
            let mut key = history_prefix(tenant, &fw.key);
            key.extend_from_slice(&now_ms.to_be_bytes());
            let value = enc(&snap)?;
            fs.transact(&mut |tx| tx.put(Space::Posture, &key, &value))?;
            written += 1;
        }
    }
    Ok(written)
}
