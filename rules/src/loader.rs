//! Reads rule files, validates them and builds a [`RuleSet`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::compile::compile;
use crate::error::{RuleError, SourcePos};
use crate::fields::Kind;
use crate::template::Template;
use crate::{Control, Framework, Mapping, Rule, RuleSet, Severity, ast, source};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    framework: Vec<RawFramework>,
    #[serde(default)]
    control: Vec<RawControl>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFramework {
    key: Spanned<String>,
    name: String,
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    framework: Spanned<String>,
    id: Spanned<String>,
    title: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    title: String,
    description: String,
    severity: Severity,
    applies_to: Kind,
    condition: Spanned<String>,
    remediation: String,
    location: Option<Spanned<String>>,
    evidence: Option<Spanned<String>>,
    #[serde(default)]
    mappings: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    #[serde(default)]
    unmapped: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    references: Vec<String>,
}

struct File<'a> {
    name: &'a str,
    text: &'a str,
}

impl File<'_> {
    fn pos(&self, offset: usize) -> SourcePos {
        SourcePos::at(self.name, self.text, offset)
    }

    /// Position of byte `decoded` inside the string value at `span`.
    fn pos_in(&self, span: std::ops::Range<usize>, decoded: usize) -> SourcePos {
        self.pos(source::file_offset(self.text, span, decoded))
    }
}

/// Reads every `*.toml` file directly inside `dir`, sorted by name.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, RuleError> {
    let io = |path: &Path, source| RuleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}

fn default_location(kind: Kind) -> &'static str {
    match kind {
        Kind::Port => "{port.ip}:{port.port}",
        Kind::Tls => "{tls.ip}:{tls.port} ({tls.server_name})",
        Kind::Http => "{http.url}",
        Kind::Dns => "{dns.domain}",
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.split('.').all(|seg| {
            !seg.is_empty()
                && seg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        })
}

/// Parses, validates and compiles `sources` (`(file name, text)`), catalog files first.
pub(crate) fn build(sources: &[(String, String)]) -> Result<RuleSet, RuleError> {
    let mut parsed = Vec::with_capacity(sources.len());
    for (name, text) in sources {
        let file = File { name, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| RuleError::Syntax {
            pos: file.pos(e.span().map_or(0, |s| s.start)),
            message: e.message().trim_end().to_string(),
        })?;
        parsed.push((file, raw));
    }

    // Catalog first, from every file, so rules may map to controls declared in
    // any file regardless of load order.
    let mut frameworks = Vec::new();
    let mut framework_at: HashMap<String, SourcePos> = HashMap::new();
    for (file, raw) in &parsed {
        for fw in &raw.framework {
            let pos = file.pos(fw.key.span().start);
            if let Some(first) = framework_at.get(fw.key.get_ref()) {
                return Err(RuleError::DuplicateControl {
                    pos,
                    what: format!("framework {}", fw.key.get_ref()),
                    first: first.clone(),
                });
            }
            framework_at.insert(fw.key.get_ref().clone(), pos);
            frameworks.push(Framework {
                key: fw.key.get_ref().clone(),
                name: fw.name.clone(),
                url: fw.url.clone(),
            });
        }
    }
    let mut controls = Vec::new();
    let mut control_at: HashMap<(String, String), (SourcePos, usize)> = HashMap::new();
    for (file, raw) in &parsed {
        for c in &raw.control {
            let fw = c.framework.get_ref();
            if !framework_at.contains_key(fw) {
                return Err(RuleError::UnknownFramework {
                    pos: file.pos(c.framework.span().start),
                    framework: fw.clone(),
                });
            }
            let key = (fw.clone(), c.id.get_ref().clone());
            let pos = file.pos(c.id.span().start);
            if let Some((first, _)) = control_at.get(&key) {
                return Err(RuleError::DuplicateControl {
                    pos,
                    what: format!("control {} {}", key.0, key.1),
                    first: first.clone(),
                });
            }
            control_at.insert(key, (pos, controls.len()));
            controls.push(Control {
                framework: fw.clone(),
                id: c.id.get_ref().clone(),
                title: c.title.clone(),
            });
        }
    }

    let mut rules: Vec<Rule> = Vec::new();
    let mut rule_at: HashMap<String, SourcePos> = HashMap::new();
    for (file, raw) in &parsed {
        for r in &raw.rule {
            let id = r.id.get_ref();
            let id_pos = file.pos(r.id.span().start);
            if !valid_id(id) {
                return Err(RuleError::InvalidId {
                    pos: id_pos,
                    id: id.clone(),
                });
            }
            if let Some(first) = rule_at.get(id) {
                return Err(RuleError::DuplicateRule {
                    pos: id_pos,
                    id: id.clone(),
                    first: first.clone(),
                });
            }

            let cond_src = r.condition.get_ref();
            let cond_err = |e: crate::ConditionError| RuleError::Condition {
                pos: file.pos_in(r.condition.span(), e.span.start),
                kind: e.kind,
            };
            let expr = ast::parse_condition(cond_src).map_err(cond_err)?;
            let compiled = compile(&expr, r.applies_to).map_err(cond_err)?;

            let template = |t: &Option<Spanned<String>>, default: &str| {
                let src = t.as_ref().map_or(default, |s| s.get_ref().as_str());
                Template::compile(src, r.applies_to)
                    .map(|compiled| (src.to_string(), compiled))
                    .map_err(|e| RuleError::Template {
                        pos: t
                            .as_ref()
                            .map_or_else(|| id_pos.clone(), |s| file.pos_in(s.span(), e.offset)),
                        message: e.message,
                    })
            };
            let (location, location_t) = template(&r.location, default_location(r.applies_to))?;
            let (evidence, evidence_t) = template(&r.evidence, "")?;

            let mut mappings = Vec::new();
            for (fw, ids) in &r.mappings {
                let fw_pos = file.pos(fw.span().start);
                if !framework_at.contains_key(fw.get_ref()) {
                    return Err(RuleError::UnknownFramework {
                        pos: fw_pos,
                        framework: fw.get_ref().clone(),
                    });
                }
                if ids.is_empty() {
                    return Err(RuleError::Mapping {
                        pos: fw_pos,
                        message: format!(
                            "empty mapping list for {}; list controls or explain under [rule.unmapped]",
                            fw.get_ref()
                        ),
                    });
                }
                for cid in ids {
                    let key = (fw.get_ref().clone(), cid.get_ref().clone());
                    let Some((_, idx)) = control_at.get(&key) else {
                        return Err(RuleError::UnknownControl {
                            pos: file.pos(cid.span().start),
                            framework: key.0,
                            control: key.1,
                        });
                    };
                    mappings.push(Mapping {
                        framework: key.0,
                        control: key.1,
                        title: controls[*idx].title.clone(),
                    });
                }
            }
            // Keep the catalog's framework order so findings list frameworks consistently.
            mappings.sort_by_key(|m| frameworks.iter().position(|f| f.key == m.framework));

            let mut unmapped = Vec::new();
            for (fw, reason) in &r.unmapped {
                let pos = file.pos(fw.span().start);
                if !framework_at.contains_key(fw.get_ref()) {
                    return Err(RuleError::UnknownFramework {
                        pos,
                        framework: fw.get_ref().clone(),
                    });
                }
                if r.mappings.contains_key(fw.get_ref().as_str()) {
                    return Err(RuleError::Mapping {
                        pos,
                        message: format!("{} is both mapped and listed as unmapped", fw.get_ref()),
                    });
                }
                unmapped.push((fw.get_ref().clone(), reason.clone()));
            }
            if mappings.is_empty() {
                return Err(RuleError::Mapping {
                    pos: id_pos,
                    message: format!("rule {id} maps to no framework control"),
                });
            }

            rule_at.insert(id.clone(), id_pos.clone());
            rules.push(Rule {
                id: id.clone(),
                title: r.title.clone(),
                description: r.description.clone(),
                severity: r.severity,
                applies_to: r.applies_to,
                condition: cond_src.clone(),
                remediation: r.remediation.clone(),
                location,
                evidence,
                mappings,
                unmapped,
                references: r.references.clone(),
                defined_at: id_pos,
                compiled,
                location_t,
                evidence_t,
            });
        }
    }

    let mut by_kind: [Vec<usize>; 4] = Default::default();
    for (i, r) in rules.iter().enumerate() {
        by_kind[r.applies_to.index()].push(i);
    }
    Ok(RuleSet {
        rules,
        by_kind,
        frameworks,
        controls,
    })
}
