//! Slack incoming-webhook messages.

use std::time::Duration;

use serde_json::{Value, json};

use super::AlertError;
use super::model::Delivery;
use super::webhook::post_json;

/// Slack's mrkdwn escapes: `&`, `<` and `>` would otherwise start links or entities.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message posted for `d`: a plain-text fallback and Block Kit blocks.
pub fn message(d: &Delivery) -> Value {
    let e = &d.event;
    let summary = escape(&e.summary);
    let mut facts = vec![format!("*Tenant:* {}", escape(&e.tenant))];
    if let Some(s) = e.severity {
        facts.push(format!("*Severity:* {}", s.as_str()));
    }
    if let Some(c) = &e.change_type {
        facts.push(format!("*Change:* {}", escape(c)));
    }
    if let Some(a) = &e.asset {
        facts.push(format!("*Asset:* {}", escape(a)));
    }
    json!({
        "text": format!("vigil {}: {summary}", e.kind.as_str()),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("*vigil {}*\n{summary}", e.kind.as_str()) } },
            { "type": "section", "fields": facts.iter().map(|f| json!({ "type": "mrkdwn", "text": f })).collect::<Vec<_>>() },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": format!("delivery {}", d.id) } ] }
        ]
    })
}

/// Posts `d` to a Slack incoming webhook.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    d: &Delivery,
    timeout: Duration,
) -> Result<(), AlertError> {
    let body = serde_json::to_vec(&message(d))
        .map_err(|e| AlertError::Send(format!("encoding message: {e}")))?;
    post_json(client, url, body, &[], timeout).await
}
