//! The dispatcher: plans outbox events into deliveries (rules and mute windows
//! are evaluated here) and sends due deliveries with retries.
//!
//! Each pass first plans up to [`PLAN_BATCH`] outbox events, each in one
//! transaction that writes its deliveries and removes the event, then sends up
//! to `concurrency` due deliveries in parallel and records every outcome in a
//! transaction. A delivery is only marked delivered after the receiver
//! accepted it, so a crash in between re-sends it (same idempotency key).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::model::{
    AlertEvent, AlertRule, Channel, ChannelKind, Delivery, DeliveryStatus, MuteWindow,
};
use super::service::AlertService;
use super::smtp::Mail;
use super::{AlertError, delivery_key, due_key, slack, smtp, webhook};
use crate::findings::{Space, dec, enc};
use crate::metrics::Metrics;
use crate::time::now_ms;

/// Outbox events planned per pass.
pub const PLAN_BATCH: usize = 256;

/// The delivery of `event` to `channel_id`. Its id (= idempotency key) depends
/// only on the event and the channel, so planning an event twice is harmless.
pub fn new_delivery(
    event: &AlertEvent,
    channel_id: &str,
    now: u64,
    status: DeliveryStatus,
) -> Delivery {
    let mut h = Sha256::new();
    h.update(event.id.as_bytes());
    h.update(b"/");
    h.update(channel_id.as_bytes());
    let id = format!(
        "{:016x}{}",
        event.created_ms,
        hex::encode(&h.finalize()[..8])
    );
    Delivery {
        id,
        tenant: event.tenant.clone(),
        channel_id: channel_id.to_string(),
        event: event.clone(),
        status,
        attempts: 0,
        next_attempt_ms: now,
        last_error: None,
        created_ms: now,
        delivered_ms: None,
    }
}

/// Delay before attempt `attempts + 1`: `base * 2^(attempts-1)` capped at
/// `max`, then "equal jitter" (a uniform point in its upper half) so receivers
/// recovering from an outage are not hit by every retry at once.
pub fn backoff(base: Duration, max: Duration, attempts: u32, random: u64) -> Duration {
    let exp = attempts.saturating_sub(1).min(32);
    let full = base.saturating_mul(1u32 << exp.min(31)).min(max);
    let half = full / 2;
    let span = (full - half).as_millis() as u64;
    half + Duration::from_millis(if span == 0 { 0 } else { random % (span + 1) })
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Jitter only: a failing random source degrades to no jitter.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// Due-index keys of the attempts running, by task.
type InFlight = HashMap<tokio::task::Id, Vec<u8>>;

/// Outcome of one attempt.
struct Attempt {
    due: Vec<u8>,
    tenant: String,
    id: String,
    attempts_before: u32,
    result: Result<(), String>,
}

impl AlertService {
    /// Plans up to [`PLAN_BATCH`] outbox events at time `now`; returns events planned.
    pub fn plan_once(&self, now: u64) -> Result<usize, AlertError> {
        let page = self
            .fs
            .scan(Space::AlertOutbox, b"", None, false, PLAN_BATCH)?;
        let mut tenants: HashMap<String, (Vec<AlertRule>, Vec<MuteWindow>)> = HashMap::new();
        let mut plans: Vec<(&Vec<u8>, Vec<Delivery>)> = Vec::new();
        for (k, v) in &page {
            let ev: AlertEvent = match dec(k, v) {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::error!("alert outbox: {e}; entry dropped");
                    self.fs.remove_if(Space::AlertOutbox, k, v)?;
                    continue;
                }
            };
            if !tenants.contains_key(&ev.tenant) {
                let cfg = (self.rules(&ev.tenant)?, self.mute_windows(&ev.tenant)?);
                tenants.insert(ev.tenant.clone(), cfg);
            }
            let (rules, mutes) = &tenants[&ev.tenant];
            let status = if mutes.iter().any(|m| m.covers(now)) {
                DeliveryStatus::Muted
            } else {
                DeliveryStatus::Pending
            };
            let mut channels: Vec<&str> = rules
                .iter()
                .filter(|r| r.matches(&ev))
                .map(|r| r.channel_id.as_str())
                .collect();
            channels.sort_unstable();
            channels.dedup();
            if channels.is_empty() {
                // Nothing to write: no transaction needed to drop it.
                self.fs.remove_if(Space::AlertOutbox, k, v)?;
                continue;
            }
            let planned: Vec<Delivery> = channels
                .iter()
                .map(|c| new_delivery(&ev, c, now, status))
                .collect();
            plans.push((k, planned));
        }
        // One transaction for the whole page: deliveries appear and their
        // events leave the outbox together.
        let mut muted = 0u64;
        self.fs.transact(&mut |tx| {
            muted = 0;
            for (k, planned) in &plans {
                if tx.get(Space::AlertOutbox, k)?.is_none() {
                    continue;
                }
                for d in planned {
                    let dk = delivery_key(&d.tenant, &d.id);
                    if tx.get(Space::AlertDeliveries, &dk)?.is_some() {
                        continue;
                    }
                    tx.put(Space::AlertDeliveries, &dk, &enc(d)?)?;
                    match d.status {
                        DeliveryStatus::Pending => {
                            tx.put(Space::AlertDue, &due_key(now, &d.tenant, &d.id), b"")?
                        }
                        _ => muted += 1,
                    }
                }
                tx.remove(Space::AlertOutbox, k)?;
            }
            Ok(())
        })?;
        self.metrics
            .alerts_muted
            .fetch_add(muted, Ordering::Relaxed);
        Ok(page.len())
    }

    /// Up to `limit` deliveries due at `now`, soonest first; stale index entries are dropped.
    fn due(&self, now: u64, limit: usize) -> Result<Vec<(Vec<u8>, Delivery)>, AlertError> {
        let page = self.fs.scan(Space::AlertDue, b"", None, false, limit)?;
        let mut out = Vec::new();
        for (k, v) in page {
            let Some((at, rest)) = k.split_first_chunk::<8>() else {
                self.fs.remove_if(Space::AlertDue, &k, &v)?;
                continue;
            };
            if u64::from_be_bytes(*at) > now {
                break;
            }
            let d = match self.fs.get(Space::AlertDeliveries, rest)? {
                Some(dv) => dec::<Delivery>(rest, &dv)?,
                None => {
                    self.fs.remove_if(Space::AlertDue, &k, &v)?;
                    continue;
                }
            };
            if d.status != DeliveryStatus::Pending {
                self.fs.remove_if(Space::AlertDue, &k, &v)?;
                continue;
            }
            out.push((k, d));
        }
        Ok(out)
    }

    /// Sends one delivery to its channel within the configured timeout.
    async fn attempt(
        &self,
        client: &reqwest::Client,
        ch: &Channel,
        d: &Delivery,
    ) -> Result<(), AlertError> {
        let timeout = self.settings.timeout;
        let send = async {
            match ch.kind {
                ChannelKind::Webhook => {
                    let url = ch.url.as_deref().unwrap_or_default();
                    let secret = ch.secret.as_deref().unwrap_or_default();
                    let ts = now_ms() / 1000;
                    webhook::send(client, url, secret, d, ts, timeout).await
                }
                ChannelKind::Slack => {
                    slack::send(client, ch.url.as_deref().unwrap_or_default(), d, timeout).await
                }
                ChannelKind::Email => {
                    let details =
                        serde_json::to_string_pretty(&d.event.details).unwrap_or_default();
                    let mail = Mail {
                        to: ch.to.clone(),
                        subject: format!("[vigil] {}", d.event.summary),
                        body: format!(
                            "{}\n\nTenant: {}\nKind: {}\nDelivery: {}\n\n{details}\n",
                            d.event.summary,
                            d.tenant,
                            d.event.kind.as_str(),
                            d.id
                        ),
                        idempotency_key: d.id.clone(),
                    };
                    smtp::send(&self.settings.smtp, &mail).await
                }
            }
        };
        match tokio::time::timeout(timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(AlertError::Send(format!("timed out after {timeout:?}"))),
        }
    }

    /// Deletes finished deliveries planned before `now - retention`; returns how many.
    pub fn sweep(&self, now: u64) -> Result<usize, AlertError> {
        let cutoff = now.saturating_sub(self.settings.retention.as_millis() as u64);
        let mut removed = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .fs
                .scan(Space::AlertDeliveries, b"", after.as_deref(), false, 1024)?;
            let Some(last) = page.last() else { break };
            after = Some(last.0.clone());
            for (k, v) in &page {
                let d: Delivery = dec(k, v)?;
                if d.status != DeliveryStatus::Pending
                    && d.created_ms < cutoff
                    && self.fs.remove_if(Space::AlertDeliveries, k, v)?
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Starts attempts for due deliveries not already in flight, up to
    /// `concurrency` running at once; returns how many were started.
    async fn start_due(
        self: &Arc<Self>,
        client: &reqwest::Client,
        tasks: &mut JoinSet<Attempt>,
        inflight: &mut InFlight,
    ) -> Result<usize, AlertError> {
        let free = self.settings.concurrency.saturating_sub(tasks.len());
        if free == 0 {
            return Ok(0);
        }
        // In-flight deliveries keep their due entry until recorded: skip past them.
        let limit = free + inflight.len();
        let me = self.clone();
        let due = tokio::task::spawn_blocking(move || me.due(now_ms(), limit))
            .await
            .map_err(|e| AlertError::Send(e.to_string()))??;
        let mut started = 0;
        for (due_k, d) in due {
            if started == free || inflight.values().any(|k| *k == due_k) {
                continue;
            }
            started += 1;
            let key = due_k.clone();
            let me = self.clone();
            let client = client.clone();
            let handle = tasks.spawn(async move {
                let result = match me.channel(&d.tenant, &d.channel_id) {
                    Ok(ch) => me
                        .attempt(&client, &ch, &d)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(AlertError::NotFound(_)) => Err("channel was deleted".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                Attempt {
                    due: due_k,
                    tenant: d.tenant,
                    id: d.id,
                    attempts_before: d.attempts,
                    result,
                }
            });
            inflight.insert(handle.id(), key);
        }
        Ok(started)
    }

    /// Records a finished attempt off the async workers.
    async fn finish(
        self: &Arc<Self>,
        done: Result<(tokio::task::Id, Attempt), tokio::task::JoinError>,
        inflight: &mut InFlight,
    ) {
        let a = match done {
            Ok((id, a)) => {
                inflight.remove(&id);
                a
            }
            Err(e) => {
                // A panicked attempt: its delivery stays pending and is tried again.
                inflight.remove(&e.id());
                tracing::error!("alert delivery task failed: {e}");
                return;
            }
        };
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.record(a, now_ms())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("recording an alert attempt failed: {e}"),
            Err(e) => tracing::error!("recording an alert attempt panicked: {e}"),
        }
    }

    /// Stores the outcome of an attempt: delivered, retry later, or dead.
    fn record(&self, a: Attempt, now: u64) -> Result<(), AlertError> {
        let key = delivery_key(&a.tenant, &a.id);
        let s = &self.settings;
        let mut result = None;
        let delay = backoff(
            s.backoff_base,
            s.backoff_max,
            a.attempts_before + 1,
            random_u64(),
        );
        self.fs.transact(&mut |tx| {
            result = None;
            tx.remove(Space::AlertDue, &a.due)?;
            let Some(v) = tx.get(Space::AlertDeliveries, &key)? else {
                return Ok(());
            };
            let mut d: Delivery = dec(&key, &v)?;
            if d.status != DeliveryStatus::Pending || d.attempts != a.attempts_before {
                // Re-queued meanwhile (retry endpoint): its own due entry stands.
                return Ok(());
            }
            d.attempts += 1;
            match &a.result {
                Ok(()) => {
                    d.status = DeliveryStatus::Delivered;
                    d.delivered_ms = Some(now);
                }
                Err(e) => {
                    d.last_error = Some(e.chars().take(500).collect());
                    if d.attempts >= s.max_attempts {
                        d.status = DeliveryStatus::Dead;
                    } else {
                        d.next_attempt_ms = now + delay.as_millis() as u64;
                        tx.put(
                            Space::AlertDue,
                            &due_key(d.next_attempt_ms, &a.tenant, &a.id),
                            b"",
                        )?;
                    }
                }
            }
            tx.put(Space::AlertDeliveries, &key, &enc(&d)?)?;
            result = Some(d.status);
            Ok(())
        })?;
        let m = &self.metrics;
        match (result, &a.result) {
            (Some(DeliveryStatus::Delivered), _) => {
                Metrics::inc(&m.alerts_delivered);
                tracing::debug!(tenant = %a.tenant, delivery = %a.id, "alert delivered");
            }
            (Some(status), Err(e)) => {
                Metrics::inc(&m.alerts_failed_attempts);
                if status == DeliveryStatus::Dead {
                    Metrics::inc(&m.alerts_dead);
                    tracing::warn!(tenant = %a.tenant, delivery = %a.id, "alert dead-lettered: {e}");
                } else {
                    tracing::info!(tenant = %a.tenant, delivery = %a.id, "alert attempt failed, retrying in {delay:?}: {e}");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs the dispatcher until the task is aborted. Attempts run as
    /// independent tasks, so one slow receiver holds one of the `concurrency`
    /// slots, not the whole queue.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let client = match webhook::http_client() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("alert dispatcher not started: {e}");
                    return;
                }
            };
            let mut tasks = JoinSet::new();
            let mut inflight = InFlight::new();
            let mut next_sweep = tokio::time::Instant::now();
            loop {
                if tokio::time::Instant::now() >= next_sweep {
                    next_sweep += std::time::Duration::from_secs(3600);
                    let me = self.clone();
                    match tokio::task::spawn_blocking(move || me.sweep(now_ms())).await {
                        Ok(Ok(n)) if n > 0 => tracing::info!("{n} old alert deliveries deleted"),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!("alert delivery sweep failed: {e}"),
                        Err(e) => tracing::error!("alert delivery sweep panicked: {e}"),
                    }
                }
                let me = self.clone();
                let planned =
                    match tokio::task::spawn_blocking(move || me.plan_once(now_ms())).await {
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => {
                            tracing::error!("alert planning failed: {e}");
                            0
                        }
                        Err(e) => {
                            tracing::error!("alert planning panicked: {e}");
                            0
                        }
                    };
                if let Err(e) = self.start_due(&client, &mut tasks, &mut inflight).await {
                    tracing::error!("alert dispatch failed: {e}");
                }
                let me = self.clone();
                if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || me.pending_count()).await {
                    self.metrics
                        .alerts_pending
                        .store(n as u64, Ordering::Relaxed);
                }
                if planned >= PLAN_BATCH {
                    continue;
                }
                tokio::select! {
                    Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                        self.finish(done, &mut inflight).await
                    }
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                }
                while let Some(done) = tasks.try_join_next_with_id() {
                    self.finish(done, &mut inflight).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_the_upper_half() {
        let (b, m) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff(b, m, 1, 0), Duration::from_millis(50));
        assert_eq!(backoff(b, m, 1, 50), Duration::from_millis(100));
        assert_eq!(backoff(b, m, 3, 0), Duration::from_millis(200));
        assert_eq!(backoff(b, m, 30, u64::MAX), backoff(b, m, 30, u64::MAX));
        for attempts in 1..40 {
            for r in [0, 1, 7, 12345, u64::MAX] {
                let d = backoff(b, m, attempts, r);
                let full = (b * (1 << (attempts - 1).min(20))).min(m);
                assert!(d >= full / 2 && d <= full, "{attempts} {r} {d:?}");
            }
        }
    }
}
