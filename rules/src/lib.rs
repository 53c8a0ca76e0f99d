//! Compliance rules: a small condition language over scanner observations,
//! rule files in TOML that map findings to compliance frameworks, and the
//! engine that evaluates them.
//!
//! ```
//! let rules = rules::RuleSet::builtin().expect("shipped rules compile");
//! assert!(rules.rules().len() >= 40);
//! ```
//!
//! The file format and the condition language are documented in `rules/README.md`.

mod ast;
mod compile;
mod error;
mod fields;
mod glob;
mod lexer;
mod loader;
mod source;
mod template;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use ast::{Expr, Func, Literal, MAX_DEPTH, Operand, parse_condition};
pub use error::{ConditionError, ConditionErrorKind, RuleError, SourcePos};
pub use fields::{FIELDS, FieldInfo, FieldType, Kind};
pub use lexer::{CmpOp, KEYWORDS, Span};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: worth knowing, not a weakness by itself.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical: fix immediately.
    Critical,
}

impl Severity {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compliance framework declared with `[[framework]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Framework {
    /// Key used in `[rule.mappings]` (`nis2`, `iso27001`...).
    pub key: String,
    /// Full name.
    pub name: String,
    /// Where the framework text is published, if given.
    pub url: Option<String>,
}

/// A control of a framework declared with `[[control]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Framework key.
    pub framework: String,
    /// Control identifier as the framework writes it (`A.8.24`, `CC6.7`, `21(2)(h)`).
    pub id: String,
    /// Control title (or, where the framework has none, a faithful summary).
    pub title: String,
}

/// One framework control a finding maps to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mapping {
    /// Framework key.
    pub framework: String,
    /// Control identifier.
    pub control: String,
    /// Control title.
    pub title: String,
}

/// A rule's verdict on one observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Id of the rule that fired.
    pub rule_id: String,
    /// Rule title.
    pub title: String,
    /// Rule severity.
    pub severity: Severity,
    /// Asset of the observation.
    pub asset: String,
    /// Job that produced the observation (empty for one-shot scans).
    pub job_id: String,
    /// What distinguishes this finding from others of the same rule on the asset.
    pub location: String,
    /// Rendered evidence.
    pub evidence: String,
    /// How to fix it.
    pub remediation: String,
    /// Framework controls the rule maps to.
    pub mappings: Vec<Mapping>,
    /// When the observation was made, ms since the Unix epoch.
    pub observed_ms: u64,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique dotted id, e.g. `tls.cert.expired`.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// Why it matters.
    pub description: String,
    /// Severity of its findings.
    pub severity: Severity,
    /// Observation kind it evaluates.
    pub applies_to: Kind,
    /// Condition source text.
    pub condition: String,
    /// How to fix findings.
    pub remediation: String,
    /// Location template source (the kind's default when the file has none).
    pub location: String,
    /// Evidence template source.
    pub evidence: String,
    /// Framework controls, in file order.
    pub mappings: Vec<Mapping>,
    /// Frameworks deliberately not mapped, with the reason given in the file.
    pub unmapped: Vec<(String, String)>,
    /// Further reading.
    pub references: Vec<String>,
    /// Where the rule was defined.
    pub defined_at: SourcePos,
    compiled: compile::Node,
    location_t: template::Template,
    evidence_t: template::Template,
}

impl Rule {
    /// Whether the rule's condition holds for `rec` (false for other observation kinds).
    #[inline]
    pub fn matches(&self, rec: &protocol::Record) -> bool {
        Kind::of(&rec.observation) == self.applies_to && self.compiled.eval(rec)
    }

    /// Builds the finding for `rec`, without checking the condition.
    pub fn finding(&self, rec: &protocol::Record) -> Finding {
        Finding {
            rule_id: self.id.clone(),
            title: self.title.clone(),
            severity: self.severity,
            asset: rec.asset.clone(),
            job_id: rec.job_id.clone(),
            location: self.location_t.render(rec),
            evidence: self.evidence_t.render(rec),
            remediation: self.remediation.clone(),
            mappings: self.mappings.clone(),
            observed_ms: rec.observed_ms,
        }
    }
}

/// The builtin rule files, named as they appear in the repository.
const BUILTIN_CATALOG: (&str, &str) = (
    "rules/data/frameworks.toml",
    include_str!("../data/frameworks.toml"),
);
const BUILTIN_RULES: &[(&str, &str)] = &[
    ("rules/data/ports.toml", include_str!("../data/ports.toml")),
    ("rules/data/tls.toml", include_str!("../data/tls.toml")),
    ("rules/data/http.toml", include_str!("../data/http.toml")),
    ("rules/data/dns.toml", include_str!("../data/dns.toml")),
];

/// A compiled, immutable set of rules indexed by observation kind.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_kind: [Vec<usize>; 4],
    frameworks: Vec<Framework>,
    controls: Vec<Control>,
}

impl RuleSet {
    /// The shipped framework catalog and rules, compiled into the binary.
    pub fn builtin() -> Result<RuleSet, RuleError> {
        let mut sources = vec![(BUILTIN_CATALOG.0.to_string(), BUILTIN_CATALOG.1.to_string())];
        sources.extend(
            BUILTIN_RULES
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string())),
        );
        loader::build(&sources)
    }

    /// The shipped framework catalog plus every `*.toml` file of `dir` (no builtin rules).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<RuleSet, RuleError> {
        let mut sources = vec![(BUILTIN_CATALOG.0.to_string(), BUILTIN_CATALOG.1.to_string())];
        sources.extend(loader::read_dir(dir.as_ref())?);
        loader::build(&sources)
    }

    /// The builtin rules plus every `*.toml` file of `dir`; duplicate ids are an error.
    pub fn builtin_plus_dir(dir: impl AsRef<Path>) -> Result<RuleSet, RuleError> {
        let mut sources = vec![(BUILTIN_CATALOG.0.to_string(), BUILTIN_CATALOG.1.to_string())];
        sources.extend(
            BUILTIN_RULES
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string())),
        );
        sources.extend(loader::read_dir(dir.as_ref())?);
        loader::build(&sources)
    }

    /// Compiles in-memory rule files `(name, text)` on top of the builtin catalog.
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        files: &[(N, T)],
    ) -> Result<RuleSet, RuleError> {
        let mut sources = vec![(BUILTIN_CATALOG.0.to_string(), BUILTIN_CATALOG.1.to_string())];
        sources.extend(
            files
                .iter()
                .map(|(n, t)| (n.as_ref().to_string(), t.as_ref().to_string())),
        );
        loader::build(&sources)
    }

    /// All rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with `id`, if any.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Rules that apply to observations of `kind`.
    pub fn rules_for(&self, kind: Kind) -> impl Iterator<Item = &Rule> {
        self.by_kind[kind.index()].iter().map(|&i| &self.rules[i])
    }

    /// Declared frameworks.
    pub fn frameworks(&self) -> &[Framework] {
        &self.frameworks
    }

    /// Declared controls.
    pub fn controls(&self) -> &[Control] {
        &self.controls
    }

    /// Findings of every rule whose condition holds for `rec`.
    pub fn evaluate(&self, rec: &protocol::Record) -> Vec<Finding> {
        let mut out = Vec::new();
        self.evaluate_into(rec, &mut out);
        out
    }

    /// Like [`RuleSet::evaluate`], appending to `out` to reuse its allocation.
    pub fn evaluate_into(&self, rec: &protocol::Record, out: &mut Vec<Finding>) {
        for &i in &self.by_kind[Kind::of(&rec.observation).index()] {
            let rule = &self.rules[i];
            if rule.compiled.eval(rec) {
                out.push(rule.finding(rec));
            }
        }
    }

    /// Number of rules whose condition holds for `rec`, without building findings.
    pub fn count_matches(&self, rec: &protocol::Record) -> usize {
        self.by_kind[Kind::of(&rec.observation).index()]
            .iter()
            .filter(|&&i| self.rules[i].compiled.eval(rec))
            .count()
    }
}
