//! Authorisation of scan targets against the tenant's [`Scope`].
//!
//! Every target is checked twice: by its literal form (host-name pattern or
//! address block) before anything touches the network, and again by every
//! address it resolves to, so a name inside the scope that points outside the
//! authorised CIDRs is never scanned.

use std::net::IpAddr;

use ipnet::IpNet;
use protocol::{PortRange, Scope};

/// Largest address block a single target may expand to; guards against a
/// typo such as `/8` turning into millions of probes.
pub const MAX_EXPANDED_ADDRESSES: u128 = 65_536;

/// Why a target, port or scope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The scope itself contains an unparseable CIDR.
    #[error("scope contains an invalid CIDR {0:?}")]
    InvalidScopeCidr(String),
    /// The target string is not a host, address, `host:port` or CIDR.
    #[error("invalid target {0:?}")]
    InvalidTarget(String),
    /// The host name matches no host-name entry of the scope.
    #[error("host name {0} is outside the scan scope")]
    HostnameOutOfScope(String),
    /// The address lies in no CIDR of the scope.
    #[error("address {0} is outside the scan scope")]
    AddressOutOfScope(IpAddr),
    /// The address block is not contained in a CIDR of the scope.
    #[error("address block {0} is outside the scan scope")]
    NetworkOutOfScope(IpNet),
    /// The address block is larger than [`MAX_EXPANDED_ADDRESSES`].
    #[error("address block {0} is too large to scan ({1} addresses)")]
    NetworkTooLarge(IpNet, u128),
    /// The name resolved, but to no address inside the scope's CIDRs.
    #[error("{name} resolves to {addresses:?}, none inside the scan scope")]
    ResolvedOutOfScope {
        /// Name that was resolved.
        name: String,
        /// Addresses it resolved to.
        addresses: Vec<IpAddr>,
    },
    /// The port lies in no port range of the scope.
    #[error("port {0} is outside the scan scope")]
    PortOutOfScope(u16),
}

/// A parsed target as written in a job or on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// A single address.
    Ip(IpAddr),
    /// A host name (lower-cased, without trailing dot).
    Host(String),
    /// An address block to expand.
    Net(IpNet),
}

/// A target plus the port it was written with, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTarget {
    /// Host, address or block.
    pub spec: TargetSpec,
    /// Explicit port (`host:443`), if given.
    pub port: Option<u16>,
}

impl ParsedTarget {
    /// Parses `host`, `host:port`, `1.2.3.4[:port]`, `[::1]:port`, `::1` or `10.0.0.0/24`.
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        let s = raw.trim();
        let invalid = || ScopeError::InvalidTarget(raw.to_string());
        if s.is_empty() {
            return Err(invalid());
        }
        if s.contains('/') {
            let net: IpNet = s.parse().map_err(|_| invalid())?;
            return Ok(Self {
                spec: TargetSpec::Net(net.trunc()),
                port: None,
            });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self {
                spec: TargetSpec::Ip(ip),
                port: None,
            });
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (addr, tail) = rest.split_once(']').ok_or_else(invalid)?;
            let ip: IpAddr = addr.parse().map_err(|_| invalid())?;
            let port = match tail {
                "" => None,
                t => {
                    Some(parse_port(t.strip_prefix(':').ok_or_else(invalid)?).ok_or_else(invalid)?)
                }
            };
            return Ok(Self {
                spec: TargetSpec::Ip(ip),
                port,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(parse_port(p).ok_or_else(invalid)?)),
            None => (s, None),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Self {
                spec: TargetSpec::Ip(ip),
                port,
            });
        }
        let host = normalize_host(host);
        if !is_valid_hostname(&host) {
            return Err(invalid());
        }
        Ok(Self {
            spec: TargetSpec::Host(host),
            port,
        })
    }
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

fn normalize_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn is_valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A host-name entry of the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any name strictly below `example.com`.
    Subdomains(String),
}

impl HostPattern {
    fn parse(raw: &str) -> Self {
        let h = normalize_host(raw.trim());
        match h.strip_prefix("*.") {
            Some(base) => Self::Subdomains(base.to_string()),
            None => Self::Exact(h),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(h) => h == name,
            Self::Subdomains(base) => name
                .strip_suffix(base.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
        }
    }
}

/// A validated, ready-to-query form of [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePolicy {
    cidrs: Vec<IpNet>,
    hostnames: Vec<HostPattern>,
    ports: Vec<PortRange>,
}

impl ScopePolicy {
    /// Validates a scope; an unparseable CIDR refuses the whole scope rather than silently narrowing it.
    pub fn new(scope: &Scope) -> Result<Self, ScopeError> {
        let cidrs = scope
            .cidrs
            .iter()
            .map(|c| parse_cidr(c).ok_or_else(|| ScopeError::InvalidScopeCidr(c.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            cidrs,
            hostnames: scope
                .hostnames
                .iter()
                .map(|h| HostPattern::parse(h))
                .collect(),
            ports: scope.ports.clone(),
        })
    }

    /// The implicit scope of a one-shot scan: exactly the named target and the given ports.
    pub fn for_explicit_target(target: &ParsedTarget, ports: &[PortRange]) -> Self {
        let (cidrs, hostnames) = match &target.spec {
            TargetSpec::Ip(ip) => (vec![IpNet::from(*ip)], vec![]),
            TargetSpec::Net(net) => (vec![*net], vec![]),
            TargetSpec::Host(h) => (vec![], vec![HostPattern::Exact(h.clone())]),
        };
        Self {
            cidrs,
            hostnames,
            ports: ports.to_vec(),
        }
    }

    /// Adds the addresses a one-shot target's name resolved to, since the user named the host itself.
    pub fn allow_addresses(&mut self, addrs: &[IpAddr]) {
        self.cidrs.extend(addrs.iter().map(|a| IpNet::from(*a)));
    }

    /// Whether `ip` lies in one of the scope's CIDRs.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.cidrs.iter().any(|n| n.contains(&ip))
    }

    /// Whether `name` matches one of the scope's host-name entries.
    pub fn allows_hostname(&self, name: &str) -> bool {
        let name = normalize_host(name);
        self.hostnames.iter().any(|p| p.matches(&name))
    }

    /// Whether `port` lies in one of the scope's port ranges.
    pub fn allows_port(&self, port: u16) -> bool {
        self.ports.iter().any(|r| r.contains(port))
    }

    /// Refuses a port outside the scope.
    pub fn check_port(&self, port: u16) -> Result<(), ScopeError> {
        if self.allows_port(port) {
            Ok(())
        } else {
            Err(ScopeError::PortOutOfScope(port))
        }
    }

    /// First check, before any resolution: the literal target must be in scope.
    pub fn check_target(&self, target: &ParsedTarget) -> Result<(), ScopeError> {
        if let Some(p) = target.port {
            self.check_port(p)?;
        }
        match &target.spec {
            TargetSpec::Ip(ip) => {
                if self.allows_ip(*ip) {
                    Ok(())
                } else {
                    Err(ScopeError::AddressOutOfScope(*ip))
                }
            }
            TargetSpec::Host(h) => {
                if self.allows_hostname(h) {
                    Ok(())
                } else {
                    Err(ScopeError::HostnameOutOfScope(h.clone()))
                }
            }
            TargetSpec::Net(net) => {
                if !self.cidrs.iter().any(|c| c.contains(net)) {
                    return Err(ScopeError::NetworkOutOfScope(*net));
                }
                let size = net_size(net);
                if size > MAX_EXPANDED_ADDRESSES {
                    return Err(ScopeError::NetworkTooLarge(*net, size));
                }
                Ok(())
            }
        }
    }

    /// Second check, after resolution: keeps only in-scope addresses and refuses the name when none are.
    pub fn check_resolved(&self, name: &str, addrs: &[IpAddr]) -> Result<Vec<IpAddr>, ScopeError> {
        let allowed: Vec<IpAddr> = addrs
            .iter()
            .map(|a| canonical_ip(*a))
            .filter(|a| self.allows_ip(*a))
            .collect();
        if allowed.is_empty() {
            return Err(ScopeError::ResolvedOutOfScope {
                name: name.to_string(),
                addresses: addrs.to_vec(),
            });
        }
        if allowed.len() < addrs.len() {
            tracing::warn!(%name, ?addrs, ?allowed, "skipping resolved addresses outside the scan scope");
        }
        Ok(allowed)
    }
}

/// Accepts `10.0.0.0/24` as well as a bare address meaning a single host.
fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Maps IPv4-mapped IPv6 addresses to IPv4 so `::ffff:10.0.0.1` cannot slip past an IPv4 scope.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn net_size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// Every host address of a block (the caller has bounded its size with [`ScopePolicy::check_target`]).
pub fn expand_net(net: &IpNet) -> Vec<IpAddr> {
    net.hosts().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> ScopePolicy {
        ScopePolicy::new(&Scope {
            cidrs: vec!["127.0.0.0/8".into(), "::1/128".into(), "10.1.2.3".into()],
            hostnames: vec!["localhost".into(), "*.example.com".into()],
            ports: vec![PortRange {
                start: 1,
                end: 1024,
            }],
        })
        .expect("valid scope")
    }

    #[test]
    fn parses_target_forms() {
        let t = ParsedTarget::parse("Example.COM.:443").expect("host:port");
        assert_eq!(t.spec, TargetSpec::Host("example.com".into()));
        assert_eq!(t.port, Some(443));
        let t = ParsedTarget::parse("[::1]:8443").expect("v6 with port");
        assert_eq!(t.spec, TargetSpec::Ip("::1".parse().expect("ip")));
        assert_eq!(t.port, Some(8443));
        assert_eq!(
            ParsedTarget::parse("::1").expect("bare v6").spec,
            TargetSpec::Ip("::1".parse().expect("ip"))
        );
        assert!(matches!(
            ParsedTarget::parse("10.0.0.7/24").expect("net").spec,
            TargetSpec::Net(n) if n.to_string() == "10.0.0.0/24"
        ));
        for bad in [
            "",
            "host:0",
            "host:99999",
            "bad host",
            "-a.com",
            "[::1",
            "a..b",
        ] {
            assert!(
                ParsedTarget::parse(bad).is_err(),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let s = scope();
        assert!(s.allows_hostname("a.example.com"));
        assert!(s.allows_hostname("x.y.EXAMPLE.com."));
        assert!(!s.allows_hostname("example.com"));
        assert!(!s.allows_hostname("badexample.com"));
        assert!(!s.allows_hostname("example.com.evil.net"));
    }

    #[test]
    fn refuses_out_of_scope_targets() {
        let s = scope();
        let check = |t: &str| s.check_target(&ParsedTarget::parse(t).expect("parse"));
        assert!(check("127.0.0.1").is_ok());
        assert!(check("10.1.2.3").is_ok());
        assert_eq!(
            check("10.1.2.4"),
            Err(ScopeError::AddressOutOfScope(
                "10.1.2.4".parse().expect("ip")
            ))
        );
        assert!(matches!(
            check("evil.net"),
            Err(ScopeError::HostnameOutOfScope(_))
        ));
        assert_eq!(
            check("127.0.0.1:2000"),
            Err(ScopeError::PortOutOfScope(2000))
        );
        assert!(check("127.0.0.0/24").is_ok());
        assert!(matches!(
            check("10.1.2.0/24"),
            Err(ScopeError::NetworkOutOfScope(_))
        ));
        assert!(matches!(
            check("127.0.0.0/8"),
            Err(ScopeError::NetworkTooLarge(_, _))
        ));
        // An IPv4-mapped address is judged as the IPv4 address it carries.
        assert!(check("::ffff:10.1.2.4").is_err());
        assert!(check("::ffff:127.0.0.1").is_ok());
    }

    #[test]
    fn resolution_is_checked_against_cidrs() {
        let s = scope();
        let inside: IpAddr = "127.0.0.5".parse().expect("ip");
        let outside: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(matches!(
            s.check_resolved("www.example.com", &[outside]),
            Err(ScopeError::ResolvedOutOfScope { .. })
        ));
        assert_eq!(
            s.check_resolved("www.example.com", &[outside, inside]),
            Ok(vec![inside])
        );
    }

    #[test]
    fn invalid_scope_cidr_is_refused() {
        let err = ScopePolicy::new(&Scope {
            cidrs: vec!["10.0.0.0/33".into()],
            ..Scope::default()
        });
        assert_eq!(err, Err(ScopeError::InvalidScopeCidr("10.0.0.0/33".into())));
    }

    #[test]
    fn expands_blocks() {
        let net: IpNet = "127.0.0.0/30".parse().expect("net");
        assert_eq!(expand_net(&net).len(), 2);
        let one: IpNet = "127.0.0.9/32".parse().expect("net");
        assert_eq!(
            expand_net(&one),
            vec!["127.0.0.9".parse::<IpAddr>().expect("ip")]
        );
        let empty = ScopePolicy::new(&Scope::default()).expect("empty scope");
        assert!(!empty.allows_ip("127.0.0.1".parse().expect("ip")));
        assert!(!empty.allows_port(80));
    }
}
