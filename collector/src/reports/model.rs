//! What a compliance report is made of, gathered once from the findings state
//! so every output format renders the same facts.

use std::collections::BTreeMap;

use protocol::TenantId;
use rules::{Framework, Mapping, RuleSet, Severity};
use serde::{Deserialize, Serialize};

use crate::findings::changes::ChangeEvent;
use crate::findings::pipeline::Pipeline;
use crate::findings::posture::{self, Posture};
use crate::findings::{FindingError, FindingRecord, FindingState, Space, dec, tenant_prefix};

/// A rule as reports describe it (SARIF rules, remediation text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// Rule id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Why it matters.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// Observation kind it evaluates.
    pub check: String,
    /// How to fix it.
    pub remediation: String,
    /// Further reading.
    pub references: Vec<String>,
    /// Framework controls.
    pub mappings: Vec<Mapping>,
}

/// Everything one report shows, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportInput {
    /// Tenant.
    pub tenant: String,
    /// Framework reported against.
    pub framework: Framework,
    /// Generation time, ms since the epoch.
    pub generated_ms: u64,
    /// Version of the generating collector.
    pub product_version: String,
    /// Posture per control.
    pub posture: Posture,
    /// Unresolved findings (suppressed ones included), most severe first.
    pub findings: Vec<FindingRecord>,
    /// Recent change events, newest first.
    pub changes: Vec<ChangeEvent>,
    /// Every rule of the rule set, by id.
    pub rules: Vec<RuleInfo>,
}

/// Active findings per severity, most severe first.
pub const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

/// Orders findings most severe first, then by asset, rule and id (stable output).
pub fn sort_findings(findings: &mut [FindingRecord]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.asset.cmp(&b.asset))
            .then_with(|| a.rule_id.cmp(&b.rule_id))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Rule descriptions of a rule set, sorted by id.
pub fn rule_infos(rules: &RuleSet) -> Vec<RuleInfo> {
    let mut out: Vec<RuleInfo> = rules
        .rules()
        .iter()
        .map(|r| RuleInfo {
            id: r.id.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            severity: r.severity,
            check: r.applies_to.as_str().to_string(),
            remediation: r.remediation.clone(),
            references: r.references.clone(),
            mappings: r.mappings.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

impl ReportInput {
    /// Gathers a report of `tenant` against `framework` as of `now_ms`.
    pub fn gather(
        pipeline: &Pipeline,
        tenant: &TenantId,
        framework: &str,
        now_ms: u64,
        max_changes: usize,
    ) -> Result<Self, FindingError> {
        let rules = pipeline.rules();
        let fs = pipeline.finding_store().as_ref();
        let posture = posture::compute(fs, rules, tenant.as_str(), framework, now_ms)?;
        let fw = rules
            .frameworks()
            .iter()
            .find(|f| f.key == framework)
            .cloned()
            .ok_or_else(|| FindingError::NotFound(format!("framework {framework}")))?;
        let mut findings = Vec::new();
        let prefix = tenant_prefix(tenant.as_str());
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = fs.scan(Space::Findings, &prefix, after.as_deref(), false, 4096)?;
            let Some(last) = page.last() else { break };
            after = Some(last.0.clone());
            for (k, v) in &page {
                let f: FindingRecord = dec(k, v)?;
                if f.state != FindingState::Resolved {
                    findings.push(f);
                }
            }
        }
        sort_findings(&mut findings);
        let changes = pipeline.changes(tenant, None, max_changes)?;
        Ok(Self {
            tenant: tenant.to_string(),
            framework: fw,
            generated_ms: now_ms,
            product_version: env!("CARGO_PKG_VERSION").to_string(),
            posture,
            findings,
            changes,
            rules: rule_infos(rules),
        })
    }

    /// Control ids of this report's framework that `f` maps to.
    pub fn controls_of<'a>(&self, f: &'a FindingRecord) -> Vec<&'a str> {
        f.mappings
            .iter()
            .filter(|m| m.framework == self.framework.key)
            .map(|m| m.control.as_str())
            .collect()
    }

    /// Whether `f` counts against compliance at generation time.
    pub fn is_active(&self, f: &FindingRecord) -> bool {
        f.active(self.generated_ms)
    }

    /// Posture score: passing share of the assessed controls, 0..=100; `None` when none was assessed.
    pub fn score(&self) -> Option<u32> {
        let assessed = self.posture.pass + self.posture.fail;
        (assessed > 0).then(|| (self.posture.pass * 100 + assessed / 2) / assessed)
    }

    /// Active findings per severity, most severe first.
    pub fn active_by_severity(&self) -> Vec<(Severity, u64)> {
        let mut m: BTreeMap<Severity, u64> = BTreeMap::new();
        for f in self.findings.iter().filter(|f| self.is_active(f)) {
            *m.entry(f.severity).or_default() += 1;
        }
        SEVERITIES
            .iter()
            .map(|s| (*s, m.get(s).copied().unwrap_or(0)))
            .collect()
    }

    /// The `n` most serious active findings: severity, then mapped to the framework, then oldest.
    pub fn top_risks(&self, n: usize) -> Vec<&FindingRecord> {
        let mut v: Vec<&FindingRecord> =
            self.findings.iter().filter(|f| self.is_active(f)).collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| {
                    let (ma, mb) = (
                        self.controls_of(a).is_empty(),
                        self.controls_of(b).is_empty(),
                    );
                    ma.cmp(&mb)
                })
                .then_with(|| a.first_seen_ms.cmp(&b.first_seen_ms))
                .then_with(|| a.id.cmp(&b.id))
        });
        v.truncate(n);
        v
    }

    /// Rule description by id.
    pub fn rule(&self, id: &str) -> Option<&RuleInfo> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The finding's state as reports name it: `suppressed` / `accepted_risk` while in force.
    pub fn status_of(&self, f: &FindingRecord) -> &'static str {
        match &f.suppression {
            Some(s) if s.active(self.generated_ms) => match s.kind {
                crate::findings::SuppressionKind::Suppressed => "suppressed",
                crate::findings::SuppressionKind::AcceptedRisk => "accepted_risk",
            },
            _ => f.state.as_str(),
        }
    }
}

/// RFC 3339 UTC timestamp with seconds.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}
