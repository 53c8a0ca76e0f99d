//! Findings search on PostgreSQL: the query language of `docs/search.md`
//! translated to SQL over the time-partitioned `finding_search` table.
//!
//! Every user-supplied value becomes a bind parameter; the SQL text is built
//! only from fixed fragments and parameter numbers. The tenant is always the
//! first parameter. Supported: words and phrases (GIN full-text, `simple`
//! configuration; a word glob only as a trailing `*` prefix), `severity`,
//! `state`, `port`, `framework`, `control`, `rule`, `asset`, `check`, `job`,
//! `id` (exact or glob), `kind`, `type`, `seen`/`last_seen`/`first_seen`
//! ranges and `sort:` by score, last_seen, first_seen, severity or port.
//! `suppressed:` and `days_left:` are refused with a query error.

use std::ops::Bound;

use tokio_postgres::types::ToSql;

use super::{PgPool, to_u64, wait};
use crate::findings::store::FindingError;
use crate::search::query::{self, FieldName, Node, QueryError, SortKey, Value};
use crate::search::severity_rank;

/// One matching finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// Finding id.
    pub id: String,
    /// Asset.
    pub asset: String,
    /// Rule id.
    pub rule_id: String,
    /// Severity name.
    pub severity: String,
    /// Lifecycle state.
    pub state: String,
    /// Rule title.
    pub title: String,
    /// Latest observation, ms since the epoch.
    pub last_seen_ms: u64,
}

type Param = Box<dyn ToSql + Sync + Send>;

struct Sql {
    params: Vec<Param>,
    // tsquery expressions of the free-text words, reused for ranking.
    words: Vec<String>,
    now_ms: u64,
}

fn unsupported(what: &str) -> FindingError {
    FindingError::Query(QueryError {
        message: format!("{what} is not supported by the scale-out search backend"),
        offset: 0,
    })
}

fn bad(message: String) -> FindingError {
    FindingError::Query(QueryError { message, offset: 0 })
}

/// `LIKE` pattern of a glob: `*` → `%`, `?` → `_`, the rest escaped.
fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

impl Sql {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    fn text_field(&mut self, column: &str, v: &Value) -> Result<String, FindingError> {
        match v {
            Value::Exact(s) => Ok(format!("{column} = {}", self.bind(Box::new(s.clone())))),
            Value::Glob(g) => Ok(format!(
                "{column} LIKE {} ESCAPE '\\'",
                self.bind(Box::new(glob_to_like(g)))
            )),
            Value::Range(..) => Err(bad(format!("{column} takes no range"))),
        }
    }

    fn lower_text_field(&mut self, column: &str, v: &Value) -> Result<String, FindingError> {
        match v {
            Value::Exact(s) => Ok(format!(
                "{column} = {}",
                self.bind(Box::new(s.to_ascii_lowercase()))
            )),
            _ => self.text_field(column, v),
        }
    }

    fn array_field(&mut self, column: &str, v: &Value) -> Result<String, FindingError> {
        match v {
            Value::Exact(s) => Ok(format!(
                "{} = ANY({column})",
                self.bind(Box::new(s.clone()))
            )),
            Value::Glob(g) => Ok(format!(
                "EXISTS (SELECT 1 FROM unnest({column}) e WHERE e LIKE {} ESCAPE '\\')",
                self.bind(Box::new(glob_to_like(g)))
            )),
            Value::Range(..) => Err(bad(format!("{column} takes no range"))),
        }
    }

    fn range(
        &mut self,
        column: &str,
        lo: &Bound<String>,
        hi: &Bound<String>,
        parse: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<String, FindingError> {
        let mut parts = Vec::new();
        for (b, incl, excl) in [(lo, ">=", ">"), (hi, "<=", "<")] {
            let (v, op) = match b {
                Bound::Included(v) => (v, incl),
                Bound::Excluded(v) => (v, excl),
                Bound::Unbounded => continue,
            };
            let n = parse(v).ok_or_else(|| bad(format!("{column}: cannot read {v:?}")))?;
            parts.push(format!("{column} {op} {}", self.bind(Box::new(n))));
        }
        Ok(if parts.is_empty() {
            "TRUE".into()
        } else {
            parts.join(" AND ")
        })
    }

    fn numeric(
        &mut self,
        column: &str,
        v: &Value,
        parse: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<String, FindingError> {
        match v {
            Value::Exact(s) => {
                let n = parse(s).ok_or_else(|| bad(format!("{column}: cannot read {s:?}")))?;
                Ok(format!("{column} = {}", self.bind(Box::new(n))))
            }
            Value::Range(lo, hi) => self.range(column, lo, hi, parse),
            Value::Glob(_) => Err(bad(format!("{column} takes no glob"))),
        }
    }

    fn word(&mut self, w: &str, phrase: bool) -> Result<String, FindingError> {
        let tsq = if phrase {
            format!(
                "phraseto_tsquery('simple', {})",
                self.bind(Box::new(w.to_string()))
            )
        } else if let Some(stem) = w.strip_suffix('*') {
            // Only letters, digits, '-' and '_' reach to_tsquery's own syntax.
            if stem.is_empty()
                || !stem
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
                || stem.contains(['*', '?'])
            {
                return Err(unsupported("a word glob other than a trailing *"));
            }
            format!(
                "to_tsquery('simple', {} || ':*')",
                self.bind(Box::new(stem.to_lowercase().replace('-', "<->")))
            )
        } else if w.contains(['*', '?']) {
            return Err(unsupported("a word glob other than a trailing *"));
        } else {
            format!(
                "plainto_tsquery('simple', {})",
                self.bind(Box::new(w.to_string()))
            )
        };
        let cond = format!("doc @@ {tsq}");
        self.words.push(tsq);
        Ok(cond)
    }

    fn node(&mut self, n: &Node) -> Result<String, FindingError> {
        Ok(match n {
            Node::And(children) => self.join(children, " AND ")?,
            Node::Or(children) => self.join(children, " OR ")?,
            Node::Not(child) => format!("NOT ({})", self.node(child)?),
            Node::Word(w) => self.word(w, false)?,
            Node::Phrase(p) => self.word(p, true)?,
            Node::Field(f, v) => self.field(*f, v)?,
        })
    }

    fn join(&mut self, children: &[Node], op: &str) -> Result<String, FindingError> {
        let parts = children
            .iter()
            .map(|c| self.node(c).map(|s| format!("({s})")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if parts.is_empty() {
            "TRUE".into()
        } else {
            parts.join(op)
        })
    }

    fn field(&mut self, f: FieldName, v: &Value) -> Result<String, FindingError> {
        let now = self.now_ms;
        let time = move |s: &str| query::parse_time(s, now);
        let int = |s: &str| s.parse::<i64>().ok();
        let rank = |s: &str| severity_rank(s).map(|r| r as i64);
        match f {
            FieldName::Severity => match v {
                Value::Exact(s) => {
                    let r = rank(s).ok_or_else(|| bad(format!("unknown severity {s:?}")))?;
                    Ok(format!("severity_rank = {}", self.bind(Box::new(r as i16))))
                }
                Value::Range(lo, hi) => {
                    let r = |s: &str| rank(s);
                    // Ranks are small: compare as smallint via an integer cast.
                    self.range("severity_rank::bigint", lo, hi, &r)
                }
                Value::Glob(_) => Err(bad("severity takes no glob".into())),
            },
            FieldName::State => self.lower_text_field("state", v),
            FieldName::Port => self.numeric("port::bigint", v, &int),
            FieldName::Framework => self.array_field("frameworks", v),
            FieldName::Control => self.array_field("controls", v),
            FieldName::Rule => self.text_field("rule_id", v),
            FieldName::Asset => self.text_field("asset", v),
            FieldName::Check => self.lower_text_field("check_kind", v),
            FieldName::Job => self.text_field("job_id", v),
            FieldName::Id => self.text_field("finding_id", v),
            // The table holds findings only; change events have no row.
            FieldName::Kind => match v {
                Value::Exact(s) if s.eq_ignore_ascii_case("finding") => Ok("TRUE".into()),
                Value::Exact(s) if s.eq_ignore_ascii_case("change") => Ok("FALSE".into()),
                _ => Err(bad("kind is finding or change".into())),
            },
            FieldName::Type => Ok("FALSE".into()),
            FieldName::LastSeen => self.numeric("last_seen_ms", v, &time),
            FieldName::FirstSeen => match v {
                Value::Range(lo, hi) => {
                    let ms = |s: &str| time(s);
                    // Ranges on the partition key let PostgreSQL prune partitions.
                    let cond = self.range(
                        "(extract(epoch FROM first_seen) * 1000)::bigint",
                        lo,
                        hi,
                        &ms,
                    )?;
                    Ok(cond)
                }
                _ => self.numeric("(extract(epoch FROM first_seen) * 1000)::bigint", v, &time),
            },
            FieldName::Suppressed => Err(unsupported("suppressed:")),
            FieldName::DaysLeft => Err(unsupported("days_left:")),
        }
    }
}

/// Searches `tenant`'s findings with a query of the findings query language.
pub fn search_findings(
    pool: &PgPool,
    tenant: &str,
    query_text: &str,
    limit: usize,
    now_ms: u64,
) -> Result<Vec<SearchHit>, FindingError> {
    let q = query::parse(query_text)?;
    let mut sql = Sql {
        params: vec![Box::new(tenant.to_string())],
        words: Vec::new(),
        now_ms,
    };
    let filter = match &q.root {
        Some(n) => sql.node(n)?,
        None => "TRUE".into(),
    };
    let score = if sql.words.is_empty() {
        "0::real".to_string()
    } else {
        format!("ts_rank_cd(doc, {})", sql.words.join(" || "))
    };
    let order = match q.sort {
        None | Some((SortKey::Score, _)) if !sql.words.is_empty() => {
            "score DESC, last_seen_ms DESC"
        }
        None | Some((SortKey::Score, _)) => "last_seen_ms DESC",
        Some((SortKey::LastSeen, false)) => "last_seen_ms ASC",
        Some((SortKey::LastSeen, true)) => "last_seen_ms DESC",
        Some((SortKey::FirstSeen, false)) => "first_seen ASC",
        Some((SortKey::FirstSeen, true)) => "first_seen DESC",
        Some((SortKey::Severity, false)) => "severity_rank ASC, last_seen_ms DESC",
        Some((SortKey::Severity, true)) => "severity_rank DESC, last_seen_ms DESC",
        Some((SortKey::Port, false)) => "port ASC NULLS LAST",
        Some((SortKey::Port, true)) => "port DESC NULLS LAST",
        Some((SortKey::DaysLeft, _)) => return Err(unsupported("sort:days_left")),
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let limit_param = sql.bind(Box::new(limit));
    let text = format!(
        "SELECT finding_id, asset, rule_id, severity, state, title, last_seen_ms, {score} AS score
         FROM finding_search WHERE tenant_id = $1 AND ({filter})
         ORDER BY {order}, finding_id LIMIT {limit_param}"
    );
    let params: Vec<&(dyn ToSql + Sync)> = sql
        .params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let c = pool
        .get()
        .map_err(|e| FindingError::Backend(e.to_string()))?;
    let rows = wait(c.query(&text, &params)).map_err(|e| FindingError::Backend(e.to_string()))?;
    Ok(rows
        .iter()
        .map(|r| SearchHit {
            id: r.get(0),
            asset: r.get(1),
            rule_id: r.get(2),
            severity: r.get(3),
            state: r.get(4),
            title: r.get(5),
            last_seen_ms: to_u64(r.get(6)),
        })
        .collect())
}
