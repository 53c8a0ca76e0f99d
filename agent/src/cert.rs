//! Reading the agent's own certificate: identity and validity.

use protocol::AgentIdentity;

use crate::error::AgentError;

/// Validity window of a certificate, seconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start.
    pub not_before: i64,
    /// End.
    pub not_after: i64,
}

impl Validity {
    /// Whether less than `fraction` of the lifetime is left at `now`.
    pub fn needs_renewal(&self, now: i64, fraction: f64) -> bool {
        let lifetime = (self.not_after - self.not_before).max(1) as f64;
        ((self.not_after - now) as f64) < lifetime * fraction
    }
}

fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, AgentError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| AgentError::Unexpected(format!("unparsable certificate: {e}")))
}

/// Validity of a DER certificate.
pub fn validity(der: &[u8]) -> Result<Validity, AgentError> {
    let c = parse(der)?;
    Ok(Validity {
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
    })
}

/// The agent identity in the certificate's SAN URI.
pub fn identity(der: &[u8]) -> Result<AgentIdentity, AgentError> {
    let c = parse(der)?;
    let san = c
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or_else(|| AgentError::Unexpected("certificate has no SAN".into()))?;
    san.value
        .general_names
        .iter()
        .find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => AgentIdentity::from_uri(u).ok(),
            _ => None,
        })
        .ok_or_else(|| AgentError::Unexpected("certificate names no agent".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_threshold() {
        let v = Validity {
            not_before: 0,
            not_after: 300,
        };
        assert!(!v.needs_renewal(100, 1.0 / 3.0));
        assert!(v.needs_renewal(201, 1.0 / 3.0));
        assert!(v.needs_renewal(400, 1.0 / 3.0));
    }
}
