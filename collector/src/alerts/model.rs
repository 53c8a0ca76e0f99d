//! Stored records of alerting: events, channels, rules, mute windows and deliveries.

use rules::Severity;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What happened, as far as alert rules are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A finding was seen for the first time.
    FindingNew,
    /// A resolved finding was produced again.
    FindingReopened,
    /// A change event against an asset's baseline.
    Change,
    /// A NIS2 incident reporting deadline is near or passed.
    IncidentDeadline,
    /// A test message requested through the API (never matched by rules).
    Test,
}

impl EventKind {
    /// Kinds alert rules may name.
    pub const ROUTABLE: [EventKind; 4] = [
        EventKind::FindingNew,
        EventKind::FindingReopened,
        EventKind::Change,
        EventKind::IncidentDeadline,
    ];

    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::FindingNew => "finding_new",
            EventKind::FindingReopened => "finding_reopened",
            EventKind::Change => "change",
            EventKind::IncidentDeadline => "incident_deadline",
            EventKind::Test => "test",
        }
    }
}

/// One alertable event, written to the outbox in the transaction that caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Deterministic id (the same cause always yields the same id).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Kind.
    pub kind: EventKind,
    /// When the cause happened, ms since the epoch.
    pub created_ms: u64,
    /// Severity of the finding (finding events only).
    pub severity: Option<Severity>,
    /// Change type such as `PORT_OPENED` (change events only).
    pub change_type: Option<String>,
    /// One-line human summary.
    pub summary: String,
    /// Asset concerned, if any.
    pub asset: Option<String>,
    /// Kind-specific details (finding, change event or incident fields).
    pub details: Value,
}

/// Transport of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Generic HTTPS webhook with an HMAC-SHA256 signature.
    Webhook,
    /// Slack incoming webhook.
    Slack,
    /// Email through the configured SMTP relay.
    Email,
}

/// Where alerts go; secrets stay in the store and never leave through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Transport.
    pub kind: ChannelKind,
    /// Webhook or Slack URL.
    pub url: Option<String>,
    /// HMAC key of a webhook.
    pub secret: Option<String>,
    /// Email recipients.
    pub to: Vec<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
}

impl Channel {
    /// The API view: target instead of URL and recipients, no secret.
    pub fn view(&self) -> Value {
        let target = match self.kind {
            ChannelKind::Email => self.to.join(","),
            _ => self.url.clone().unwrap_or_default(),
        };
        json!({
            "id": self.id, "name": self.name, "kind": self.kind,
            "target": target, "created_ms": self.created_ms,
        })
    }
}

/// Which events go to which channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Id.
    pub id: String,
    /// Channel the matching events go to.
    pub channel_id: String,
    /// Lowest finding severity that matches (finding events).
    pub min_severity: Severity,
    /// Change types that match (change events); empty matches none.
    pub change_types: Vec<String>,
    /// Event kinds that match.
    pub events: Vec<EventKind>,
    /// Disabled rules match nothing.
    pub enabled: bool,
}

impl AlertRule {
    /// Whether `event` matches this rule.
    pub fn matches(&self, event: &AlertEvent) -> bool {
        if !self.enabled || !self.events.contains(&event.kind) {
            return false;
        }
        match event.kind {
            EventKind::FindingNew | EventKind::FindingReopened => {
                event.severity.is_some_and(|s| s >= self.min_severity)
            }
            EventKind::Change => event
                .change_type
                .as_ref()
                .is_some_and(|t| self.change_types.iter().any(|c| c == t)),
            EventKind::IncidentDeadline => true,
            EventKind::Test => false,
        }
    }
}

/// What a tenant's enabled rules can match at all, stored beside the rules so
/// the findings pipeline queues only events that might be routed (planning
/// still evaluates every rule).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interest {
    /// Lowest severity of any rule taking `finding_new`.
    pub finding_new: Option<Severity>,
    /// Lowest severity of any rule taking `finding_reopened`.
    pub finding_reopened: Option<Severity>,
    /// Change types of any rule taking `change`.
    pub change_types: Vec<String>,
}

impl Interest {
    /// The union of what `rules` match.
    pub fn of(rules: &[AlertRule]) -> Self {
        let mut i = Interest::default();
        let lower = |cur: Option<Severity>, s: Severity| Some(cur.map_or(s, |c| c.min(s)));
        for r in rules.iter().filter(|r| r.enabled) {
            for kind in &r.events {
                match kind {
                    EventKind::FindingNew => i.finding_new = lower(i.finding_new, r.min_severity),
                    EventKind::FindingReopened => {
                        i.finding_reopened = lower(i.finding_reopened, r.min_severity)
                    }
                    EventKind::Change => i.change_types.extend(r.change_types.iter().cloned()),
                    EventKind::IncidentDeadline | EventKind::Test => {}
                }
            }
        }
        i.change_types.sort();
        i.change_types.dedup();
        i
    }

    /// Whether nothing from the pipeline can match.
    pub fn is_empty(&self) -> bool {
        self.finding_new.is_none()
            && self.finding_reopened.is_none()
            && self.change_types.is_empty()
    }

    /// Whether a finding event of `kind` and `severity` may match a rule.
    pub fn wants_finding(&self, kind: EventKind, severity: Severity) -> bool {
        let min = match kind {
            EventKind::FindingNew => self.finding_new,
            EventKind::FindingReopened => self.finding_reopened,
            _ => None,
        };
        min.is_some_and(|m| severity >= m)
    }

    /// Whether a change event of type `change` may match a rule.
    pub fn wants_change(&self, change: &str) -> bool {
        self.change_types.iter().any(|c| c == change)
    }
}

/// A time range during which planned deliveries are recorded as muted, not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteWindow {
    /// Id.
    pub id: String,
    /// Start, ms since the epoch (inclusive).
    pub starts_ms: u64,
    /// End, ms since the epoch (exclusive).
    pub ends_ms: u64,
    /// Why.
    pub reason: String,
}

impl MuteWindow {
    /// Whether `at_ms` falls inside the window.
    pub fn covers(&self, at_ms: u64) -> bool {
        self.starts_ms <= at_ms && at_ms < self.ends_ms
    }
}

/// State of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Accepted by the receiver.
    Delivered,
    /// Given up after the configured number of attempts.
    Dead,
    /// Planned during a mute window: recorded, never sent.
    Muted,
}

impl DeliveryStatus {
    /// Parses the API's `status` filter.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            "muted" => Some(Self::Muted),
            _ => None,
        }
    }
}

/// One event on its way to one channel; its id is the idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Id: creation time in hex (so ids sort by time) and a hash of (event, channel).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Channel.
    pub channel_id: String,
    /// The event.
    pub event: AlertEvent,
    /// State.
    pub status: DeliveryStatus,
    /// Attempts made since it was (re)queued.
    pub attempts: u32,
    /// When the next attempt is due, ms since the epoch.
    pub next_attempt_ms: u64,
    /// Error of the latest failed attempt.
    pub last_error: Option<String>,
    /// When it was planned, ms since the epoch.
    pub created_ms: u64,
    /// When the receiver accepted it.
    pub delivered_ms: Option<u64>,
}

impl Delivery {
    /// The API view.
    pub fn view(&self) -> Value {
        json!({
            "id": self.id, "channel_id": self.channel_id,
            "event_kind": self.event.kind.as_str(), "summary": self.event.summary,
            "status": self.status, "attempts": self.attempts,
            "next_attempt_ms": self.next_attempt_ms, "last_error": self.last_error,
            "created_ms": self.created_ms, "delivered_ms": self.delivered_ms,
        })
    }

    /// The JSON document sent to webhooks (schema in docs/alerts.md).
    pub fn payload(&self) -> Value {
        let e = &self.event;
        json!({
            "version": 1,
            "delivery_id": self.id,
            "idempotency_key": self.id,
            "event_id": e.id,
            "tenant": e.tenant,
            "kind": e.kind.as_str(),
            "created_ms": e.created_ms,
            "severity": e.severity.map(|s| s.as_str()),
            "change_type": e.change_type,
            "asset": e.asset,
            "summary": e.summary,
            "details": e.details,
        })
    }
}
