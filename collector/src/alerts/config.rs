//! The `[alerts]` section of the collector configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, parse_duration};

/// Dispatcher settings as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Run the dispatcher (plan and send deliveries).
    pub enabled: bool,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each failed attempt.
    pub backoff_base: String,
    /// Longest delay between attempts.
    pub backoff_max: String,
    /// Time limit of one delivery attempt.
    pub timeout: String,
    /// Deliveries sent at the same time.
    pub concurrency: usize,
    /// How often the dispatcher looks for new events and due deliveries.
    pub poll_interval: String,
    /// Finished (delivered, dead, muted) deliveries older than this are deleted.
    pub retention: String,
    /// SMTP relay of email channels.
    pub smtp: SmtpConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 8,
            backoff_base: "2s".into(),
            backoff_max: "10m".into(),
            timeout: "10s".into(),
            concurrency: 4,
            poll_interval: "1s".into(),
            retention: "30d".into(),
            smtp: SmtpConfig::default(),
        }
    }
}

/// SMTP relay settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// `host:port` of the relay; empty disables email delivery.
    pub server: String,
    /// Envelope and header sender.
    pub from: String,
    /// Name sent in EHLO.
    pub helo: String,
    /// AUTH PLAIN user; empty sends no AUTH.
    pub username: String,
    /// AUTH PLAIN password.
    pub password: String,
    /// Upgrade with STARTTLS before AUTH and the message; fail if not offered.
    pub starttls: bool,
    /// PEM file of the CAs trusted for STARTTLS; empty uses the built-in web PKI roots.
    pub ca_file: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            server: String::new(),
            from: "vigil@localhost".into(),
            helo: "vigil-collector".into(),
            username: String::new(),
            password: String::new(),
            starttls: false,
            ca_file: String::new(),
        }
    }
}

/// Validated dispatcher settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// Run the dispatcher.
    pub enabled: bool,
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Per-attempt time limit.
    pub timeout: Duration,
    /// Parallel sends.
    pub concurrency: usize,
    /// Polling interval.
    pub poll_interval: Duration,
    /// Age after which finished deliveries are deleted.
    pub retention: Duration,
    /// SMTP relay (validated `from`, non-empty `server` when set).
    pub smtp: SmtpConfig,
}

impl Default for AlertSettings {
    fn default() -> Self {
        // The defaults are valid by construction; a test keeps it that way.
        AlertsConfig::default()
            .validate()
            .unwrap_or_else(|_| unreachable!("default alert settings are valid"))
    }
}

fn invalid(key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: format!("alerts.{key}"),
        message: message.into(),
    }
}

impl AlertsConfig {
    /// Parses durations and checks ranges.
    pub fn validate(&self) -> Result<AlertSettings, ConfigError> {
        let d = |key: &str, v: &str| parse_duration(&format!("alerts.{key}"), v);
        let backoff_base = d("backoff_base", &self.backoff_base)?;
        let backoff_max = d("backoff_max", &self.backoff_max)?;
        let timeout = d("timeout", &self.timeout)?;
        let poll_interval = d("poll_interval", &self.poll_interval)?;
        let retention = d("retention", &self.retention)?;
        if retention < Duration::from_secs(3600) {
            return Err(invalid("retention", "must be at least 1h"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        if backoff_base.is_zero() || backoff_max < backoff_base {
            return Err(invalid(
                "backoff_base",
                "must be positive and not above backoff_max",
            ));
        }
        if timeout.is_zero() {
            return Err(invalid("timeout", "must be positive"));
        }
        if poll_interval.is_zero() {
            return Err(invalid("poll_interval", "must be positive"));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(invalid("concurrency", "must be between 1 and 256"));
        }
        let smtp = self.smtp.clone();
        if !smtp.server.is_empty() && !smtp.server.contains(':') {
            return Err(invalid("smtp.server", "must be host:port"));
        }
        if !smtp.from.contains('@') || smtp.from.contains(['\r', '\n', '<', '>']) {
            return Err(invalid(
                "smtp.from",
                "must be a plain address such as vigil@example.org",
            ));
        }
        if !smtp.ca_file.is_empty() && !std::path::Path::new(&smtp.ca_file).is_file() {
            return Err(invalid("smtp.ca_file", "is not a file"));
        }
        if !smtp.ca_file.is_empty() && !smtp.starttls {
            return Err(invalid("smtp.ca_file", "needs starttls = true"));
        }
        if smtp.helo.is_empty() || smtp.helo.contains(char::is_whitespace) {
            return Err(invalid("smtp.helo", "must be one word"));
        }
        Ok(AlertSettings {
            enabled: self.enabled,
            max_attempts: self.max_attempts,
            backoff_base,
            backoff_max,
            timeout,
            concurrency: self.concurrency,
            poll_interval,
            retention,
            smtp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_example_documents_every_alert_setting_with_its_default() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let written = doc["alerts"].clone();
        let defaults = toml::Value::try_from(AlertsConfig::default()).unwrap();
        assert_eq!(written, defaults);
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        let s = AlertsConfig::default().validate().unwrap();
        assert_eq!((s.max_attempts, s.concurrency), (8, 4));
        assert_eq!(s.backoff_base, Duration::from_secs(2));
        let bad = |f: &dyn Fn(&mut AlertsConfig)| {
            let mut c = AlertsConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(&|c| c.max_attempts = 0).contains("alerts.max_attempts"));
        assert!(bad(&|c| c.backoff_max = "1s".into()).contains("alerts.backoff_base"));
        assert!(bad(&|c| c.concurrency = 0).contains("alerts.concurrency"));
        assert!(bad(&|c| c.retention = "10m".into()).contains("alerts.retention"));
        assert!(
            bad(&|c| {
                c.smtp.starttls = true;
                c.smtp.ca_file = "/nonexistent/ca.pem".into();
            })
            .contains("alerts.smtp.ca_file")
        );
        assert!(bad(&|c| c.timeout = "soon".into()).contains("alerts.timeout"));
        assert!(bad(&|c| c.smtp.server = "mail".into()).contains("alerts.smtp.server"));
        assert!(bad(&|c| c.smtp.from = "x\r\nBcc: y@z".into()).contains("alerts.smtp.from"));
    }
}
