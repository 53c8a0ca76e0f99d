//! The background processor and the operations behind the findings CLI.
//!
//! The processor runs beside ingest, never on the ack path: the session only
//! signals a [`tokio::sync::Notify`] after storing a batch. Each pass reads, per
//! agent, the stored batches past its processing cursor, applies them with
//! several agents' batches per transaction (see [`super::apply_batches`]), then drains the index outbox into one Tantivy commit.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::{AgentId, SignedBatch, TenantId, VerifyingKey};
use rules::RuleSet;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::changes::{AssetState, ChangeEvent, ChangeType};
use super::posture::{self, Posture, PostureSnapshot};
use super::store::{FindingError, FindingStore, SledFindingStore, Space};
use super::{
    EvaluatedBatch, FindingRecord, Suppression, SuppressionKind, apply_batches, asset_key, cursor,
    dec, enc, put_change, put_finding, tenant_key, tenant_prefix,
};
use crate::metrics::Metrics;
use crate::search::{IndexDoc, IndexOptions, SearchIndex, SearchResults};
use crate::store::Store;
use crate::time::now_ms;

/// Findings search served by another backend than the local Tantivy index
/// (PostgreSQL full-text search in scale-out mode).
pub trait ExternalSearch: Send + Sync + 'static {
    /// Ids of `tenant`'s findings matching `query` (docs/search.md), best
    /// first, at most `limit`.
    fn search_ids(
        &self,
        tenant: &str,
        query: &str,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<String>, FindingError>;
}

/// Tunables of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Batches applied per agent before moving to the next agent.
    pub batches_per_agent: usize,
    /// Outbox entries indexed per commit.
    pub index_chunk: usize,
    /// Records (across agents) applied per findings transaction.
    pub tx_records: usize,
    /// An asset not observed for this long gets an ASSET_DISAPPEARED event.
    pub disappear_after: Duration,
    /// Shortest interval between automatic posture history recomputations per tenant.
    pub history_interval: Duration,
    /// Index writer sizing.
    pub index: IndexOptions,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            batches_per_agent: 64,
            index_chunk: 20_000,
            tx_records: 10_000,
            disappear_after: Duration::from_secs(7 * 86_400),
            history_interval: Duration::from_secs(10),
            index: IndexOptions::default(),
        }
    }
}

/// Result of one processing pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassStats {
    /// Batches applied.
    pub batches: u64,
    /// Records evaluated.
    pub records: u64,
    /// Documents indexed.
    pub indexed: u64,
    /// Whether stored batches remain unprocessed.
    pub backlog: bool,
}

/// The findings pipeline of one collector.
pub struct Pipeline {
    store: Arc<dyn Store>,
    fs: Arc<dyn FindingStore>,
    rules: Arc<RuleSet>,
    index: SearchIndex,
    metrics: Arc<Metrics>,
    opts: PipelineOptions,
    version: AtomicU64,
    // Serialises outbox drains so an older document never overwrites a newer one.
    drain_lock: Mutex<()>,
    // Serialises processing passes (background task, offline CLI, tests).
    pass_lock: Mutex<()>,
    keys: Mutex<HashMap<AgentId, VerifyingKey>>,
    history_due: Mutex<HashMap<String, (Instant, Duration)>>,
    last_sweep: Mutex<Option<Instant>>,
    external: std::sync::OnceLock<Arc<dyn ExternalSearch>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves no broken invariant behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pipeline {
    /// Opens the pipeline over the collector store (which must be sled-backed)
    /// with its index in `data_dir/index`.
    pub fn open(
        data_dir: &Path,
        store: Arc<dyn Store>,
        rules: Arc<RuleSet>,
        metrics: Arc<Metrics>,
        opts: PipelineOptions,
    ) -> Result<Self, FindingError> {
        let db = store.sled_db().ok_or_else(|| {
            FindingError::Backend("the findings pipeline needs the sled store".into())
        })?;
        let fs: Arc<dyn FindingStore> = Arc::new(SledFindingStore::open(db)?);
        let index = SearchIndex::open(&data_dir.join("index"), opts.index)?;
        Ok(Self::with_parts(store, fs, rules, index, metrics, opts))
    }

    /// Assembles a pipeline from its parts.
    pub fn with_parts(
        store: Arc<dyn Store>,
        fs: Arc<dyn FindingStore>,
        rules: Arc<RuleSet>,
        index: SearchIndex,
        metrics: Arc<Metrics>,
        opts: PipelineOptions,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self {
            store,
            fs,
            rules,
            index,
            metrics,
            opts,
            version: AtomicU64::new(seed),
            drain_lock: Mutex::new(()),
            pass_lock: Mutex::new(()),
            keys: Mutex::new(HashMap::new()),
            history_due: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(None),
            external: std::sync::OnceLock::new(),
        }
    }

    /// Answers searches from `search` instead of the local index (once; later calls are ignored).
    pub fn set_external_search(&self, search: Arc<dyn ExternalSearch>) {
        let _ = self.external.set(search);
    }

    /// The findings state.
    pub fn finding_store(&self) -> &Arc<dyn FindingStore> {
        &self.fs
    }

    /// The rule set in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The search index.
    pub fn index(&self) -> &SearchIndex {
        &self.index
    }

    fn next_version(&self) -> u64 {
        self.version.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs passes until no stored batch is left unprocessed and the index is current.
    pub fn catch_up(&self) -> Result<PassStats, FindingError> {
        let mut total = PassStats::default();
        loop {
            let s = self.run_once(now_ms())?;
            total.batches += s.batches;
            total.records += s.records;
            total.indexed += s.indexed;
            if !s.backlog {
                return Ok(total);
            }
        }
    }

    /// Spawns the background processor, woken by `notify` and every few seconds.
    pub fn spawn(self: Arc<Self>, notify: Arc<Notify>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let me = self.clone();
                let backlog = match tokio::task::spawn_blocking(move || me.run_once(now_ms())).await
                {
                    Ok(Ok(s)) => s.backlog,
                    Ok(Err(e)) => {
                        Metrics::inc(&self.metrics.findings_errors);
                        tracing::error!("findings pass failed: {e}");
                        false
                    }
                    Err(e) => {
                        Metrics::inc(&self.metrics.findings_errors);
                        tracing::error!("findings pass panicked: {e}");
                        false
                    }
                };
                if backlog {
                    continue;
                }
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        })
    }

    fn agent_key(&self, agent: &AgentId) -> Result<Option<VerifyingKey>, FindingError> {
        if let Some(k) = lock(&self.keys).get(agent) {
            return Ok(Some(*k));
        }
        let Some(rec) = self.store.agent(agent)? else {
            return Ok(None);
        };
        let key = protocol::verifying_key(&rec.signing_key).map_err(|e| FindingError::Corrupt {
            key: agent.to_string(),
            reason: e.to_string(),
        })?;
        lock(&self.keys).insert(agent.clone(), key);
        Ok(Some(key))
    }

    /// One pass: apply pending batches (bounded per agent), index, posture, sweep.
    pub fn run_once(&self, now: u64) -> Result<PassStats, FindingError> {
        let _pass = lock(&self.pass_lock);
        let mut stats = PassStats::default();
        let mut touched = BTreeSet::new();
        // Indexing runs on its own thread while later transactions are applied,
        // so the two halves of the pipeline use both cores.
        let (wake, woken) = std::sync::mpsc::channel::<()>();
        let (applied, drained) = std::thread::scope(|s| {
            let indexer = s.spawn(move || -> Result<u64, FindingError> {
                let mut n = 0;
                while woken.recv().is_ok() {
                    while woken.try_recv().is_ok() {}
                    n += self.drain_outbox()?;
                }
                Ok(n)
            });
            let applied = self.apply_all(&mut stats, &mut touched, &wake);
            drop(wake);
            let drained = indexer
                .join()
                .unwrap_or_else(|_| Err(FindingError::Index("indexer thread panicked".into())));
            (applied, drained)
        });
        applied?;
        stats.indexed = drained? + self.drain_outbox()?;
        for t in touched {
            self.maybe_record_history(&t, now)?;
        }
        let sweep_due =
            lock(&self.last_sweep).is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if sweep_due {
            *lock(&self.last_sweep) = Some(Instant::now());
            self.sweep_disappeared(now)?;
        }
        Ok(stats)
    }

    /// Applies pending batches (bounded per agent) in transactions of about
    /// `tx_records` records, waking the indexer after each.
    fn apply_all(
        &self,
        stats: &mut PassStats,
        touched: &mut BTreeSet<String>,
        wake: &std::sync::mpsc::Sender<()>,
    ) -> Result<(), FindingError> {
        let mut lag = 0u64;
        let mut pending = Vec::new();
        let mut pending_records = 0;
        for (tenant, agent, counts) in self.store.all_deliveries()? {
            let done = cursor(self.fs.as_ref(), &tenant, &agent)?;
            if counts.last_sequence <= done {
                continue;
            }
            let batches =
                self.store
                    .batches_from(&tenant, &agent, done + 1, self.opts.batches_per_agent)?;
            for b in &batches {
                // A batch that fails verification is applied as empty: it advances the cursor.
                let records = self.decode(&tenant, &agent, b).unwrap_or_default();
                pending_records += records.len();
                pending.push(EvaluatedBatch::new(
                    &self.rules,
                    &tenant,
                    &agent,
                    b.sequence,
                    &records,
                    self.next_version(),
                ));
            }
            if pending_records >= self.opts.tx_records {
                self.apply_pending(&mut pending, stats)?;
                pending_records = 0;
                let _ = wake.send(());
            }
            let now_done = batches.last().map_or(done, |b| b.sequence);
            lag += counts.last_sequence.saturating_sub(now_done);
            if counts.last_sequence > now_done {
                stats.backlog = true;
            }
            if !batches.is_empty() {
                touched.insert(tenant.to_string());
            }
        }
        self.apply_pending(&mut pending, stats)?;
        self.metrics
            .findings_lag_batches
            .store(lag, Ordering::Relaxed);
        Ok(())
    }

    /// Applies the evaluated batches in one transaction and counts their effects.
    fn apply_pending(
        &self,
        pending: &mut Vec<EvaluatedBatch>,
        stats: &mut PassStats,
    ) -> Result<(), FindingError> {
        if pending.is_empty() {
            return Ok(());
        }
        let all = apply_batches(self.fs.as_ref(), pending)?;
        pending.clear();
        let m = &self.metrics;
        for effects in all.into_iter().filter(|e| e.applied) {
            stats.batches += 1;
            stats.records += effects.records;
            Metrics::inc(&m.findings_batches_processed);
            m.findings_records_evaluated
                .fetch_add(effects.records, Ordering::Relaxed);
            m.findings_new.fetch_add(effects.new, Ordering::Relaxed);
            m.findings_resolved
                .fetch_add(effects.resolved, Ordering::Relaxed);
            m.findings_reopened
                .fetch_add(effects.reopened, Ordering::Relaxed);
            m.change_events
                .fetch_add(effects.changes, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Verifies and decodes a stored batch; `None` (logged, counted) when it fails,
    /// so one bad batch cannot stall the agent's cursor forever.
    fn decode(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        b: &crate::store::StoredBatch,
    ) -> Option<Vec<protocol::Record>> {
        let signed = SignedBatch {
            body: b.body.clone(),
            signature: b.signature,
        };
        let result = match self.agent_key(agent) {
            Ok(Some(key)) => signed.verify(&key).map_err(|e| e.to_string()),
            Ok(None) => Err("unknown agent".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(body) if body.tenant == *tenant && body.agent == *agent => Some(body.records),
            Ok(_) => {
                Metrics::inc(&self.metrics.findings_errors);
                tracing::error!(
                    "batch {tenant}/{agent}#{}: identity mismatch, skipped",
                    b.sequence
                );
                None
            }
            Err(e) => {
                Metrics::inc(&self.metrics.findings_errors);
                tracing::error!("batch {tenant}/{agent}#{}: {e}, skipped", b.sequence);
                None
            }
        }
    }

    fn maybe_record_history(&self, tenant: &str, now: u64) -> Result<(), FindingError> {
        let due = lock(&self.history_due)
            .get(tenant)
            .is_none_or(|(at, wait)| at.elapsed() >= *wait);
        if due {
            let started = Instant::now();
            self.record_posture_history(tenant, now)?;
            // Big tenants are recomputed less often: at most ~5% of the time goes here.
            let wait = self.opts.history_interval.max(started.elapsed() * 20);
            lock(&self.history_due).insert(tenant.to_string(), (Instant::now(), wait));
        }
        Ok(())
    }

    /// Recomputes and stores posture history for every framework of `tenant`.
    pub fn record_posture_history(&self, tenant: &str, now: u64) -> Result<usize, FindingError> {
        posture::record_history(self.fs.as_ref(), &self.rules, tenant, now)
    }

    /// Indexes every outbox entry; returns documents written.
    pub fn drain_outbox(&self) -> Result<u64, FindingError> {
        let _guard = lock(&self.drain_lock);
        let mut written = 0;
        loop {
            let page = self
                .fs
                .scan(Space::Outbox, b"", None, false, self.opts.index_chunk)?;
            if page.is_empty() {
                return Ok(written);
            }
            let mut docs = Vec::with_capacity(page.len());
            for (k, _) in &page {
                let Some((&prefix, key)) = k.split_first() else {
                    continue;
                };
                match prefix {
                    b'f' => {
                        if let Some(v) = self.fs.get(Space::Findings, key)? {
                            docs.push(IndexDoc::Finding(Box::new(dec(key, &v)?)));
                        }
                    }
                    b'c' => {
                        if let Some(v) = self.fs.get(Space::Changes, key)? {
                            docs.push(IndexDoc::Change(Box::new(dec(key, &v)?)));
                        }
                    }
                    _ => tracing::warn!("unknown outbox entry dropped"),
                }
            }
            self.index.upsert(&docs)?;
            self.index.commit()?;
            written += docs.len() as u64;
            self.metrics
                .index_docs_committed
                .fetch_add(docs.len() as u64, Ordering::Relaxed);
            for (k, v) in &page {
                // A newer write re-queued it meanwhile: keep it for the next round.
                self.fs.remove_if(Space::Outbox, k, v)?;
            }
            if page.len() < self.opts.index_chunk {
                return Ok(written);
            }
        }
    }

    /// Drops the index and rebuilds it from the stored findings and change events.
    pub fn rebuild_index(&self) -> Result<u64, FindingError> {
        let _guard = lock(&self.drain_lock);
        self.index.clear()?;
        let mut n = 0u64;
        for space in [Space::Findings, Space::Changes] {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = self.fs.scan(space, b"", after.as_deref(), false, 10_000)?;
                let Some(last) = page.last() else { break };
                after = Some(last.0.clone());
                let mut docs = Vec::with_capacity(page.len());
                for (k, v) in &page {
                    docs.push(match space {
                        Space::Findings => IndexDoc::Finding(Box::new(dec(k, v)?)),
                        _ => IndexDoc::Change(Box::new(dec(k, v)?)),
                    });
                }
                self.index.add_new(&docs)?;
                n += docs.len() as u64;
            }
        }
        self.index.commit()?;
        tracing::info!("search index rebuilt: {n} documents");
        Ok(n)
    }

    /// Emits ASSET_DISAPPEARED for assets not observed within `disappear_after` of `now`.
    pub fn sweep_disappeared(&self, now: u64) -> Result<u64, FindingError> {
        let cutoff = now.saturating_sub(self.opts.disappear_after.as_millis() as u64);
        let mut emitted = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .fs
                .scan(Space::Assets, b"", after.as_deref(), false, 4096)?;
            let Some(last) = page.last() else { break };
            after = Some(last.0.clone());
            for (k, v) in &page {
                let st: AssetState = dec(k, v)?;
                if st.disappeared || st.last_observed_ms >= cutoff {
                    continue;
                }
                let version = self.next_version().to_be_bytes();
                let mut fired = false;
                self.fs.transact(&mut |tx| {
                    fired = false;
                    let Some(cur) = tx.get(Space::Assets, k)? else {
                        return Ok(());
                    };
                    let mut st: AssetState = dec(k, &cur)?;
                    if st.disappeared || st.last_observed_ms >= cutoff {
                        return Ok(());
                    }
                    st.disappeared = true;
                    tx.put(Space::Assets, k, &enc(&st)?)?;
                    let id = super::finding_id(
                        &st.tenant,
                        &st.asset,
                        "ASSET_DISAPPEARED",
                        &st.last_observed_ms.to_string(),
                    );
                    let ev = ChangeEvent {
                        id,
                        tenant: st.tenant.clone(),
                        asset: st.asset.clone(),
                        change: ChangeType::AssetDisappeared,
                        subject: st.asset.clone(),
                        before: Some(format!("last observed {}", st.last_observed_ms)),
                        after: None,
                        check: String::new(),
                        job_id: String::new(),
                        detected_ms: now,
                        port: None,
                    };
                    fired = true;
                    put_change(tx, &ev, &version)
                })?;
                if fired {
                    emitted += 1;
                    Metrics::inc(&self.metrics.change_events);
                }
            }
        }
        if emitted > 0 {
            self.drain_outbox()?;
        }
        Ok(emitted)
    }

    /// Searches `tenant`'s findings and change events.
    pub fn search(
        &self,
        tenant: &TenantId,
        query: &str,
        limit: usize,
        facets: bool,
    ) -> Result<SearchResults, FindingError> {
        self.search_page(tenant, query, limit, 0, facets)
    }

    /// One page of `tenant`'s findings and change events, skipping `offset` hits.
    pub fn search_page(
        &self,
        tenant: &TenantId,
        query: &str,
        limit: usize,
        offset: usize,
        facets: bool,
    ) -> Result<SearchResults, FindingError> {
        let Some(external) = self.external.get() else {
            return self
                .index
                .search_page(tenant.as_str(), query, limit, offset, facets, now_ms());
        };
        // Findings only, no facets; `total` counts the matches up to offset + limit.
        let started = Instant::now();
        let ids = external.search_ids(
            tenant.as_str(),
            query,
            limit.saturating_add(offset),
            now_ms(),
        )?;
        let mut hits = Vec::with_capacity(limit);
        for id in ids.iter().skip(offset) {
            let rec = match self.finding(tenant, id) {
                Ok(rec) => rec,
                // Deleted since the search: skip rather than fail the page.
                Err(FindingError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let doc = serde_json::to_value(&rec).map_err(|e| FindingError::Index(e.to_string()))?;
            hits.push(crate::search::Hit {
                kind: "finding".into(),
                score: 0.0,
                doc,
            });
        }
        Ok(SearchResults {
            total: ids.len() as u64,
            hits,
            facets: Default::default(),
            took_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        })
    }

    /// One finding of `tenant`.
    pub fn finding(&self, tenant: &TenantId, id: &str) -> Result<FindingRecord, FindingError> {
        let key = tenant_key(tenant.as_str(), id);
        match self.fs.get(Space::Findings, &key)? {
            Some(v) => dec(&key, &v),
            None => Err(FindingError::NotFound(format!("finding {id}"))),
        }
    }

    /// Sets (or with `None` clears) a finding's suppression; returns the finding.
    pub fn set_suppression(
        &self,
        tenant: &TenantId,
        id: &str,
        suppression: Option<Suppression>,
    ) -> Result<FindingRecord, FindingError> {
        if let Some(s) = &suppression {
            if s.reason.trim().is_empty() || s.owner.trim().is_empty() {
                return Err(FindingError::Invalid(
                    "a suppression needs a reason and an owner".into(),
                ));
            }
            if s.kind == SuppressionKind::AcceptedRisk && s.expires_ms.is_none() {
                return Err(FindingError::Invalid(
                    "an accepted risk needs an expiry".into(),
                ));
            }
        }
        let key = tenant_key(tenant.as_str(), id);
        let version = self.next_version().to_be_bytes();
        let mut out = None;
        self.fs.transact(&mut |tx| {
            let Some(v) = tx.get(Space::Findings, &key)? else {
                return Err(FindingError::NotFound(format!("finding {id}")));
            };
            let mut f: FindingRecord = dec(&key, &v)?;
            f.suppression = suppression.clone();
            put_finding(tx, &f, &version)?;
            out = Some(f);
            Ok(())
        })?;
        self.drain_outbox()?;
        out.ok_or_else(|| FindingError::NotFound(format!("finding {id}")))
    }

    /// Change events of `tenant`, newest first, optionally of one asset.
    pub fn changes(
        &self,
        tenant: &TenantId,
        asset: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChangeEvent>, FindingError> {
        let prefix = tenant_prefix(tenant.as_str());
        let mut out = Vec::new();
        let mut before: Option<Vec<u8>> = None;
        while out.len() < limit {
            let page = self
                .fs
                .scan(Space::Changes, &prefix, before.as_deref(), true, 1024)?;
            let Some(last) = page.last() else { break };
            before = Some(last.0.clone());
            for (k, v) in &page {
                let ev: ChangeEvent = dec(k, v)?;
                if asset.is_none_or(|a| a == ev.asset) && out.len() < limit {
                    out.push(ev);
                }
            }
        }
        Ok(out)
    }

    /// The asset's snapshot, baseline and pending drift.
    pub fn asset(&self, tenant: &TenantId, asset: &str) -> Result<AssetState, FindingError> {
        let key = asset_key(tenant.as_str(), asset);
        match self.fs.get(Space::Assets, &key)? {
            Some(v) => dec(&key, &v),
            None => Err(FindingError::NotFound(format!("asset {asset}"))),
        }
    }

    /// Accepts the asset's current snapshot as its baseline; returns the drift that was pending.
    pub fn accept_baseline(
        &self,
        tenant: &TenantId,
        asset: &str,
    ) -> Result<AssetState, FindingError> {
        let key = asset_key(tenant.as_str(), asset);
        let now = now_ms();
        let mut out = None;
        self.fs.transact(&mut |tx| {
            let Some(v) = tx.get(Space::Assets, &key)? else {
                return Err(FindingError::NotFound(format!("asset {asset}")));
            };
            let mut st: AssetState = dec(&key, &v)?;
            let before = st.clone();
            st.baseline = st.current.clone();
            st.drift.clear();
            st.baseline_accepted_ms = now;
            tx.put(Space::Assets, &key, &enc(&st)?)?;
            out = Some(before);
            Ok(())
        })?;
        out.ok_or_else(|| FindingError::NotFound(format!("asset {asset}")))
    }

    /// Current posture of `tenant` against `framework`.
    pub fn posture(&self, tenant: &TenantId, framework: &str) -> Result<Posture, FindingError> {
        posture::compute(
            self.fs.as_ref(),
            &self.rules,
            tenant.as_str(),
            framework,
            now_ms(),
        )
    }

    /// Stored posture history, newest first.
    pub fn posture_history(
        &self,
        tenant: &TenantId,
        framework: &str,
        limit: usize,
    ) -> Result<Vec<PostureSnapshot>, FindingError> {
        posture::history(self.fs.as_ref(), tenant.as_str(), framework, limit)
    }

    /// Processing cursor of an agent (for tests and diagnostics).
    pub fn cursor(&self, tenant: &TenantId, agent: &AgentId) -> Result<u64, FindingError> {
        cursor(self.fs.as_ref(), tenant, agent)
    }

    /// Outbox entries not yet indexed.
    pub fn outbox_len(&self) -> Result<usize, FindingError> {
        Ok(self
            .fs
            .scan(Space::Outbox, b"", None, false, usize::MAX)?
            .len())
    }
}
