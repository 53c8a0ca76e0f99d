//! Change detection: a normalised per-asset snapshot, the accepted baseline,
//! and typed change events for drift between the two.
//!
//! A snapshot is made of *sections*, one per scan scope `check/job` of the
//! asset; a scan run replaces its section wholesale. The first time a section
//! is seen it is adopted into the baseline as is (nothing to compare with), so
//! a new job never floods the log. Afterwards every run recomputes the drift
//! `diff(baseline, current)`; drift items that were not pending before become
//! change events. Accepting the baseline copies the current snapshot into it
//! and clears the drift.

use std::collections::{BTreeMap, BTreeSet};

use protocol::{Observation, Record};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A certificate with fewer days left than this is reported as expiring.
pub const CERT_EXPIRING_DAYS: i64 = 30;

/// Kinds of change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeType {
    /// A port is open that was not in the baseline.
    PortOpened,
    /// A baseline port is no longer open.
    PortClosed,
    /// The certificate of a TLS endpoint has a new fingerprint.
    CertRotated,
    /// The certificate of a TLS endpoint now expires within [`CERT_EXPIRING_DAYS`].
    CertExpiring,
    /// A TLS endpoint accepts a protocol version the baseline did not.
    TlsProtocolAdded,
    /// A security header present in the baseline is gone.
    HeaderRemoved,
    /// An SPF, DMARC, CAA, MX or DNSSEC fact of a domain changed.
    DnsRecordChanged,
    /// The service or product identified on an open port changed.
    ServiceChanged,
    /// The asset was observed for the first time (or again after disappearing).
    AssetAppeared,
    /// The asset has not been observed for the disappearance period.
    AssetDisappeared,
}

impl ChangeType {
    /// Every type, for parsing and documentation.
    pub const ALL: [ChangeType; 10] = [
        ChangeType::PortOpened,
        ChangeType::PortClosed,
        ChangeType::CertRotated,
        ChangeType::CertExpiring,
        ChangeType::TlsProtocolAdded,
        ChangeType::HeaderRemoved,
        ChangeType::DnsRecordChanged,
        ChangeType::ServiceChanged,
        ChangeType::AssetAppeared,
        ChangeType::AssetDisappeared,
    ];

    /// Upper-case name as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::PortOpened => "PORT_OPENED",
            ChangeType::PortClosed => "PORT_CLOSED",
            ChangeType::CertRotated => "CERT_ROTATED",
            ChangeType::CertExpiring => "CERT_EXPIRING",
            ChangeType::TlsProtocolAdded => "TLS_PROTOCOL_ADDED",
            ChangeType::HeaderRemoved => "HEADER_REMOVED",
            ChangeType::DnsRecordChanged => "DNS_RECORD_CHANGED",
            ChangeType::ServiceChanged => "SERVICE_CHANGED",
            ChangeType::AssetAppeared => "ASSET_APPEARED",
            ChangeType::AssetDisappeared => "ASSET_DISAPPEARED",
        }
    }
}

/// Normalised facts about one subject (port, endpoint, URL, domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Facts {
    /// An open port and what answers on it.
    Port {
        /// `service product`, `-` when unidentified.
        service: String,
    },
    /// A TLS endpoint.
    Tls {
        /// Leaf certificate fingerprint (empty without a handshake).
        fingerprint: String,
        /// Leaf certificate expiry, ms since the epoch.
        not_after_ms: i64,
        /// Whether the certificate was within [`CERT_EXPIRING_DAYS`] of expiry.
        expiring: bool,
        /// Accepted protocol versions.
        protocols: BTreeSet<String>,
    },
    /// Security headers of a URL.
    Http {
        /// Names of the security headers present.
        headers: BTreeSet<String>,
    },
    /// DNS and mail security facts of a domain.
    Dns {
        /// `record name → normalised value`.
        records: BTreeMap<String, String>,
    },
}

/// Facts of one scan scope, by subject.
pub type Section = BTreeMap<String, Facts>;

/// Normalised state of one asset: sections by `check/job`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Sections by scan scope.
    pub sections: BTreeMap<String, Section>,
}

impl Snapshot {
    /// SHA-256 over the canonical JSON encoding (maps are ordered), hex.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }
}

/// One difference between baseline and current snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DriftItem {
    /// What changed.
    pub change: ChangeType,
    /// Port, endpoint, URL header or domain record it is about.
    pub subject: String,
    /// Baseline value, when there is one.
    pub before: Option<String>,
    /// Current value, when there is one.
    pub after: Option<String>,
}

/// Snapshot, baseline and pending drift of one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetState {
    /// Tenant.
    pub tenant: String,
    /// Asset name as the scanner reported it.
    pub asset: String,
    /// Latest facts.
    pub current: Snapshot,
    /// Accepted facts.
    pub baseline: Snapshot,
    /// `diff(baseline, current)`.
    pub drift: Vec<DriftItem>,
    /// First observation, ms since the epoch.
    pub first_seen_ms: u64,
    /// Latest observation, ms since the epoch.
    pub last_observed_ms: u64,
    /// When the baseline was last accepted explicitly (0: the first snapshot).
    pub baseline_accepted_ms: u64,
    /// Whether an ASSET_DISAPPEARED event is outstanding.
    pub disappeared: bool,
}

/// A stored change event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Stable id (hash of tenant, asset, originating batch and drift item).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Asset.
    pub asset: String,
    /// What changed.
    pub change: ChangeType,
    /// Port, endpoint, URL header or domain record.
    pub subject: String,
    /// Baseline value.
    pub before: Option<String>,
    /// Current value.
    pub after: Option<String>,
    /// Check kind of the scan that revealed it (`port`, `tls`, `http`, `dns`; empty for asset events).
    pub check: String,
    /// Job of the scan that revealed it.
    pub job_id: String,
    /// When it was observed, ms since the epoch.
    pub detected_ms: u64,
    /// Port the change is about, when it is about one.
    pub port: Option<u16>,
}

fn join(v: &[String]) -> String {
    let mut v = v.to_vec();
    v.sort();
    v.join(", ")
}

/// Subject and facts of one record.
pub fn facts_of(rec: &Record) -> (String, Facts) {
    match &rec.observation {
        Observation::Port(p) => (
            format!("{}:{}", p.ip, p.port),
            Facts::Port {
                service: format!(
                    "{} {}",
                    p.service.as_deref().unwrap_or("-"),
                    p.product.as_deref().unwrap_or("-")
                ),
            },
        ),
        Observation::Tls(t) => {
            let (fingerprint, not_after_ms, expiring) = match &t.certificate {
                Some(c) => (
                    c.fingerprint_sha256.clone(),
                    c.not_after_ms,
                    c.days_left < CERT_EXPIRING_DAYS,
                ),
                None => (String::new(), 0, false),
            };
            (
                format!("{}:{} ({})", t.ip, t.port, t.server_name),
                Facts::Tls {
                    fingerprint,
                    not_after_ms,
                    expiring,
                    protocols: t
                        .protocols
                        .iter()
                        .map(|v| {
                            serde_json::to_value(v)
                                .ok()
                                .and_then(|j| j.as_str().map(str::to_string))
                                .unwrap_or_else(|| format!("{v:?}"))
                        })
                        .collect(),
                },
            )
        }
        Observation::Http(h) => {
            let mut headers = BTreeSet::new();
            for (name, v) in [
                ("strict-transport-security", &h.hsts),
                ("content-security-policy", &h.csp),
                ("x-frame-options", &h.x_frame_options),
                ("x-content-type-options", &h.x_content_type_options),
                ("referrer-policy", &h.referrer_policy),
                ("permissions-policy", &h.permissions_policy),
            ] {
                if v.is_some() {
                    headers.insert(name.to_string());
                }
            }
            (h.url.clone(), Facts::Http { headers })
        }
        Observation::Dns(d) => {
            let mut records = BTreeMap::new();
            records.insert(
                "spf".to_string(),
                d.spf.as_ref().map_or("-".to_string(), |s| s.raw.clone()),
            );
            records.insert(
                "dmarc".to_string(),
                d.dmarc.as_ref().map_or("-".to_string(), |s| s.raw.clone()),
            );
            records.insert("caa".to_string(), join(&d.caa));
            records.insert("mx".to_string(), join(&d.mx));
            records.insert(
                "dnssec".to_string(),
                if d.dnssec_signed {
                    "signed"
                } else {
                    "unsigned"
                }
                .to_string(),
            );
            (d.domain.clone(), Facts::Dns { records })
        }
    }
}

/// Builds the section of one scan run.
pub fn section_of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Section {
    records.into_iter().map(facts_of).collect()
}

fn item(
    change: ChangeType,
    subject: String,
    before: Option<String>,
    after: Option<String>,
) -> DriftItem {
    DriftItem {
        change,
        subject,
        before,
        after,
    }
}

fn diff_facts(subject: &str, base: Option<&Facts>, cur: Option<&Facts>, out: &mut Vec<DriftItem>) {
    let s = subject.to_string();
    match (base, cur) {
        (None, Some(Facts::Port { service })) => {
            out.push(item(ChangeType::PortOpened, s, None, Some(service.clone())))
        }
        (Some(Facts::Port { service }), None) => {
            out.push(item(ChangeType::PortClosed, s, Some(service.clone()), None))
        }
        (Some(Facts::Port { service: b }), Some(Facts::Port { service: c })) if b != c => {
            out.push(item(
                ChangeType::ServiceChanged,
                s,
                Some(b.clone()),
                Some(c.clone()),
            ))
        }
        (
            base,
            Some(Facts::Tls {
                fingerprint,
                not_after_ms,
                expiring,
                protocols,
            }),
        ) => {
            let base_tls = match base {
                Some(Facts::Tls {
                    fingerprint: bf,
                    expiring: be,
                    protocols: bp,
                    ..
                }) => Some((bf, *be, bp)),
                _ => None,
            };
            if let Some((bf, _, bp)) = base_tls {
                if bf != fingerprint {
                    out.push(item(
                        ChangeType::CertRotated,
                        s.clone(),
                        Some(bf.clone()),
                        Some(fingerprint.clone()),
                    ));
                }
                for p in protocols.difference(bp) {
                    out.push(item(
                        ChangeType::TlsProtocolAdded,
                        format!("{s} {p}"),
                        None,
                        Some(p.clone()),
                    ));
                }
            }
            let already = base_tls.is_some_and(|(bf, be, _)| be && bf == fingerprint);
            if *expiring && !already {
                out.push(item(
                    ChangeType::CertExpiring,
                    s,
                    None,
                    Some(format!("{fingerprint} not_after_ms={not_after_ms}")),
                ));
            }
        }
        (Some(Facts::Http { headers: b }), Some(Facts::Http { headers: c })) => {
            for h in b.difference(c) {
                out.push(item(
                    ChangeType::HeaderRemoved,
                    format!("{s} {h}"),
                    Some(h.clone()),
                    None,
                ));
            }
        }
        (Some(Facts::Dns { records: b }), Some(Facts::Dns { records: c })) => {
            for (name, cv) in c {
                let bv = b.get(name);
                if bv != Some(cv) {
                    out.push(item(
                        ChangeType::DnsRecordChanged,
                        format!("{s} {name}"),
                        bv.cloned(),
                        Some(cv.clone()),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// Every difference between `baseline` and `current`, sorted.
pub fn diff(baseline: &Snapshot, current: &Snapshot) -> Vec<DriftItem> {
    let mut out = Vec::new();
    for (key, cur) in &current.sections {
        // A section without a baseline is adopted, never diffed (see module docs).
        let Some(base) = baseline.sections.get(key) else {
            continue;
        };
        let subjects: BTreeSet<&String> = base.keys().chain(cur.keys()).collect();
        for s in subjects {
            diff_facts(s, base.get(s), cur.get(s), &mut out);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Applies one scan run's section to the asset state; returns the drift items
/// that are new (each becomes a change event) and whether the asset appeared.
pub fn apply_section(
    state: &mut AssetState,
    key: &str,
    section: Section,
    observed_ms: u64,
) -> (Vec<DriftItem>, bool) {
    let appeared = state.disappeared;
    state.disappeared = false;
    state.last_observed_ms = state.last_observed_ms.max(observed_ms);
    if !state.baseline.sections.contains_key(key) {
        state
            .baseline
            .sections
            .insert(key.to_string(), section.clone());
    }
    state.current.sections.insert(key.to_string(), section);
    let drift = diff(&state.baseline, &state.current);
    let fresh: Vec<DriftItem> = drift
        .iter()
        .filter(|d| !state.drift.contains(d))
        .cloned()
        .collect();
    state.drift = drift;
    (fresh, appeared)
}

/// A new asset state whose baseline is its first section.
pub fn new_asset(
    tenant: &str,
    asset: &str,
    key: &str,
    section: Section,
    observed_ms: u64,
) -> AssetState {
    let mut sections = BTreeMap::new();
    sections.insert(key.to_string(), section);
    let snap = Snapshot { sections };
    AssetState {
        tenant: tenant.to_string(),
        asset: asset.to_string(),
        current: snap.clone(),
        baseline: snap,
        drift: Vec::new(),
        first_seen_ms: observed_ms,
        last_observed_ms: observed_ms,
        baseline_accepted_ms: 0,
        disappeared: false,
    }
}

/// Port number at the end of a `ip:port` or `ip:port (name)` subject.
pub fn subject_port(subject: &str) -> Option<u16> {
    let head = subject.split(' ').next()?;
    head.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{PortObservation, PortState};

    fn port(p: u16, service: &str) -> Record {
        Record {
            asset: "h".into(),
            job_id: "j".into(),
            observed_ms: 1,
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

    #[test]
    fn drift_is_reported_once_and_cleared_by_accepting() {
        let first = section_of(&[port(22, "ssh"), port(80, "http")]);
        let mut st = new_asset("t", "h", "port/j", first, 1);
        let (fresh, _) = apply_section(
            &mut st,
            "port/j",
            section_of(&[port(22, "ssh"), port(80, "http")]),
            2,
        );
        assert!(fresh.is_empty());
        let changed = section_of(&[port(22, "telnet"), port(3389, "rdp")]);
        let (fresh, _) = apply_section(&mut st, "port/j", changed.clone(), 3);
        let kinds: Vec<_> = fresh
            .iter()
            .map(|d| (d.change, d.subject.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (ChangeType::PortOpened, "10.0.0.1:3389"),
                (ChangeType::PortClosed, "10.0.0.1:80"),
                (ChangeType::ServiceChanged, "10.0.0.1:22"),
            ]
        );
        // The same drift again is not news.
        let (fresh, _) = apply_section(&mut st, "port/j", changed, 4);
        assert!(fresh.is_empty());
        assert_eq!(st.drift.len(), 3);
        // Accepting moves the baseline; nothing is pending.
        st.baseline = st.current.clone();
        assert!(diff(&st.baseline, &st.current).is_empty());
        assert_eq!(st.baseline.hash(), st.current.hash());
    }

    #[test]
    fn a_new_section_is_adopted_not_diffed() {
        let mut st = new_asset("t", "h", "port/a", section_of(&[port(22, "ssh")]), 1);
        let (fresh, _) = apply_section(&mut st, "port/b", section_of(&[port(8080, "http")]), 2);
        assert!(fresh.is_empty());
        assert_eq!(subject_port("10.0.0.1:8443 (example.org)"), Some(8443));
        assert_eq!(subject_port("[::1]:443"), Some(443));
    }
}
