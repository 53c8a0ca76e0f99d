//! Tenant and agent identifiers and the certificate SAN URI that carries them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ProtocolError;

/// Prefix of the SAN URI that names an agent inside its client certificate.
pub const AGENT_URI_PREFIX: &str = "urn:vigil:agent:";

fn validate(value: &str) -> Result<(), ProtocolError> {
    let err = |reason| {
        Err(ProtocolError::InvalidIdentifier {
            value: value.to_string(),
            reason,
        })
    };
    if value.is_empty() || value.len() > 63 {
        return err("must be 1 to 63 characters long");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return err("only lowercase letters, digits and '-' are allowed");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return err("must not start or end with '-'");
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(value: impl Into<String>) -> Result<Self, ProtocolError> {
                let value = value.into();
                validate(&value)?;
                Ok(Self(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // pad() honours width and alignment, so ids line up in tables.
                f.pad(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ProtocolError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl bincode::Encode for $name {
            fn encode<E: bincode::enc::Encoder>(
                &self,
                encoder: &mut E,
            ) -> Result<(), bincode::error::EncodeError> {
                bincode::Encode::encode(&self.0, encoder)
            }
        }

        // Decoding re-validates so no malformed identifier enters from the wire.
        impl<C> bincode::Decode<C> for $name {
            fn decode<D: bincode::de::Decoder<Context = C>>(
                decoder: &mut D,
            ) -> Result<Self, bincode::error::DecodeError> {
                let raw: String = bincode::Decode::decode(decoder)?;
                Self::new(raw).map_err(|e| bincode::error::DecodeError::OtherString(e.to_string()))
            }
        }
        bincode::impl_borrow_decode!($name);

        impl std::str::FromStr for $name {
            type Err = ProtocolError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// A tenant: one client organisation; nothing crosses tenants.
    TenantId
);
id_type!(
    /// An enrolled agent, unique within the collector.
    AgentId
);

/// Who an agent is, as proven by its client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentIdentity {
    /// Tenant the agent belongs to.
    pub tenant: TenantId,
    /// The agent itself.
    pub agent: AgentId,
}

impl AgentIdentity {
    /// The SAN URI written into the agent's certificate.
    pub fn to_uri(&self) -> String {
        format!("{AGENT_URI_PREFIX}{}:{}", self.tenant, self.agent)
    }

    /// Parses a SAN URI written by [`AgentIdentity::to_uri`].
    pub fn from_uri(uri: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::InvalidIdentifier {
            value: uri.to_string(),
            reason: "not an agent URI of the form urn:vigil:agent:<tenant>:<agent>",
        };
        let rest = uri.strip_prefix(AGENT_URI_PREFIX).ok_or_else(bad)?;
        let (tenant, agent) = rest.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            tenant: TenantId::new(tenant)?,
            agent: AgentId::new(agent)?,
        })
    }
}

impl fmt::Display for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated() {
        assert!(TenantId::new("acme").is_ok());
        assert!(TenantId::new("acme-eu-2").is_ok());
        for bad in ["", "Acme", "a:b", "-x", "x-", "a b", &"a".repeat(64)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn uri_round_trips_and_rejects_garbage() {
        let id = AgentIdentity {
            tenant: TenantId::new("acme").unwrap(),
            agent: AgentId::new("ag-0011aabb").unwrap(),
        };
        assert_eq!(id.to_uri(), "urn:vigil:agent:acme:ag-0011aabb");
        assert_eq!(AgentIdentity::from_uri(&id.to_uri()).unwrap(), id);
        for bad in [
            "urn:vigil:agent:acme",
            "urn:other:agent:acme:x",
            "urn:vigil:agent:acme:x:y",
            "urn:vigil:agent::x",
        ] {
            assert!(AgentIdentity::from_uri(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn serde_rejects_invalid_ids() {
        let r: Result<TenantId, _> = serde_json::from_str("\"BAD\"");
        assert!(r.is_err());
    }
}
