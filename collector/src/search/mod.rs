//! Tantivy index of findings and change events.
//!
//! One logical index holds every tenant. Each document carries its tenant in
//! an indexed raw field that only [`SearchIndex::search`]'s separate `tenant`
//! argument can address: the user query is parsed by [`query::parse`], whose
//! field vocabulary has no tenant, and the compiled query is always wrapped as
//! `tenant-term AND user-query`.

pub mod query;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, FacetCollector, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, PhraseQuery, Query as TQuery, RangeQuery, RegexQuery, TermQuery,
};
use tantivy::schema::{
    FAST, Facet, FacetOptions, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT,
    Value as _,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

use crate::findings::FindingRecord;
use crate::findings::changes::ChangeEvent;
use crate::findings::store::FindingError;
use query::{FieldName, Node, SortKey, Value};

const DAY_MS: i64 = 86_400_000;

/// Most hits one search returns.
pub const MAX_LIMIT: usize = 1000;
/// Most hits a search may skip: deep pages cost a full top-k per request.
pub const MAX_OFFSET: usize = 100_000;

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    tenant: Field,
    doc_kind: Field,
    id: Field,
    severity: Field,
    sev_rank: Field,
    state: Field,
    supp_until: Field,
    port: Field,
    framework: Field,
    control: Field,
    rule: Field,
    asset: Field,
    change_type: Field,
    check: Field,
    job: Field,
    not_after: Field,
    first_seen: Field,
    last_seen: Field,
    text: Field,
    facets: Field,
    body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let num = INDEXED | FAST;
    let f = Fields {
        key: b.add_text_field("key", STRING),
        tenant: b.add_text_field("tenant", STRING),
        doc_kind: b.add_text_field("doc_kind", STRING),
        id: b.add_text_field("id", STRING),
        severity: b.add_text_field("severity", STRING),
        sev_rank: b.add_u64_field("sev_rank", num.clone()),
        state: b.add_text_field("state", STRING),
        supp_until: b.add_i64_field("supp_until", num.clone()),
        port: b.add_u64_field("port", num.clone()),
        framework: b.add_text_field("framework", STRING),
        control: b.add_text_field("control", STRING),
        rule: b.add_text_field("rule", STRING),
        asset: b.add_text_field("asset", STRING),
        change_type: b.add_text_field("change_type", STRING),
        check: b.add_text_field("check", STRING),
        job: b.add_text_field("job", STRING),
        not_after: b.add_i64_field("not_after", num.clone()),
        first_seen: b.add_i64_field("first_seen", num.clone()),
        last_seen: b.add_i64_field("last_seen", num),
        text: b.add_text_field("text", TEXT),
        facets: b.add_facet_field("facets", FacetOptions::default()),
        body: b.add_text_field("body", STORED),
    };
    (b.build(), f)
}

/// Writer sizing.
#[derive(Debug, Clone, Copy)]
pub struct IndexOptions {
    /// Indexing threads.
    pub threads: usize,
    /// Total indexing memory budget in bytes.
    pub heap_bytes: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        // One thread keeps ingest and rule evaluation responsive on small hosts.
        Self {
            threads: 1,
            heap_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A document to (re)index.
#[derive(Debug, Clone)]
pub enum IndexDoc {
    /// A finding.
    Finding(Box<FindingRecord>),
    /// A change event.
    Change(Box<ChangeEvent>),
}

impl IndexDoc {
    fn key(&self) -> String {
        match self {
            IndexDoc::Finding(f) => format!("f/{}/{}", f.tenant, f.id),
            IndexDoc::Change(c) => format!("c/{}/{}", c.tenant, c.id),
        }
    }
}

/// One search hit: the stored finding or change as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hit {
    /// `finding` or `change`.
    pub kind: String,
    /// Relevance (0 when sorted by a field).
    pub score: f32,
    /// The finding or change event.
    pub doc: serde_json::Value,
}

/// Search answer: total matches, the requested page and facet counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SearchResults {
    /// Documents matching.
    pub total: u64,
    /// Hits, in the requested order.
    pub hits: Vec<Hit>,
    /// `facet → [(value, count)]` for severity, rule, asset, control, state, type.
    pub facets: BTreeMap<String, Vec<(String, u64)>>,
    /// Search time in microseconds.
    pub took_us: u64,
}

/// The search index.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    f: Fields,
}

fn ix(e: impl std::fmt::Display) -> FindingError {
    FindingError::Index(e.to_string())
}

fn qerr(message: impl Into<String>) -> FindingError {
    FindingError::Query(query::QueryError {
        message: message.into(),
        offset: 0,
    })
}

fn facet_step(s: &str) -> String {
    // NUL separates facet steps; a NUL from an agent must not split one.
    s.replace('\0', " ")
}

const FACET_ROOTS: [&str; 6] = ["severity", "rule", "asset", "control", "state", "type"];

impl SearchIndex {
    /// Opens or creates the index in `dir`.
    pub fn open(dir: &Path, opts: IndexOptions) -> Result<Self, FindingError> {
        std::fs::create_dir_all(dir).map_err(ix)?;
        let (schema, f) = schema();
        let mmap = tantivy::directory::MmapDirectory::open(dir).map_err(ix)?;
        let index = Index::open_or_create(mmap, schema).map_err(|e| {
            FindingError::Index(format!(
                "{}: {e} (run `collector index rebuild` after removing the directory)",
                dir.display()
            ))
        })?;
        Self::with_index(index, f, opts)
    }

    /// A throw-away index in memory (tests).
    pub fn in_ram() -> Result<Self, FindingError> {
        let (schema, f) = schema();
        Self::with_index(Index::create_in_ram(schema), f, IndexOptions::default())
    }

    fn with_index(index: Index, f: Fields, opts: IndexOptions) -> Result<Self, FindingError> {
        // A collector restarted in the same process may still be dropping the
        // previous writer (a pass finishing on a blocking thread): wait for its lock.
        let deadline = Instant::now() + std::time::Duration::from_secs(15);
        let writer = loop {
            match index.writer_with_num_threads(opts.threads.max(1), opts.heap_bytes.max(16 << 20))
            {
                Ok(w) => break w,
                Err(tantivy::TantivyError::LockFailure(..)) if Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(ix(e)),
            }
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(ix)?;
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(writer),
            f,
        })
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, FindingError> {
        self.writer
            .lock()
            .map_err(|_| FindingError::Index("writer lock poisoned".into()))
    }

    fn document(&self, d: &IndexDoc, key: &str) -> Result<TantivyDocument, FindingError> {
        let f = &self.f;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.key, key);
        let facet = |doc: &mut TantivyDocument, path: &[&str]| {
            doc.add_facet(
                f.facets,
                Facet::from_path(path.iter().map(|s| facet_step(s))),
            );
        };
        match d {
            IndexDoc::Finding(r) => {
                doc.add_text(f.tenant, &r.tenant);
                doc.add_text(f.doc_kind, "finding");
                doc.add_text(f.id, &r.id);
                doc.add_text(f.severity, r.severity.as_str());
                doc.add_u64(f.sev_rank, r.severity as u64);
                doc.add_text(f.state, r.state.as_str());
                let until = match &r.suppression {
                    None => 0,
                    Some(s) => s
                        .expires_ms
                        .map_or(i64::MAX, |e| i64::try_from(e).unwrap_or(i64::MAX)),
                };
                doc.add_i64(f.supp_until, until);
                if let Some(p) = r.port {
                    doc.add_u64(f.port, u64::from(p));
                }
                if let Some(na) = r.not_after_ms {
                    doc.add_i64(f.not_after, na);
                }
                let mut frameworks: Vec<&str> =
                    r.mappings.iter().map(|m| m.framework.as_str()).collect();
                frameworks.sort();
                frameworks.dedup();
                for fw in frameworks {
                    doc.add_text(f.framework, fw);
                }
                for m in &r.mappings {
                    doc.add_text(f.control, &m.control);
                    facet(
                        &mut doc,
                        &["control", &format!("{}:{}", m.framework, m.control)],
                    );
                }
                doc.add_text(f.rule, &r.rule_id);
                doc.add_text(f.asset, &r.asset);
                doc.add_text(f.check, &r.check);
                doc.add_text(f.job, &r.job_id);
                doc.add_i64(f.first_seen, r.first_seen_ms as i64);
                doc.add_i64(f.last_seen, r.last_seen_ms as i64);
                doc.add_text(
                    f.text,
                    format!(
                        "{} {} {} {} {} {}",
                        r.title, r.evidence, r.location, r.asset, r.rule_id, r.remediation
                    ),
                );
                facet(&mut doc, &["severity", r.severity.as_str()]);
                facet(&mut doc, &["rule", &r.rule_id]);
                facet(&mut doc, &["asset", &r.asset]);
                facet(&mut doc, &["state", r.state.as_str()]);
                doc.add_text(f.body, serde_json::to_string(r).map_err(ix)?);
            }
            IndexDoc::Change(c) => {
                doc.add_text(f.tenant, &c.tenant);
                doc.add_text(f.doc_kind, "change");
                doc.add_text(f.id, &c.id);
                doc.add_text(f.change_type, c.change.as_str());
                if let Some(p) = c.port {
                    doc.add_u64(f.port, u64::from(p));
                }
                doc.add_text(f.asset, &c.asset);
                doc.add_text(f.check, &c.check);
                doc.add_text(f.job, &c.job_id);
                doc.add_i64(f.first_seen, c.detected_ms as i64);
                doc.add_i64(f.last_seen, c.detected_ms as i64);
                doc.add_text(
                    f.text,
                    format!(
                        "{} {} {} {} {}",
                        c.change.as_str(),
                        c.subject,
                        c.asset,
                        c.before.as_deref().unwrap_or(""),
                        c.after.as_deref().unwrap_or("")
                    ),
                );
                facet(&mut doc, &["type", c.change.as_str()]);
                facet(&mut doc, &["asset", &c.asset]);
                doc.add_text(f.body, serde_json::to_string(c).map_err(ix)?);
            }
        }
        Ok(doc)
    }

    /// Replaces (or adds) documents; visible after [`SearchIndex::commit`].
    pub fn upsert(&self, docs: &[IndexDoc]) -> Result<(), FindingError> {
        let w = self.writer()?;
        for d in docs {
            let key = d.key();
            w.delete_term(Term::from_field_text(self.f.key, &key));
            w.add_document(self.document(d, &key)?).map_err(ix)?;
        }
        Ok(())
    }

    /// Adds documents known to be absent (bulk rebuild): no delete per document.
    pub fn add_new(&self, docs: &[IndexDoc]) -> Result<(), FindingError> {
        let w = self.writer()?;
        for d in docs {
            w.add_document(self.document(d, &d.key())?).map_err(ix)?;
        }
        Ok(())
    }

    /// Removes every document (before a rebuild).
    pub fn clear(&self) -> Result<(), FindingError> {
        self.writer()?.delete_all_documents().map_err(ix)?;
        Ok(())
    }

    /// Commits pending changes and makes them searchable.
    pub fn commit(&self) -> Result<(), FindingError> {
        self.writer()?.commit().map_err(ix)?;
        self.reader.reload().map_err(ix)?;
        Ok(())
    }

    /// Documents in the index (all tenants).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn raw(&self, field: Field, v: &str) -> Box<dyn TQuery> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, v),
            IndexRecordOption::Basic,
        ))
    }

    fn text_query(&self, text: &str) -> Result<Box<dyn TQuery>, FindingError> {
        let mut analyzer = self.index.tokenizer_for_field(self.f.text).map_err(ix)?;
        let mut stream = analyzer.token_stream(text);
        let mut terms = Vec::new();
        while stream.advance() {
            terms.push(Term::from_field_text(self.f.text, &stream.token().text));
        }
        Ok(match terms.len() {
            // Only punctuation: matches nothing rather than everything.
            0 => Box::new(BooleanQuery::new(vec![])),
            1 => Box::new(TermQuery::new(
                terms.remove(0),
                IndexRecordOption::WithFreqs,
            )),
            _ => Box::new(PhraseQuery::new(terms)),
        })
    }

    fn regex(&self, field: Field, pattern: &str) -> Result<Box<dyn TQuery>, FindingError> {
        Ok(Box::new(
            RegexQuery::from_pattern(pattern, field)
                .map_err(|e| qerr(format!("pattern {pattern:?}: {e}")))?,
        ))
    }

    fn compile(
        &self,
        node: &Node,
        now_ms: u64,
        depth: usize,
    ) -> Result<Box<dyn TQuery>, FindingError> {
        if depth > query::MAX_DEPTH * 2 {
            return Err(qerr("query nested too deeply"));
        }
        Ok(match node {
            Node::And(v) => Box::new(BooleanQuery::new(
                v.iter()
                    .map(|n| Ok((Occur::Must, self.compile(n, now_ms, depth + 1)?)))
                    .collect::<Result<_, FindingError>>()?,
            )),
            Node::Or(v) => Box::new(BooleanQuery::new(
                v.iter()
                    .map(|n| Ok((Occur::Should, self.compile(n, now_ms, depth + 1)?)))
                    .collect::<Result<_, FindingError>>()?,
            )),
            Node::Not(n) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn TQuery>),
                (Occur::MustNot, self.compile(n, now_ms, depth + 1)?),
            ])),
            Node::Phrase(p) => self.text_query(p)?,
            Node::Word(w) => {
                if w.contains('*') || w.contains('?') {
                    let lower = w.to_lowercase();
                    if !lower
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '*' || c == '?')
                    {
                        return Err(qerr(format!(
                            "wildcard word {w:?} may only contain letters and digits"
                        )));
                    }
                    self.regex(self.f.text, &query::glob_to_regex(&lower))?
                } else {
                    self.text_query(w)?
                }
            }
            Node::Field(field, value) => self.field(*field, value, now_ms)?,
        })
    }

    fn field(
        &self,
        field: FieldName,
        value: &Value,
        now_ms: u64,
    ) -> Result<Box<dyn TQuery>, FindingError> {
        let f = &self.f;
        let string_field = |field: Field,
                            v: &Value,
                            norm: fn(&str) -> String|
         -> Result<Box<dyn TQuery>, FindingError> {
            match v {
                Value::Exact(s) => Ok(self.raw(field, &norm(s))),
                Value::Glob(g) => self.regex(field, &query::glob_to_regex(&norm(g))),
                Value::Range(..) => Err(qerr(
                    "ranges apply to port, severity, days_left and time fields",
                )),
            }
        };
        let lower = |s: &str| s.to_lowercase();
        let upper = |s: &str| s.to_uppercase();
        let keep = |s: &str| s.to_string();
        match field {
            FieldName::Severity => match value {
                Value::Range(lo, hi) => {
                    let rank = |s: &String| -> Result<u64, FindingError> {
                        severity_rank(s).ok_or_else(|| qerr(format!("unknown severity {s:?}")))
                    };
                    let map = |b: &Bound<String>| -> Result<Bound<Term>, FindingError> {
                        Ok(match b {
                            Bound::Included(s) => {
                                Bound::Included(Term::from_field_u64(f.sev_rank, rank(s)?))
                            }
                            Bound::Excluded(s) => {
                                Bound::Excluded(Term::from_field_u64(f.sev_rank, rank(s)?))
                            }
                            Bound::Unbounded => Bound::Unbounded,
                        })
                    };
                    Ok(Box::new(RangeQuery::new(map(lo)?, map(hi)?)))
                }
                v => string_field(f.severity, v, lower),
            },
            FieldName::State => string_field(f.state, value, lower),
            FieldName::Suppressed => {
                let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
                let active = Box::new(RangeQuery::new(
                    Bound::Excluded(Term::from_field_i64(f.supp_until, now)),
                    Bound::Unbounded,
                ));
                match value {
                    Value::Exact(s) if s.eq_ignore_ascii_case("true") => Ok(active),
                    Value::Exact(s) if s.eq_ignore_ascii_case("false") => {
                        Ok(Box::new(BooleanQuery::new(vec![
                            (Occur::Must, self.raw(f.doc_kind, "finding")),
                            (Occur::MustNot, active),
                        ])))
                    }
                    _ => Err(qerr("suppressed: takes true or false")),
                }
            }
            FieldName::Port => {
                let parse = |s: &String| -> Result<u64, FindingError> {
                    s.parse::<u16>()
                        .map(u64::from)
                        .map_err(|_| qerr(format!("{s:?} is not a port")))
                };
                self.numeric(f.port, value, parse, Term::from_field_u64)
            }
            FieldName::Framework => string_field(f.framework, value, lower),
            FieldName::Control => string_field(f.control, value, keep),
            FieldName::Rule => string_field(f.rule, value, keep),
            FieldName::Asset => string_field(f.asset, value, keep),
            FieldName::Kind => string_field(f.doc_kind, value, lower),
            FieldName::Type => string_field(f.change_type, value, upper),
            FieldName::Check => string_field(f.check, value, lower),
            FieldName::Job => string_field(f.job, value, keep),
            FieldName::Id => string_field(f.id, value, lower),
            FieldName::DaysLeft => {
                // days_left < N  ⇔  not_after < now + N days: evaluated now, not at scan time.
                let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
                let parse = |s: &String| -> Result<i64, FindingError> {
                    let days: i64 = s
                        .parse()
                        .map_err(|_| qerr(format!("{s:?} is not a number of days")))?;
                    days.checked_mul(DAY_MS)
                        .and_then(|d| now.checked_add(d))
                        .ok_or_else(|| qerr("days_left out of range"))
                };
                match value {
                    Value::Exact(s) => {
                        let lo = parse(s)?;
                        Ok(Box::new(RangeQuery::new(
                            Bound::Included(Term::from_field_i64(f.not_after, lo)),
                            Bound::Excluded(Term::from_field_i64(
                                f.not_after,
                                lo.saturating_add(DAY_MS),
                            )),
                        )))
                    }
                    v => self.numeric(f.not_after, v, parse, Term::from_field_i64),
                }
            }
            FieldName::LastSeen | FieldName::FirstSeen => {
                let target = if field == FieldName::LastSeen {
                    f.last_seen
                } else {
                    f.first_seen
                };
                let parse = |s: &String| -> Result<i64, FindingError> {
                    query::parse_time(s, now_ms).ok_or_else(|| {
                        qerr(format!(
                            "{s:?} is not a time (now-7d, 2024-05-01, RFC 3339)"
                        ))
                    })
                };
                match value {
                    // A bare date means that whole day.
                    Value::Exact(s) => {
                        let lo = parse(s)?;
                        Ok(Box::new(RangeQuery::new(
                            Bound::Included(Term::from_field_i64(target, lo)),
                            Bound::Excluded(Term::from_field_i64(
                                target,
                                lo.saturating_add(DAY_MS),
                            )),
                        )))
                    }
                    v => self.numeric(target, v, parse, Term::from_field_i64),
                }
            }
        }
    }

    /// An exact or range query on a numeric field; `term` builds the field's term type.
    fn numeric<T>(
        &self,
        field: Field,
        value: &Value,
        parse: impl Fn(&String) -> Result<T, FindingError>,
        term: fn(Field, T) -> Term,
    ) -> Result<Box<dyn TQuery>, FindingError> {
        let map = |b: &Bound<String>| -> Result<Bound<Term>, FindingError> {
            Ok(match b {
                Bound::Included(s) => Bound::Included(term(field, parse(s)?)),
                Bound::Excluded(s) => Bound::Excluded(term(field, parse(s)?)),
                Bound::Unbounded => Bound::Unbounded,
            })
        };
        match value {
            Value::Exact(s) => Ok(Box::new(TermQuery::new(
                term(field, parse(s)?),
                IndexRecordOption::Basic,
            ))),
            Value::Glob(_) => Err(qerr("wildcards do not apply to numbers")),
            Value::Range(lo, hi) => Ok(Box::new(RangeQuery::new(map(lo)?, map(hi)?))),
        }
    }

    /// Runs `query_text` restricted to `tenant`. `limit` is capped at [`MAX_LIMIT`].
    pub fn search(
        &self,
        tenant: &str,
        query_text: &str,
        limit: usize,
        facets: bool,
        now_ms: u64,
    ) -> Result<SearchResults, FindingError> {
        self.search_page(tenant, query_text, limit, 0, facets, now_ms)
    }

    /// Like [`Self::search`], skipping the first `offset` hits (capped at [`MAX_OFFSET`]);
    /// total and facets still count every match.
    pub fn search_page(
        &self,
        tenant: &str,
        query_text: &str,
        limit: usize,
        offset: usize,
        facets: bool,
        now_ms: u64,
    ) -> Result<SearchResults, FindingError> {
        if offset > MAX_OFFSET {
            return Err(qerr(format!("offset must be at most {MAX_OFFSET}")));
        }
        let started = Instant::now();
        let parsed = query::parse(query_text)?;
        let user: Box<dyn TQuery> = match &parsed.root {
            Some(n) => self.compile(n, now_ms, 0)?,
            None => Box::new(AllQuery),
        };
        // The tenant filter is a separate Must clause: no user text reaches it.
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.raw(self.f.tenant, tenant)),
            (Occur::Must, user),
        ]);
        let searcher = self.reader.searcher();
        let limit = limit.clamp(1, MAX_LIMIT);
        let mut fc = FacetCollector::for_field("facets");
        if facets {
            for root in FACET_ROOTS {
                fc.add_facet(Facet::from_path([root]));
            }
        }
        let top = TopDocs::with_limit(limit).and_offset(offset);
        let (total, addrs, counts): (
            usize,
            Vec<(f32, DocAddress)>,
            Option<tantivy::collector::FacetCounts>,
        ) = match parsed.sort {
            None | Some((SortKey::Score, _)) => {
                if facets {
                    let (n, d, c) = searcher
                        .search(&q, &(Count, top.order_by_score(), fc))
                        .map_err(ix)?;
                    (n, d, Some(c))
                } else {
                    let (n, d) = searcher
                        .search(&q, &(Count, top.order_by_score()))
                        .map_err(ix)?;
                    (n, d, None)
                }
            }
            Some((key, desc)) => {
                let order = if desc { Order::Desc } else { Order::Asc };
                let (name, signed) = match key {
                    SortKey::LastSeen => ("last_seen", true),
                    SortKey::FirstSeen => ("first_seen", true),
                    SortKey::DaysLeft => ("not_after", true),
                    SortKey::Severity => ("sev_rank", false),
                    SortKey::Port => ("port", false),
                    SortKey::Score => ("", false),
                };
                let (n, docs, c) = if signed {
                    let coll = top.order_by_fast_field::<i64>(name, order);
                    if facets {
                        let (n, d, c) = searcher.search(&q, &(Count, coll, fc)).map_err(ix)?;
                        (
                            n,
                            d.into_iter().map(|(_, a)| a).collect::<Vec<_>>(),
                            Some(c),
                        )
                    } else {
                        let (n, d) = searcher.search(&q, &(Count, coll)).map_err(ix)?;
                        (n, d.into_iter().map(|(_, a)| a).collect(), None)
                    }
                } else {
                    let coll = top.order_by_fast_field::<u64>(name, order);
                    if facets {
                        let (n, d, c) = searcher.search(&q, &(Count, coll, fc)).map_err(ix)?;
                        (
                            n,
                            d.into_iter().map(|(_, a)| a).collect::<Vec<_>>(),
                            Some(c),
                        )
                    } else {
                        let (n, d) = searcher.search(&q, &(Count, coll)).map_err(ix)?;
                        (n, d.into_iter().map(|(_, a)| a).collect(), None)
                    }
                };
                (n, docs.into_iter().map(|a| (0.0, a)).collect(), c)
            }
        };
        let mut hits = Vec::with_capacity(addrs.len());
        for (score, addr) in addrs {
            let doc: TantivyDocument = searcher.doc(addr).map_err(ix)?;
            let body = doc
                .get_first(self.f.body)
                .and_then(|v| v.as_str())
                .unwrap_or("{}");
            let json: serde_json::Value = serde_json::from_str(body).map_err(ix)?;
            let kind = if json.get("change").is_some() {
                "change"
            } else {
                "finding"
            };
            hits.push(Hit {
                kind: kind.to_string(),
                score,
                doc: json,
            });
        }
        let mut facet_map = BTreeMap::new();
        if let Some(counts) = counts {
            for root in FACET_ROOTS {
                let top = counts.top_k(Facet::from_path([root]), 20);
                let values: Vec<(String, u64)> = top
                    .into_iter()
                    .map(|(facet, n)| {
                        let path = facet.to_path();
                        (path[1..].join("/"), n)
                    })
                    .collect();
                if !values.is_empty() {
                    facet_map.insert(root.to_string(), values);
                }
            }
        }
        Ok(SearchResults {
            total: total as u64,
            hits,
            facets: facet_map,
            took_us: started.elapsed().as_micros() as u64,
        })
    }
}

/// Rank of a severity name (info = 0 … critical = 4).
pub fn severity_rank(s: &str) -> Option<u64> {
    match s.to_ascii_lowercase().as_str() {
        "info" => Some(0),
        "low" => Some(1),
        "medium" => Some(2),
        "high" => Some(3),
        "critical" => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{FindingState, Suppression, SuppressionKind};
    use rules::{Mapping, Severity};

    const NOW: u64 = 1_800_000_000_000;

    fn finding(tenant: &str, id: &str, rule: &str, severity: Severity, port: u16) -> FindingRecord {
        FindingRecord {
            id: id.into(),
            tenant: tenant.into(),
            asset: format!("host-{port}.example"),
            rule_id: rule.into(),
            title: format!("Title of {rule}"),
            severity,
            check: "port".into(),
            job_id: "nightly".into(),
            location: format!("10.0.0.1:{port}"),
            evidence: "banner=secretword".into(),
            remediation: "fix".into(),
            mappings: vec![Mapping {
                framework: "iso27001".into(),
                control: "A.8.24".into(),
                title: "Use of cryptography".into(),
            }],
            state: FindingState::Open,
            first_seen_ms: NOW - 10 * DAY_MS as u64,
            last_seen_ms: NOW - DAY_MS as u64,
            resolved_ms: None,
            reopened: 0,
            port: Some(port),
            not_after_ms: Some(NOW as i64 + 5 * DAY_MS),
            suppression: None,
            history: Vec::new(),
        }
    }

    fn index() -> SearchIndex {
        let ix = SearchIndex::in_ram().unwrap();
        let mut supp = finding(
            "acme",
            "a3",
            "tls.cert.expiring-soon",
            Severity::Medium,
            443,
        );
        supp.suppression = Some(Suppression {
            kind: SuppressionKind::AcceptedRisk,
            reason: "r".into(),
            owner: "o".into(),
            created_ms: 0,
            expires_ms: Some(NOW + 1000),
        });
        ix.upsert(&[
            IndexDoc::Finding(Box::new(finding(
                "acme",
                "a1",
                "ports.rdp.exposed",
                Severity::High,
                3389,
            ))),
            IndexDoc::Finding(Box::new(finding(
                "acme",
                "a2",
                "ports.telnet.open",
                Severity::Critical,
                23,
            ))),
            IndexDoc::Finding(Box::new(supp)),
            IndexDoc::Finding(Box::new(finding(
                "globex",
                "g1",
                "ports.rdp.exposed",
                Severity::High,
                3389,
            ))),
        ])
        .unwrap();
        ix.commit().unwrap();
        ix
    }

    fn ids(ix: &SearchIndex, tenant: &str, q: &str) -> Vec<String> {
        let mut v: Vec<String> = ix
            .search(tenant, q, 100, true, NOW)
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.doc["id"].as_str().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn pages_follow_the_sort_order_and_keep_total_and_facets() {
        let ix = index();
        let page = |offset| {
            let r = ix
                .search_page("acme", "sort:port", 2, offset, true, NOW)
                .unwrap();
            let ids: Vec<String> = r.hits.iter().map(|h| h.doc["id"].to_string()).collect();
            (r.total, ids, r.facets["severity"].len())
        };
        let (total, first, sev) = page(0);
        let (total2, second, sev2) = page(2);
        assert_eq!((total, total2), (3, 3));
        assert_eq!((first.len(), second.len()), (2, 1));
        assert!(first.iter().all(|id| !second.contains(id)));
        assert_eq!(sev, sev2);
        assert!(page(3).1.is_empty());
        assert!(
            ix.search_page("acme", "", 10, MAX_OFFSET + 1, false, NOW)
                .is_err()
        );
    }

    #[test]
    fn fields_ranges_globs_and_sorting() {
        let ix = index();
        assert_eq!(ids(&ix, "acme", ""), ["a1", "a2", "a3"]);
        assert_eq!(ids(&ix, "acme", "severity:high port:3389"), ["a1"]);
        assert_eq!(ids(&ix, "acme", "severity:>=high"), ["a1", "a2"]);
        assert_eq!(ids(&ix, "acme", "rule:ports.*"), ["a1", "a2"]);
        assert_eq!(ids(&ix, "acme", "rule:tls.* suppressed:true"), ["a3"]);
        assert_eq!(ids(&ix, "acme", "suppressed:false"), ["a1", "a2"]);
        assert_eq!(ids(&ix, "acme", "port:[1 TO 1024]"), ["a2", "a3"]);
        assert_eq!(ids(&ix, "acme", "days_left:<14"), ["a1", "a2", "a3"]);
        assert!(ids(&ix, "acme", "days_left:<3").is_empty());
        assert_eq!(
            ids(
                &ix,
                "acme",
                "seen:>now-7d framework:iso27001 control:\"A.8.24\""
            ),
            ["a1", "a2", "a3"]
        );
        assert!(ids(&ix, "acme", "seen:<now-7d").is_empty());
        assert_eq!(ids(&ix, "acme", "secretword -port:23"), ["a1", "a3"]);
        assert_eq!(
            ids(&ix, "acme", "(port:23 OR port:443) -state:resolved"),
            ["a2", "a3"]
        );
        let r = ix.search("acme", "sort:-severity", 2, true, NOW).unwrap();
        assert_eq!(r.total, 3);
        assert_eq!(r.hits[0].doc["id"], "a2");
        assert_eq!(r.facets["severity"].iter().map(|(_, n)| n).sum::<u64>(), 3);
        assert_eq!(
            r.facets["control"],
            vec![("iso27001:A.8.24".to_string(), 3)]
        );
        // Upserting replaces rather than duplicates.
        let mut moved = finding("acme", "a1", "ports.rdp.exposed", Severity::High, 3390);
        moved.state = FindingState::Resolved;
        ix.upsert(&[IndexDoc::Finding(Box::new(moved))]).unwrap();
        ix.commit().unwrap();
        assert_eq!(ids(&ix, "acme", "state:resolved port:3390"), ["a1"]);
        assert_eq!(ix.search("acme", "", 10, false, NOW).unwrap().total, 3);
    }

    #[test]
    fn no_query_reaches_another_tenant() {
        let ix = index();
        assert_eq!(ids(&ix, "globex", "port:3389"), ["g1"]);
        for q in [
            "tenant:acme",
            "tenant:acme OR port:23",
            "port:23",
            "acme",
            "a2",
            "id:a2",
            "(port:23 OR -port:23)",
            "-port:1",
            "\"secretword\"",
            "*",
            "rule:*",
            "asset:*",
        ] {
            let hits = ix.search("globex", q, 100, true, NOW).map(|r| {
                r.hits
                    .into_iter()
                    .map(|h| h.doc["tenant"].as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            });
            if let Ok(tenants) = hits {
                assert!(
                    tenants.iter().all(|t| t == "globex"),
                    "{q:?} leaked {tenants:?}"
                );
            }
        }
        assert!(
            ix.search("nobody", "", 100, true, NOW)
                .unwrap()
                .hits
                .is_empty()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn search_never_panics(
            q in r#"([a-z_]{0,10}:?|[()\[\]{}<>=\-*?"\\ .]|TO|OR|NOT|now-7d|[0-9]{1,6}|é|severity|port|days_left|seen){0,24}"#
        ) {
            let ix = index();
            if let Ok(r) = ix.search("acme", &q, 10, true, NOW) {
                proptest::prop_assert!(r.hits.iter().all(|h| h.doc["tenant"] == "acme"));
            }
        }
    }
}
