//! Recording stand-in for the collector's alerting operations: channels,
//! rules, mute windows and deliveries per tenant, keyed by (tenant, kind, id).

use std::collections::BTreeMap;
use std::sync::Mutex;

use console::OpsError;
use console::api::alerts::{AlertOperations, ChannelInput, MuteWindowInput, RuleInput};
use protocol::TenantId;
use serde_json::{Value, json};

/// In-memory alerting state.
#[derive(Default)]
pub struct TestAlerts {
    /// (tenant, "channel" | "rule" | "mute" | "delivery", id) → API view.
    pub items: Mutex<BTreeMap<(TenantId, &'static str, String), Value>>,
}

impl TestAlerts {
    /// Seeds one item of every kind under id `f-<tenant>1` (the id the RBAC matrix uses).
    pub fn seed(&self, tenant: &TenantId) {
        let id = format!("f-{tenant}1");
        let mut items = self.items.lock().unwrap();
        items.insert(
            (tenant.clone(), "channel", id.clone()),
            json!({ "id": id, "name": "ops", "kind": "webhook", "target": "http://127.0.0.1:9/hook", "created_ms": 1 }),
        );
        items.insert(
            (tenant.clone(), "rule", id.clone()),
            json!({ "id": id, "channel_id": id, "min_severity": "high", "change_types": [], "events": ["finding_new"], "enabled": true }),
        );
        items.insert(
            (tenant.clone(), "mute", id.clone()),
            json!({ "id": id, "starts_ms": 1, "ends_ms": 2, "reason": "maintenance" }),
        );
        items.insert(
            (tenant.clone(), "delivery", id.clone()),
            json!({ "id": id, "channel_id": id, "event_kind": "finding_new", "summary": "s",
                    "status": "dead", "attempts": 8, "next_attempt_ms": 1, "last_error": "500",
                    "created_ms": 1, "delivered_ms": null }),
        );
    }

    fn list(&self, tenant: &TenantId, kind: &str) -> Result<Value, OpsError> {
        let items = self
            .items
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        Ok(Value::Array(
            items
                .iter()
                .filter(|((t, k, _), _)| t == tenant && *k == kind)
                .map(|(_, v)| v.clone())
                .collect(),
        ))
    }

    fn insert(
        &self,
        tenant: &TenantId,
        kind: &'static str,
        mut v: Value,
    ) -> Result<Value, OpsError> {
        let mut items = self
            .items
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        let id = format!("{kind}-{}", items.len());
        v["id"] = json!(id);
        items.insert((tenant.clone(), kind, id), v.clone());
        Ok(v)
    }

    fn remove(&self, tenant: &TenantId, kind: &'static str, id: &str) -> Result<(), OpsError> {
        let mut items = self
            .items
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        items
            .remove(&(tenant.clone(), kind, id.to_string()))
            .map(|_| ())
            .ok_or_else(|| OpsError::NotFound(id.to_string()))
    }

    fn get(&self, tenant: &TenantId, kind: &'static str, id: &str) -> Result<Value, OpsError> {
        let items = self
            .items
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        items
            .get(&(tenant.clone(), kind, id.to_string()))
            .cloned()
            .ok_or_else(|| OpsError::NotFound(id.to_string()))
    }
}

impl AlertOperations for TestAlerts {
    fn alert_channels(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        self.list(tenant, "channel")
    }

    fn create_alert_channel(&self, tenant: &TenantId, c: ChannelInput) -> Result<Value, OpsError> {
        let target = c.url.clone().unwrap_or_else(|| c.to.join(","));
        let mut v = self.insert(
            tenant,
            "channel",
            json!({ "name": c.name, "kind": c.kind, "target": target, "created_ms": 5 }),
        )?;
        if c.kind == "webhook" && c.secret.is_none() {
            v["secret"] = json!("whsec_generated_once");
        }
        Ok(v)
    }

    fn delete_alert_channel(&self, tenant: &TenantId, id: &str) -> Result<(), OpsError> {
        self.remove(tenant, "channel", id)
    }

    fn test_alert_channel(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        self.get(tenant, "channel", id)?;
        Ok(json!({ "delivery_id": format!("test-{id}") }))
    }

    fn alert_rules(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        self.list(tenant, "rule")
    }

    fn create_alert_rule(&self, tenant: &TenantId, r: RuleInput) -> Result<Value, OpsError> {
        self.get(tenant, "channel", &r.channel_id)
            .map_err(|_| OpsError::Invalid("no such channel".into()))?;
        self.insert(
            tenant,
            "rule",
            json!({ "channel_id": r.channel_id, "min_severity": r.min_severity,
                    "change_types": r.change_types, "events": r.events, "enabled": r.enabled }),
        )
    }

    fn delete_alert_rule(&self, tenant: &TenantId, id: &str) -> Result<(), OpsError> {
        self.remove(tenant, "rule", id)
    }

    fn mute_windows(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        self.list(tenant, "mute")
    }

    fn create_mute_window(&self, tenant: &TenantId, w: MuteWindowInput) -> Result<Value, OpsError> {
        self.insert(
            tenant,
            "mute",
            json!({ "starts_ms": w.starts_ms, "ends_ms": w.ends_ms, "reason": w.reason }),
        )
    }

    fn delete_mute_window(&self, tenant: &TenantId, id: &str) -> Result<(), OpsError> {
        self.remove(tenant, "mute", id)
    }

    fn alert_deliveries(
        &self,
        tenant: &TenantId,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Value, OpsError> {
        let all = self.list(tenant, "delivery")?;
        Ok(Value::Array(
            all.as_array()
                .into_iter()
                .flatten()
                .filter(|d| status.is_none_or(|s| d["status"] == s))
                .take(limit)
                .cloned()
                .collect(),
        ))
    }

    fn retry_alert_delivery(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        let mut items = self
            .items
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        let d = items
            .get_mut(&(tenant.clone(), "delivery", id.to_string()))
            .ok_or_else(|| OpsError::NotFound(id.to_string()))?;
        d["status"] = json!("pending");
        d["attempts"] = json!(0);
        Ok(d.clone())
    }
}
