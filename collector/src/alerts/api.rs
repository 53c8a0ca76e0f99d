//! The console's [`AlertOperations`] over the [`AlertService`].

use console::OpsError;
use console::api::alerts::{AlertOperations, ChannelInput, MuteWindowInput, RuleInput};
use protocol::TenantId;
use rules::Severity;
use serde_json::{Value, json};

use super::AlertError;
use super::model::{ChannelKind, DeliveryStatus, EventKind};
use super::service::{AlertService, NewChannel, NewRule};

fn ops_err(e: AlertError) -> OpsError {
    match e {
        AlertError::NotFound(what) => OpsError::NotFound(what),
        AlertError::Invalid(m) => OpsError::Invalid(m),
        other => OpsError::Failed(other.to_string()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, v: &str) -> Result<T, OpsError> {
    serde_json::from_value(Value::String(v.to_string()))
        .map_err(|_| OpsError::Invalid(format!("unknown {what} {v:?}")))
}

fn views<T>(items: Vec<T>, view: impl Fn(&T) -> Value) -> Value {
    Value::Array(items.iter().map(view).collect())
}

fn to_value(v: impl serde::Serialize) -> Result<Value, OpsError> {
    serde_json::to_value(v).map_err(|e| OpsError::Failed(e.to_string()))
}

impl AlertOperations for AlertService {
    fn alert_channels(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        Ok(views(
            self.channels(tenant.as_str()).map_err(ops_err)?,
            |c| c.view(),
        ))
    }

    fn create_alert_channel(&self, tenant: &TenantId, c: ChannelInput) -> Result<Value, OpsError> {
        let kind: ChannelKind = parse("channel kind", &c.kind)?;
        let (ch, secret) = self
            .create_channel(
                tenant.as_str(),
                NewChannel {
                    name: c.name,
                    kind,
                    url: c.url,
                    secret: c.secret,
                    to: c.to,
                },
            )
            .map_err(ops_err)?;
        let mut v = ch.view();
        if let Some(s) = secret {
            v["secret"] = json!(s);
        }
        Ok(v)
    }

    fn delete_alert_channel(&self, tenant: &TenantId, id: &str) -> Result<(), OpsError> {
        self.delete_channel(tenant.as_str(), id).map_err(ops_err)
    }

    fn test_alert_channel(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        let d = self.send_test(tenant.as_str(), id).map_err(ops_err)?;
        Ok(json!({ "delivery_id": d.id }))
    }

    fn alert_rules(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        to_value(self.rules(tenant.as_str()).map_err(ops_err)?)
    }

    fn create_alert_rule(&self, tenant: &TenantId, r: RuleInput) -> Result<Value, OpsError> {
        let min_severity: Severity = parse("severity", &r.min_severity)?;
        let events = r
            .events
            .iter()
            .map(|e| parse::<EventKind>("event", e))
            .collect::<Result<Vec<_>, _>>()?;
        let rule = self
            .create_rule(
                tenant.as_str(),
                NewRule {
                    channel_id: r.channel_id,
                    min_severity,
                    change_types: r.change_types,
                    events,
                    enabled: r.enabled,
                },
            )
            .map_err(ops_err)?;
        to_value(rule)
    }

    fn delete_alert_rule(&self, tenant: &TenantId, id: &str) -> Result<(), OpsError> {
        self.delete_rule(tenant.as_str(), id).map_err(ops_err)
    }

    fn mute_windows(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        to_value(self.mute_windows(tenant.as_str()).map_err(ops_err)?)
    }

    fn create_mute_window(&self, tenant: &TenantId, w: MuteWindowInput) -> Result<Value, OpsError> {
        to_value(
            AlertService::create_mute_window(
                self,
                tenant.as_str(),
                w.starts_ms,
                w.ends_ms,
                &w.reason,
            )
            .map_err(ops_err)?,
        )
    }

    fn delete_mute_window(&self, tenant: &TenantId, id: &str) -> Result<(), OpsError> {
        AlertService::delete_mute_window(self, tenant.as_str(), id).map_err(ops_err)
    }

    fn alert_deliveries(
        &self,
        tenant: &TenantId,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Value, OpsError> {
        let status = status
            .map(|s| {
                DeliveryStatus::parse(s)
                    .ok_or_else(|| OpsError::Invalid(format!("unknown status {s:?}")))
            })
            .transpose()?;
        Ok(views(
            self.deliveries(tenant.as_str(), status, limit)
                .map_err(ops_err)?,
            |d| d.view(),
        ))
    }

    fn retry_alert_delivery(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        Ok(self.retry(tenant.as_str(), id).map_err(ops_err)?.view())
    }
}
