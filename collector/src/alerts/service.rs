//! Alert management: channels, rules, mute windows and deliveries of a tenant,
//! stored through the [`FindingStore`] under tenant-prefixed keys.

use std::sync::Arc;

use rules::Severity;
use tokio::sync::Notify;

use super::config::AlertSettings;
use super::model::{
    AlertEvent, AlertRule, Channel, ChannelKind, Delivery, DeliveryStatus, EventKind, Interest,
    MuteWindow,
};
use super::outbox::{IncidentDeadline, enqueue_incident_deadline};
use super::{AlertError, config_key, delivery_key, due_key, interest_key, random_id};
use crate::findings::changes::ChangeType;
use crate::findings::{FindingStore, Space, dec, enc, tenant_prefix};
use crate::metrics::Metrics;
use crate::time::now_ms;

/// Most channels, rules or mute windows per tenant.
pub const MAX_PER_TENANT: usize = 100;

/// A channel to create.
#[derive(Debug, Clone)]
pub struct NewChannel {
    /// Display name.
    pub name: String,
    /// Transport.
    pub kind: ChannelKind,
    /// Webhook or Slack URL.
    pub url: Option<String>,
    /// Webhook HMAC key; generated when absent.
    pub secret: Option<String>,
    /// Email recipients.
    pub to: Vec<String>,
}

/// A rule to create.
#[derive(Debug, Clone)]
pub struct NewRule {
    /// Target channel.
    pub channel_id: String,
    /// Lowest finding severity.
    pub min_severity: Severity,
    /// Change types (upper-case names).
    pub change_types: Vec<String>,
    /// Event kinds.
    pub events: Vec<EventKind>,
    /// Whether it is active.
    pub enabled: bool,
}

/// Alerting state and operations shared by the API and the dispatcher.
pub struct AlertService {
    pub(crate) fs: Arc<dyn FindingStore>,
    pub(crate) settings: AlertSettings,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) wake: Arc<Notify>,
    // Serialises rule changes so the stored interest summary matches the rules.
    rules_lock: std::sync::Mutex<()>,
}

const CHANNEL: &str = "channel";
const RULE: &str = "rule";
const MUTE: &str = "mute";

fn valid_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.contains(char::is_whitespace)
        && reqwest::Url::parse(url).is_ok_and(|u| u.host().is_some())
}

impl AlertService {
    /// Alerting over the findings store `fs`.
    pub fn new(fs: Arc<dyn FindingStore>, settings: AlertSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            fs,
            settings,
            metrics,
            wake: Arc::new(Notify::new()),
            rules_lock: std::sync::Mutex::new(()),
        }
    }

    /// Dispatcher settings.
    pub fn settings(&self) -> &AlertSettings {
        &self.settings
    }

    fn list<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &str,
        what: &str,
    ) -> Result<Vec<T>, AlertError> {
        let prefix = config_key(tenant, what, "");
        self.fs
            .scan(Space::AlertConfig, &prefix, None, false, usize::MAX)?
            .into_iter()
            .map(|(k, v)| dec(&k, &v).map_err(AlertError::from))
            .collect()
    }

    fn put_config<T: serde::Serialize>(
        &self,
        tenant: &str,
        what: &str,
        id: &str,
        value: &T,
    ) -> Result<(), AlertError> {
        if self.list::<serde_json::Value>(tenant, what)?.len() >= MAX_PER_TENANT {
            return Err(AlertError::Invalid(format!(
                "at most {MAX_PER_TENANT} {what}s per tenant"
            )));
        }
        let key = config_key(tenant, what, id);
        let bytes = enc(value)?;
        self.fs
            .transact(&mut |tx| tx.put(Space::AlertConfig, &key, &bytes))?;
        Ok(())
    }

    fn delete_config(&self, tenant: &str, what: &str, id: &str) -> Result<(), AlertError> {
        let key = config_key(tenant, what, id);
        let mut found = false;
        self.fs.transact(&mut |tx| {
            found = tx.get(Space::AlertConfig, &key)?.is_some();
            tx.remove(Space::AlertConfig, &key)
        })?;
        if found {
            Ok(())
        } else {
            Err(AlertError::NotFound(format!("{what} {id}")))
        }
    }

    /// Channels of `tenant`.
    pub fn channels(&self, tenant: &str) -> Result<Vec<Channel>, AlertError> {
        self.list(tenant, CHANNEL)
    }

    /// One channel of `tenant`.
    pub fn channel(&self, tenant: &str, id: &str) -> Result<Channel, AlertError> {
        let key = config_key(tenant, CHANNEL, id);
        match self.fs.get(Space::AlertConfig, &key)? {
            Some(v) => Ok(dec(&key, &v)?),
            None => Err(AlertError::NotFound(format!("channel {id}"))),
        }
    }

    /// Creates a channel; for a webhook without a secret, one is generated and
    /// returned (the only time it leaves the collector).
    pub fn create_channel(
        &self,
        tenant: &str,
        c: NewChannel,
    ) -> Result<(Channel, Option<String>), AlertError> {
        let name = c.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(AlertError::Invalid(
                "name must be 1 to 200 characters".into(),
            ));
        }
        let mut generated = None;
        let (url, secret, to) = match c.kind {
            ChannelKind::Webhook | ChannelKind::Slack => {
                let url = c
                    .url
                    .filter(|u| valid_url(u))
                    .ok_or_else(|| AlertError::Invalid("url must be an http(s) URL".into()))?;
                if !c.to.is_empty() {
                    return Err(AlertError::Invalid("to is for email channels".into()));
                }
                let secret = match (c.kind, c.secret) {
                    (ChannelKind::Slack, Some(_)) => {
                        return Err(AlertError::Invalid(
                            "slack channels take no secret (the URL is the secret)".into(),
                        ));
                    }
                    (ChannelKind::Slack, None) => None,
                    (_, Some(s)) if s.len() < 16 => {
                        return Err(AlertError::Invalid(
                            "secret must be at least 16 characters".into(),
                        ));
                    }
                    (_, Some(s)) => Some(s),
                    (_, None) => {
                        let s = format!("whsec_{}", random_id(32)?);
                        generated = Some(s.clone());
                        Some(s)
                    }
                };
                (Some(url), secret, Vec::new())
            }
            ChannelKind::Email => {
                if c.url.is_some() || c.secret.is_some() {
                    return Err(AlertError::Invalid(
                        "email channels take only recipients (to)".into(),
                    ));
                }
                if c.to.is_empty() || c.to.len() > 50 {
                    return Err(AlertError::Invalid("to must list 1 to 50 addresses".into()));
                }
                if let Some(bad) = c.to.iter().find(|a| !super::smtp::valid_address(a)) {
                    return Err(AlertError::Invalid(format!("invalid address {bad:?}")));
                }
                (None, None, c.to)
            }
        };
        let ch = Channel {
            id: random_id(8)?,
            name: name.to_string(),
            kind: c.kind,
            url,
            secret,
            to,
            created_ms: now_ms(),
        };
        self.put_config(tenant, CHANNEL, &ch.id, &ch)?;
        Ok((ch, generated))
    }

    /// Deletes a channel and the rules that point at it.
    pub fn delete_channel(&self, tenant: &str, id: &str) -> Result<(), AlertError> {
        let _g = self.rules_guard();
        self.channel(tenant, id)?;
        for r in self.rules(tenant)?.iter().filter(|r| r.channel_id == id) {
            self.delete_config(tenant, RULE, &r.id)?;
        }
        self.refresh_interest(tenant)?;
        self.delete_config(tenant, CHANNEL, id)
    }

    fn rules_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.rules_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rewrites the tenant's interest summary from its rules.
    fn refresh_interest(&self, tenant: &str) -> Result<(), AlertError> {
        let interest = Interest::of(&self.rules(tenant)?);
        let key = interest_key(tenant);
        let bytes = enc(&interest)?;
        self.fs.transact(&mut |tx| {
            if interest.is_empty() {
                tx.remove(Space::AlertConfig, &key)
            } else {
                tx.put(Space::AlertConfig, &key, &bytes)
            }
        })?;
        Ok(())
    }

    /// Rules of `tenant`.
    pub fn rules(&self, tenant: &str) -> Result<Vec<AlertRule>, AlertError> {
        self.list(tenant, RULE)
    }

    /// Creates a rule for one of the tenant's channels.
    pub fn create_rule(&self, tenant: &str, r: NewRule) -> Result<AlertRule, AlertError> {
        let _g = self.rules_guard();
        match self.channel(tenant, &r.channel_id) {
            Err(AlertError::NotFound(_)) => {
                return Err(AlertError::Invalid(format!(
                    "no channel {:?} in this tenant",
                    r.channel_id
                )));
            }
            other => other?,
        };
        if r.events.is_empty() || r.events.contains(&EventKind::Test) {
            return Err(AlertError::Invalid(
                "events must name finding_new, finding_reopened, change or incident_deadline"
                    .into(),
            ));
        }
        if let Some(bad) = r
            .change_types
            .iter()
            .find(|t| !ChangeType::ALL.iter().any(|c| c.as_str() == t.as_str()))
        {
            return Err(AlertError::Invalid(format!("unknown change type {bad:?}")));
        }
        let mut events: Vec<EventKind> = Vec::new();
        for e in r.events {
            if !events.contains(&e) {
                events.push(e);
            }
        }
        let rule = AlertRule {
            id: random_id(8)?,
            channel_id: r.channel_id,
            min_severity: r.min_severity,
            change_types: r.change_types,
            events,
            enabled: r.enabled,
        };
        self.put_config(tenant, RULE, &rule.id, &rule)?;
        self.refresh_interest(tenant)?;
        Ok(rule)
    }

    /// Deletes a rule.
    pub fn delete_rule(&self, tenant: &str, id: &str) -> Result<(), AlertError> {
        let _g = self.rules_guard();
        self.delete_config(tenant, RULE, id)?;
        self.refresh_interest(tenant)
    }

    /// Mute windows of `tenant`.
    pub fn mute_windows(&self, tenant: &str) -> Result<Vec<MuteWindow>, AlertError> {
        self.list(tenant, MUTE)
    }

    /// Creates a mute window.
    pub fn create_mute_window(
        &self,
        tenant: &str,
        starts_ms: u64,
        ends_ms: u64,
        reason: &str,
    ) -> Result<MuteWindow, AlertError> {
        if ends_ms <= starts_ms {
            return Err(AlertError::Invalid(
                "ends_ms must be after starts_ms".into(),
            ));
        }
        if reason.trim().is_empty() || reason.len() > 500 {
            return Err(AlertError::Invalid(
                "reason must be 1 to 500 characters".into(),
            ));
        }
        let w = MuteWindow {
            id: random_id(8)?,
            starts_ms,
            ends_ms,
            reason: reason.trim().to_string(),
        };
        self.put_config(tenant, MUTE, &w.id, &w)?;
        Ok(w)
    }

    /// Deletes a mute window.
    pub fn delete_mute_window(&self, tenant: &str, id: &str) -> Result<(), AlertError> {
        self.delete_config(tenant, MUTE, id)
    }

    /// Deliveries of `tenant`, newest first, optionally of one status.
    pub fn deliveries(
        &self,
        tenant: &str,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<Delivery>, AlertError> {
        let prefix = tenant_prefix(tenant);
        let mut out = Vec::new();
        let mut before: Option<Vec<u8>> = None;
        while out.len() < limit {
            let page = self.fs.scan(
                Space::AlertDeliveries,
                &prefix,
                before.as_deref(),
                true,
                512,
            )?;
            let Some(last) = page.last() else { break };
            before = Some(last.0.clone());
            for (k, v) in &page {
                let d: Delivery = dec(k, v)?;
                if status.is_none_or(|s| s == d.status) && out.len() < limit {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// One delivery of `tenant`.
    pub fn delivery(&self, tenant: &str, id: &str) -> Result<Delivery, AlertError> {
        let key = delivery_key(tenant, id);
        match self.fs.get(Space::AlertDeliveries, &key)? {
            Some(v) => Ok(dec(&key, &v)?),
            None => Err(AlertError::NotFound(format!("delivery {id}"))),
        }
    }

    /// Puts a dead-lettered delivery back in the queue with a fresh attempt budget.
    pub fn retry(&self, tenant: &str, id: &str) -> Result<Delivery, AlertError> {
        let key = delivery_key(tenant, id);
        let now = now_ms();
        let mut out = None;
        self.fs.transact(&mut |tx| {
            out = None;
            let Some(v) = tx.get(Space::AlertDeliveries, &key)? else {
                return Ok(());
            };
            let mut d: Delivery = dec(&key, &v)?;
            if d.status != DeliveryStatus::Dead {
                out = Some(Err(d.status));
                return Ok(());
            }
            d.status = DeliveryStatus::Pending;
            d.attempts = 0;
            d.next_attempt_ms = now;
            tx.put(Space::AlertDeliveries, &key, &enc(&d)?)?;
            tx.put(Space::AlertDue, &due_key(now, tenant, id), b"")?;
            out = Some(Ok(d));
            Ok(())
        })?;
        match out {
            None => Err(AlertError::NotFound(format!("delivery {id}"))),
            Some(Err(status)) => Err(AlertError::Invalid(format!(
                "only dead deliveries can be retried (this one is {})",
                serde_json::to_value(status).map_or_else(|_| "?".into(), |v| v.to_string())
            ))),
            Some(Ok(d)) => {
                self.wake.notify_one();
                Ok(d)
            }
        }
    }

    /// Queues a test message to one channel, bypassing rules and mute windows.
    pub fn send_test(&self, tenant: &str, channel_id: &str) -> Result<Delivery, AlertError> {
        let ch = self.channel(tenant, channel_id)?;
        let now = now_ms();
        let event = AlertEvent {
            id: random_id(16)?,
            tenant: tenant.to_string(),
            kind: EventKind::Test,
            created_ms: now,
            severity: None,
            change_type: None,
            summary: format!("test message for channel {}", ch.name),
            asset: None,
            details: serde_json::json!({ "channel_id": ch.id }),
        };
        let d = super::dispatcher::new_delivery(&event, &ch.id, now, DeliveryStatus::Pending);
        let key = delivery_key(tenant, &d.id);
        let bytes = enc(&d)?;
        self.fs.transact(&mut |tx| {
            tx.put(Space::AlertDeliveries, &key, &bytes)?;
            tx.put(Space::AlertDue, &due_key(now, tenant, &d.id), b"")
        })?;
        self.wake.notify_one();
        Ok(d)
    }

    /// Queues an `incident_deadline` event for `tenant` (NIS2 incident reminders).
    pub fn enqueue_incident_deadline(
        &self,
        tenant: &str,
        deadline: &IncidentDeadline,
    ) -> Result<String, AlertError> {
        let id = enqueue_incident_deadline(self.fs.as_ref(), tenant, deadline)?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Deliveries waiting for an attempt, over all tenants.
    pub fn pending_count(&self) -> Result<usize, AlertError> {
        Ok(self
            .fs
            .scan(Space::AlertDue, b"", None, false, usize::MAX)?
            .len())
    }
}
