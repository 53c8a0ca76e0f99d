//! Agent configuration: TOML file with defaults, validated before use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::uplink::UplinkConfig;

/// Invalid or unreadable configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is out of range or malformed.
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The agent's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Identity (keys, certificate) directory.
    pub state_dir: PathBuf,
    /// Spool directory; `<state_dir>/spool` when empty.
    pub spool_dir: Option<PathBuf>,
    /// Records per signed batch.
    pub batch_records: usize,
    /// Batches in flight before waiting for acks.
    pub window: u64,
    /// First reconnect delay.
    pub backoff_min: String,
    /// Longest reconnect delay.
    pub backoff_max: String,
    /// Renew the certificate when less than this fraction of its lifetime is left.
    pub renew_fraction: f64,
    /// How often to check whether the certificate needs renewal.
    pub renew_check: String,
    /// Nameserver (`IP:PORT`) for DNS checks and target resolution; system resolver when empty.
    pub nameserver: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("vigil-data/agent"),
            spool_dir: None,
            batch_records: 1000,
            window: 64,
            backoff_min: "250ms".into(),
            backoff_max: "30s".into(),
            renew_fraction: 1.0 / 3.0,
            renew_check: "1m".into(),
            nameserver: String::new(),
        }
    }
}

fn duration(key: &'static str, v: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v).map_err(|e| ConfigError::Invalid {
        key,
        message: format!("{v:?}: {e}"),
    })
}

impl AgentConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The spool directory in effect.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("spool"))
    }

    /// Parsed nameserver, if set.
    pub fn nameserver(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match self.nameserver.trim() {
            "" => Ok(None),
            s => s.parse().map(Some).map_err(|e| ConfigError::Invalid {
                key: "nameserver",
                message: format!("{s:?}: {e}"),
            }),
        }
    }

    /// Validates and derives the uplink tuning.
    pub fn uplink(&self) -> Result<UplinkConfig, ConfigError> {
        if self.batch_records == 0 || self.batch_records > 50_000 {
            return Err(ConfigError::Invalid {
                key: "batch_records",
                message: "must be between 1 and 50000".into(),
            });
        }
        if self.window == 0 {
            return Err(ConfigError::Invalid {
                key: "window",
                message: "must be at least 1".into(),
            });
        }
        if !(0.05..=0.9).contains(&self.renew_fraction) {
            return Err(ConfigError::Invalid {
                key: "renew_fraction",
                message: "must be between 0.05 and 0.9".into(),
            });
        }
        let backoff_min = duration("backoff_min", &self.backoff_min)?;
        let backoff_max = duration("backoff_max", &self.backoff_max)?;
        if backoff_min.is_zero() || backoff_max < backoff_min {
            return Err(ConfigError::Invalid {
                key: "backoff_max",
                message: "backoff_min must be > 0 and backoff_max ≥ backoff_min".into(),
            });
        }
        self.nameserver()?;
        Ok(UplinkConfig {
            window: self.window,
            backoff_min,
            backoff_max,
            renew_fraction: self.renew_fraction,
            renew_check: duration("renew_check", &self.renew_check)?,
            ..UplinkConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_example_file_validate() {
        AgentConfig::default().uplink().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
        AgentConfig::load(&path).unwrap().uplink().unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let c = AgentConfig {
            window: 0,
            ..AgentConfig::default()
        };
        assert!(c.uplink().unwrap_err().to_string().contains("window"));
        let c = AgentConfig {
            backoff_min: "soon".into(),
            ..AgentConfig::default()
        };
        assert!(c.uplink().unwrap_err().to_string().contains("backoff_min"));
        assert!(toml::from_str::<AgentConfig>("unknown = 1").is_err());
    }
}
