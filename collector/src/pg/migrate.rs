//! Versioned, idempotent schema migrations.
//!
//! Each migration runs once, in its own transaction, recorded in
//! `schema_migrations`. A transaction-level advisory lock serialises
//! collectors and workers that start at the same time.

use super::{PgError, PgPool, wait};

/// Every migration, in order; never edit one that has shipped, append instead.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1_STATE), (2, V2_FINDINGS), (3, V3_INGEST)];

/// Collector state. `tenant_id` is on every row; rows that belong to the
/// collector itself (server CA, secrets) use the empty tenant ''.
const V1_STATE: &str = r#"
CREATE TABLE meta (
    tenant_id text NOT NULL,
    key text NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE TABLE tokens (
    tenant_id text NOT NULL,
    hash bytea PRIMARY KEY,
    record jsonb NOT NULL
);
CREATE TABLE agents (
    tenant_id text NOT NULL,
    agent_id text PRIMARY KEY,
    record jsonb NOT NULL
);
CREATE INDEX agents_tenant ON agents (tenant_id);
CREATE TABLE batches (
    tenant_id text NOT NULL,
    agent_id text NOT NULL,
    sequence bigint NOT NULL,
    received_ms bigint NOT NULL,
    records integer NOT NULL,
    body bytea NOT NULL,
    signature bytea NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, sequence)
);
CREATE TABLE deliveries (
    tenant_id text NOT NULL,
    agent_id text NOT NULL,
    last_sequence bigint NOT NULL,
    batches bigint NOT NULL,
    records bigint NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);
CREATE TABLE runs (
    tenant_id text NOT NULL,
    run_id text PRIMARY KEY,
    agent_id text NOT NULL,
    pending boolean NOT NULL,
    scheduled_ms bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX runs_pending ON runs (agent_id, run_id) WHERE pending;
CREATE TABLE schedule_cursors (
    tenant_id text NOT NULL,
    job_id text NOT NULL,
    at_ms bigint NOT NULL,
    PRIMARY KEY (tenant_id, job_id)
);
"#;

/// Findings state: one key-value table with a space column; every row
/// carries the tenant parsed from its tenant-prefixed key; plus the time-partitioned search table.
const V2_FINDINGS: &str = r#"
CREATE TABLE fx_kv (
    space smallint NOT NULL,
    tenant_id text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, key)
);
CREATE INDEX fx_kv_tenant ON fx_kv (tenant_id, space);
CREATE TABLE finding_search (
    tenant_id text NOT NULL,
    finding_id text NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen_ms bigint NOT NULL,
    asset text NOT NULL,
    rule_id text NOT NULL,
    severity text NOT NULL,
    severity_rank smallint NOT NULL,
    state text NOT NULL,
    check_kind text NOT NULL,
    job_id text NOT NULL,
    port integer,
    frameworks text[] NOT NULL,
    controls text[] NOT NULL,
    title text NOT NULL,
    doc tsvector NOT NULL,
    PRIMARY KEY (tenant_id, finding_id, first_seen)
) PARTITION BY RANGE (first_seen);
CREATE INDEX finding_search_doc ON finding_search USING GIN (doc);
CREATE INDEX finding_search_tenant ON finding_search (tenant_id, last_seen_ms);
"#;

/// Scale-out ingest: per-agent high-water mark of batches published to
/// JetStream and acknowledged to the agent, shared by every collector.
const V3_INGEST: &str = r#"
CREATE TABLE published (
    tenant_id text NOT NULL,
    agent_id text NOT NULL,
    last_sequence bigint NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);
"#;

/// Creates the pool's schema if needed and applies missing migrations.
pub fn migrate(pool: &PgPool) -> Result<Vec<i32>, PgError> {
    let mut client = pool.get()?;
    // The schema name was validated as a plain identifier.
    let schema = pool.schema();
    let mut applied = Vec::new();
    let tx = wait(client.transaction())?;
    // Fixed key: one migrator per database at a time.
    wait(tx.execute("SELECT pg_advisory_xact_lock(7461000)", &[]))?;
    wait(tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         SET LOCAL search_path TO {schema}, public;"
    )))?;
    for (version, sql) in MIGRATIONS {
        let done = wait(tx.query_opt(
            &format!("SELECT 1 FROM {schema}.schema_migrations WHERE version = $1"),
            &[version],
        ))?;
        if done.is_some() {
            continue;
        }
        wait(tx.batch_execute(sql))?;
        wait(tx.execute(
            &format!("INSERT INTO {schema}.schema_migrations (version) VALUES ($1)"),
            &[version],
        ))?;
        applied.push(*version);
    }
    wait(tx.commit())?;
    if !applied.is_empty() {
        tracing::info!("postgres schema {schema}: applied migrations {applied:?}");
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_idempotent() {
        let Some(pool) = super::super::test_support::pool("migrate") else {
            return;
        };
        // test_support already migrated once: a second run applies nothing.
        assert_eq!(super::migrate(&pool).unwrap(), Vec::<i32>::new());
        let mut c = pool.get().unwrap();
        let n: i64 = super::wait(c.query_one("SELECT count(*) FROM schema_migrations", &[]))
            .unwrap()
            .get(0);
        assert_eq!(n, super::MIGRATIONS.len() as i64);
        let _ = &mut c;
    }
}
