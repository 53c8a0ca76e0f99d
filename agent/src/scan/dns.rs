//! DNS and mail-security check: SPF, DMARC, CAA, MX and DNSSEC signing.
//!
//! Every query goes to the one nameserver the operator configured: the
//! resolver is built from an explicit configuration, never from the host's
//! `/etc/resolv.conf` or hosts file, so results are reproducible and a test
//! can point the agent at its own loopback server.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::{Edns, Message, Query};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{TokioResolver, net::NetError};
use protocol::{DmarcRecord, DnsObservation, SpfRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// RFC 7208 section 4.6.4: at most 10 DNS-querying terms per SPF evaluation.
pub const SPF_LOOKUP_LIMIT: u32 = 10;

/// Why the DNS check failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The domain is not a valid DNS name.
    #[error("invalid domain name {0:?}")]
    InvalidName(String),
    /// The resolver could not be built.
    #[error("cannot configure resolver: {0}")]
    Config(String),
    /// A query failed (timeout, SERVFAIL, refused...), as opposed to an empty answer.
    #[error("query {name} {rtype} failed: {reason}")]
    Query {
        /// Name queried.
        name: String,
        /// Record type queried.
        rtype: String,
        /// Failure.
        reason: String,
    },
}

/// A resolver pinned to one nameserver.
pub struct DnsClient {
    resolver: TokioResolver,
    nameserver: SocketAddr,
    timeout: Duration,
}

impl DnsClient {
    /// Builds a resolver that only ever talks to `nameserver`.
    pub fn new(nameserver: SocketAddr, timeout: Duration) -> Result<Self, DnsError> {
        let mut ns = NameServerConfig::udp_and_tcp(nameserver.ip());
        for c in &mut ns.connections {
            c.port = nameserver.port();
        }
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.edns0 = true;
        // Results must reflect the server now, not an earlier scan.
        opts.cache_size = 0;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| DnsError::Config(e.to_string()))?;
        Ok(Self {
            resolver,
            nameserver,
            timeout,
        })
    }

    /// Records of `rtype` at `name`; an empty answer (NXDOMAIN/NODATA) is `Ok(vec![])`.
    pub async fn lookup(&self, name: &Name, rtype: RecordType) -> Result<Vec<RData>, DnsError> {
        match self.resolver.lookup(name.clone(), rtype).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect()),
            Err(e) if is_empty_answer(&e) => Ok(Vec::new()),
            Err(e) => Err(DnsError::Query {
                name: name.to_string(),
                rtype: rtype.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// TXT strings at `name`, each record's character-strings concatenated (RFC 7208 3.3).
    pub async fn txt(&self, name: &Name) -> Result<Vec<String>, DnsError> {
        Ok(self
            .lookup(name, RecordType::TXT)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Whether the zone of `name` is DNSSEC-signed: the SOA (or the NODATA
    /// proof for a non-apex name) comes with RRSIGs when asked with the DO bit,
    /// or a validating nameserver marks the answer authenticated (AD).
    pub async fn dnssec_signed(&self, name: &Name) -> Result<bool, DnsError> {
        let response = self.raw_query(name, RecordType::SOA).await?;
        let has_rrsig = response
            .answers
            .iter()
            .chain(&response.authorities)
            .any(|r| r.record_type() == RecordType::RRSIG);
        Ok(has_rrsig || response.metadata.authentic_data)
    }

    /// One query with the DNSSEC OK bit, over UDP with TCP fallback when truncated.
    /// The stub resolver hides RRSIGs and the AD bit, hence this direct exchange.
    async fn raw_query(&self, name: &Name, rtype: RecordType) -> Result<Message, DnsError> {
        let fail = |reason: String| DnsError::Query {
            name: name.to_string(),
            rtype: rtype.to_string(),
            reason,
        };
        let mut msg = Message::query();
        msg.add_query(Query::query(name.clone(), rtype));
        msg.metadata.recursion_desired = true;
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true);
        edns.set_max_payload(1232);
        msg.set_edns(edns);
        let wire = msg.to_vec().map_err(|e| fail(e.to_string()))?;
        let id = msg.metadata.id;

        let udp = async {
            let bind: SocketAddr = if self.nameserver.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(bind).await?;
            sock.connect(self.nameserver).await?;
            sock.send(&wire).await?;
            let mut buf = vec![0u8; 4096];
            loop {
                let n = sock.recv(&mut buf).await?;
                if let Ok(m) = Message::from_vec(&buf[..n])
                    && m.metadata.id == id
                {
                    return Ok::<Message, std::io::Error>(m);
                }
            }
        };
        let response = tokio::time::timeout(self.timeout, udp)
            .await
            .map_err(|_| fail("timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        if !response.metadata.truncation {
            return Ok(response);
        }
        let tcp = async {
            let mut s = TcpStream::connect(self.nameserver).await?;
            let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&wire);
            s.write_all(&framed).await?;
            let len = s.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            s.read_exact(&mut buf).await?;
            Message::from_vec(&buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
        };
        tokio::time::timeout(self.timeout, tcp)
            .await
            .map_err(|_| fail("timed out over TCP".into()))?
            .map_err(|e| fail(e.to_string()))
    }
}

fn is_empty_answer(e: &NetError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

fn fqdn(domain: &str) -> Result<Name, DnsError> {
    let d = domain.trim().trim_end_matches('.');
    Name::from_ascii(format!("{d}.")).map_err(|_| DnsError::InvalidName(domain.to_string()))
}

/// A/AAAA addresses of `name` via `nameserver`.
pub async fn resolve_ips(
    name: &str,
    nameserver: SocketAddr,
    timeout: Duration,
) -> Result<Vec<IpAddr>, DnsError> {
    let client = DnsClient::new(nameserver, timeout)?;
    let name = fqdn(name)?;
    let mut out = Vec::new();
    for rtype in [RecordType::A, RecordType::AAAA] {
        for d in client.lookup(&name, rtype).await? {
            match d {
                RData::A(a) => out.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                _ => {}
            }
        }
    }
    Ok(out)
}

fn is_spf(txt: &str) -> bool {
    // Byte-wise: TXT data is arbitrary and slicing a str could split a character.
    let t = txt.trim_start().as_bytes();
    t.len() >= 6 && t[..6].eq_ignore_ascii_case(b"v=spf1") && t.get(6).is_none_or(|&c| c == b' ')
}

/// Terms of an SPF record after the version tag.
fn spf_terms(raw: &str) -> impl Iterator<Item = &str> {
    raw.split_ascii_whitespace().skip(1)
}

fn strip_qualifier(term: &str) -> (Option<char>, &str) {
    match term.chars().next() {
        Some(q @ ('+' | '-' | '~' | '?')) => (Some(q), &term[1..]),
        _ => (None, term),
    }
}

/// Qualifier of the `all` mechanism (`+` when written bare).
pub fn spf_all_qualifier(raw: &str) -> Option<String> {
    spf_terms(raw).find_map(|t| {
        let (q, m) = strip_qualifier(t);
        m.eq_ignore_ascii_case("all")
            .then(|| q.unwrap_or('+').to_string())
    })
}

/// DNS-querying terms of one record, and the domains whose SPF records they pull in.
pub fn spf_local_lookups(raw: &str) -> (u32, Vec<String>) {
    let mut count = 0;
    let mut nested = Vec::new();
    for term in spf_terms(raw) {
        let (_, m) = strip_qualifier(term);
        let lower = m.to_ascii_lowercase();
        let name = lower.split(['/']).next().unwrap_or("");
        let (mech, arg) = match name.split_once([':', '=']) {
            Some((k, v)) => (k, Some(v)),
            None => (name, None),
        };
        match mech {
            "include" | "redirect" => {
                count += 1;
                if let Some(d) = arg.filter(|d| !d.contains('%')) {
                    nested.push(d.to_string());
                }
            }
            "a" | "mx" | "ptr" | "exists" => count += 1,
            _ => {}
        }
    }
    (count, nested)
}

/// Total SPF lookups for `domain`'s record, following include/redirect
/// recursively as an evaluator would (a record included twice counts twice).
/// Exact up to the limit; once it is exceeded counting stops, so the value is
/// then a lower bound that is still above [`SPF_LOOKUP_LIMIT`].
async fn spf_total_lookups(client: &DnsClient, raw: &str) -> Result<u32, DnsError> {
    let (mut total, nested) = spf_local_lookups(raw);
    let mut stack: Vec<(String, u32)> = nested.into_iter().map(|d| (d, 1)).collect();
    while let Some((d, depth)) = stack.pop() {
        if total > SPF_LOOKUP_LIMIT || depth > SPF_LOOKUP_LIMIT {
            break;
        }
        let Ok(name) = fqdn(&d) else { continue };
        let records: Vec<String> = client
            .txt(&name)
            .await?
            .into_iter()
            .filter(|t| is_spf(t))
            .collect();
        if let [only] = records.as_slice() {
            let (n, nested) = spf_local_lookups(only);
            total += n;
            stack.extend(nested.into_iter().map(|d| (d, depth + 1)));
        }
    }
    Ok(total)
}

/// Parses a DMARC record's tags.
pub fn parse_dmarc(raw: &str) -> DmarcRecord {
    let mut policy = None;
    let mut pct = 100;
    let mut has_rua = false;
    for tag in raw.split(';').map(str::trim) {
        let Some((k, v)) = tag.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "p" => policy = Some(v.trim().to_ascii_lowercase()),
            "pct" => pct = v.trim().parse().unwrap_or(100),
            "rua" => has_rua = !v.trim().is_empty(),
            _ => {}
        }
    }
    DmarcRecord {
        raw: raw.to_string(),
        policy,
        pct,
        has_rua,
    }
}

/// The CAA record set that governs `name`: its own, or the closest ancestor's (RFC 8659 section 3).
async fn relevant_caa(client: &DnsClient, name: &Name) -> Result<Vec<String>, DnsError> {
    let mut current = name.clone();
    loop {
        let found = match client.lookup(&current, RecordType::CAA).await {
            Ok(found) => found,
            // The name itself must answer; an ancestor outside the configured server's authority may refuse.
            Err(e) if current != *name => {
                tracing::debug!(%current, error = %e, "CAA climb stopped");
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let records: Vec<String> = found
            .into_iter()
            .filter_map(|d| match d {
                RData::CAA(c) => Some(format!(
                    "{} {} {}",
                    c.flags(),
                    c.tag,
                    String::from_utf8_lossy(&c.value)
                )),
                _ => None,
            })
            .collect();
        if !records.is_empty() || current.num_labels() <= 1 {
            return Ok(records);
        }
        current = current.base_name();
    }
}

/// Runs the DNS/mail check for `domain` against `nameserver`.
pub async fn check(
    domain: &str,
    nameserver: SocketAddr,
    timeout: Duration,
) -> Result<DnsObservation, DnsError> {
    let client = DnsClient::new(nameserver, timeout)?;
    let name = fqdn(domain)?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();

    let spf_records: Vec<String> = client
        .txt(&name)
        .await?
        .into_iter()
        .filter(|t| is_spf(t))
        .collect();
    let spf = match spf_records.as_slice() {
        [raw] => Some(SpfRecord {
            raw: raw.clone(),
            all_qualifier: spf_all_qualifier(raw),
            dns_lookups: spf_total_lookups(&client, raw).await?,
        }),
        _ => None,
    };

    let dmarc_name = fqdn(&format!("_dmarc.{domain}"))?;
    let dmarc = client
        .txt(&dmarc_name)
        .await?
        .into_iter()
        .find(|t| t.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
        .map(|raw| parse_dmarc(&raw));

    let mut mx: Vec<(u16, String)> = client
        .lookup(&name, RecordType::MX)
        .await?
        .into_iter()
        .filter_map(|d| match d {
            RData::MX(m) => Some((
                m.preference,
                m.exchange.to_ascii().trim_end_matches('.').to_string(),
            )),
            _ => None,
        })
        .collect();
    mx.sort();

    Ok(DnsObservation {
        domain,
        spf_count: spf_records.len() as u32,
        spf,
        dmarc,
        caa: relevant_caa(&client, &name).await?,
        mx: mx.into_iter().map(|(p, h)| format!("{p} {h}")).collect(),
        dnssec_signed: client.dnssec_signed(&name).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_parsing() {
        assert!(is_spf("v=spf1 -all"));
        assert!(is_spf("V=SPF1"));
        assert!(!is_spf("v=spf10 -all"));
        assert!(!is_spf("google-site-verification=x"));
        assert!(!is_spf("v=spf€ -all"));
        assert!(!is_spf("v=sp€"));
        assert_eq!(spf_all_qualifier("v=spf1 mx -all").as_deref(), Some("-"));
        assert_eq!(spf_all_qualifier("v=spf1 all").as_deref(), Some("+"));
        assert_eq!(spf_all_qualifier("v=spf1 ~ALL").as_deref(), Some("~"));
        assert_eq!(spf_all_qualifier("v=spf1 redirect=_spf.a.test"), None);
        let (n, nested) = spf_local_lookups(
            "v=spf1 a mx:m.test/24 ip4:192.0.2.0/24 ptr exists:%{i}.x.test include:_spf.a.test -include:b.test redirect=c.test ~all",
        );
        assert_eq!(n, 7);
        assert_eq!(nested, vec!["_spf.a.test", "b.test", "c.test"]);
    }

    #[test]
    fn dmarc_parsing() {
        let d = parse_dmarc("v=DMARC1; p=Reject; pct=50; rua=mailto:d@a.test");
        assert_eq!(d.policy.as_deref(), Some("reject"));
        assert_eq!(d.pct, 50);
        assert!(d.has_rua);
        let d = parse_dmarc("v=DMARC1");
        assert_eq!((d.policy, d.pct, d.has_rua), (None, 100, false));
    }
}
