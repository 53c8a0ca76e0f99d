//! Collector counters, rendered in the Prometheus text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::Store;

/// Monotonic counters and gauges updated by the transport.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections accepted (TLS handshake completed).
    pub connections_total: AtomicU64,
    /// Connections currently open.
    pub connections_active: AtomicU64,
    /// Handshakes that failed (bad, foreign-tenant or revoked certificates...).
    pub handshakes_failed: AtomicU64,
    /// Agents enrolled.
    pub enrollments: AtomicU64,
    /// Enrolment attempts refused.
    pub enrollments_refused: AtomicU64,
    /// Certificates renewed.
    pub renewals: AtomicU64,
    /// Batches stored.
    pub batches_stored: AtomicU64,
    /// Replayed batches dropped.
    pub batches_duplicate: AtomicU64,
    /// Batches refused (signature, identity, unauthenticated).
    pub batches_rejected: AtomicU64,
    /// Records stored.
    pub records_stored: AtomicU64,
    /// Acks sent.
    pub acks_sent: AtomicU64,
    /// Batches applied by the findings pipeline.
    pub findings_batches_processed: AtomicU64,
    /// Records evaluated against the rules.
    pub findings_records_evaluated: AtomicU64,
    /// Findings seen for the first time.
    pub findings_new: AtomicU64,
    /// Findings resolved.
    pub findings_resolved: AtomicU64,
    /// Findings reopened.
    pub findings_reopened: AtomicU64,
    /// Change events recorded.
    pub change_events: AtomicU64,
    /// Search documents committed to the index.
    pub index_docs_committed: AtomicU64,
    /// Pipeline failures (skipped batches, failed passes).
    pub findings_errors: AtomicU64,
    /// Stored batches not yet processed (gauge).
    pub findings_lag_batches: AtomicU64,
    /// Scheduled runs sent to agents (resends after a reconnect included).
    pub runs_dispatched: AtomicU64,
    /// Scheduled runs the agents reported as succeeded.
    pub runs_succeeded: AtomicU64,
    /// Scheduled runs that failed or were never reported.
    pub runs_failed: AtomicU64,
    /// Scheduled runs superseded before they could start.
    pub runs_missed: AtomicU64,
    /// Alert deliveries accepted by their receiver.
    pub alerts_delivered: AtomicU64,
    /// Alert delivery attempts that failed.
    pub alerts_failed_attempts: AtomicU64,
    /// Alert deliveries dead-lettered.
    pub alerts_dead: AtomicU64,
    /// Alert deliveries planned during a mute window.
    pub alerts_muted: AtomicU64,
    /// Alert deliveries waiting for an attempt (gauge).
    pub alerts_pending: AtomicU64,
    /// Store flushes by the collector-wide group commit.
    pub group_commits: AtomicU64,
    /// Batches waiting for an ingest slot (gauge; backpressure when > 0).
    pub ingest_waiting: AtomicU64,
}

fn line(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric, including per-tenant totals read from the store.
    pub fn render(&self, store: &dyn Store) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, kind, help, v) in [
            (
                "vigil_connections_total",
                "counter",
                "QUIC connections accepted.",
                get(&self.connections_total),
            ),
            (
                "vigil_connections_active",
                "gauge",
                "QUIC connections open.",
                get(&self.connections_active),
            ),
            (
                "vigil_handshakes_failed_total",
                "counter",
                "Connections whose handshake failed.",
                get(&self.handshakes_failed),
            ),
            (
                "vigil_enrollments_total",
                "counter",
                "Agents enrolled.",
                get(&self.enrollments),
            ),
            (
                "vigil_enrollments_refused_total",
                "counter",
                "Enrolment attempts refused.",
                get(&self.enrollments_refused),
            ),
            (
                "vigil_renewals_total",
                "counter",
                "Agent certificates renewed.",
                get(&self.renewals),
            ),
            (
                "vigil_batches_stored_total",
                "counter",
                "Result batches durably stored.",
                get(&self.batches_stored),
            ),
            (
                "vigil_batches_duplicate_total",
                "counter",
                "Replayed batches dropped.",
                get(&self.batches_duplicate),
            ),
            (
                "vigil_batches_rejected_total",
                "counter",
                "Batches refused.",
                get(&self.batches_rejected),
            ),
            (
                "vigil_records_stored_total",
                "counter",
                "Result records durably stored since start.",
                get(&self.records_stored),
            ),
            (
                "vigil_group_commits_total",
                "counter",
                "Store flushes, each acknowledging every batch stored before it.",
                get(&self.group_commits),
            ),
            (
                "vigil_ingest_waiting",
                "gauge",
                "Received batches waiting for an ingest slot (backpressure).",
                get(&self.ingest_waiting),
            ),
            (
                "vigil_acks_sent_total",
                "counter",
                "Acks sent to agents.",
                get(&self.acks_sent),
            ),
            (
                "vigil_findings_batches_processed_total",
                "counter",
                "Batches applied by the findings pipeline.",
                get(&self.findings_batches_processed),
            ),
            (
                "vigil_findings_records_evaluated_total",
                "counter",
                "Records evaluated against the rules.",
                get(&self.findings_records_evaluated),
            ),
            (
                "vigil_findings_new_total",
                "counter",
                "Findings seen for the first time.",
                get(&self.findings_new),
            ),
            (
                "vigil_findings_resolved_total",
                "counter",
                "Findings resolved.",
                get(&self.findings_resolved),
            ),
            (
                "vigil_findings_reopened_total",
                "counter",
                "Findings reopened.",
                get(&self.findings_reopened),
            ),
            (
                "vigil_change_events_total",
                "counter",
                "Change events recorded.",
                get(&self.change_events),
            ),
            (
                "vigil_index_docs_committed_total",
                "counter",
                "Search documents committed.",
                get(&self.index_docs_committed),
            ),
            (
                "vigil_findings_errors_total",
                "counter",
                "Findings pipeline failures.",
                get(&self.findings_errors),
            ),
            (
                "vigil_findings_lag_batches",
                "gauge",
                "Stored batches not yet processed by the findings pipeline.",
                get(&self.findings_lag_batches),
            ),
            (
                "vigil_runs_dispatched_total",
                "counter",
                "Scheduled scan runs sent to agents.",
                get(&self.runs_dispatched),
            ),
            (
                "vigil_runs_succeeded_total",
                "counter",
                "Scheduled scan runs that succeeded.",
                get(&self.runs_succeeded),
            ),
            (
                "vigil_runs_failed_total",
                "counter",
                "Scheduled scan runs that failed or timed out.",
                get(&self.runs_failed),
            ),
            (
                "vigil_runs_missed_total",
                "counter",
                "Scheduled scan runs superseded before they started.",
                get(&self.runs_missed),
            ),
            (
                "vigil_alerts_delivered_total",
                "counter",
                "Alert deliveries accepted by their receiver.",
                get(&self.alerts_delivered),
            ),
            (
                "vigil_alerts_failed_attempts_total",
                "counter",
                "Alert delivery attempts that failed (each is retried or dead-lettered).",
                get(&self.alerts_failed_attempts),
            ),
            (
                "vigil_alerts_dead_total",
                "counter",
                "Alert deliveries dead-lettered after the last attempt.",
                get(&self.alerts_dead),
            ),
            (
                "vigil_alerts_muted_total",
                "counter",
                "Alert deliveries recorded as muted instead of sent.",
                get(&self.alerts_muted),
            ),
            (
                "vigil_alerts_pending",
                "gauge",
                "Alert deliveries waiting for an attempt.",
                get(&self.alerts_pending),
            ),
        ] {
            line(&mut out, name, kind, help, v);
        }
        match store.all_deliveries() {
            Ok(rows) => {
                let mut per_tenant = std::collections::BTreeMap::<String, (u64, u64)>::new();
                for (tenant, _, c) in rows {
                    let e = per_tenant.entry(tenant.to_string()).or_default();
                    e.0 += c.batches;
                    e.1 += c.records;
                }
                let _ = writeln!(
                    out,
                    "# HELP vigil_tenant_records_stored Records held per tenant."
                );
                let _ = writeln!(out, "# TYPE vigil_tenant_records_stored gauge");
                for (t, (_, r)) in &per_tenant {
                    let _ = writeln!(out, "vigil_tenant_records_stored{{tenant=\"{t}\"}} {r}");
                }
                let _ = writeln!(
                    out,
                    "# HELP vigil_tenant_batches_stored Batches held per tenant."
                );
                let _ = writeln!(out, "# TYPE vigil_tenant_batches_stored gauge");
                for (t, (b, _)) in &per_tenant {
                    let _ = writeln!(out, "vigil_tenant_batches_stored{{tenant=\"{t}\"}} {b}");
                }
            }
            Err(e) => tracing::warn!("metrics: cannot read delivery counts: {e}"),
        }
        out
    }
}
