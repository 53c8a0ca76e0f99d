//! The findings query language (documented in `docs/search.md`).
//!
//! A hand-written recursive-descent parser over characters: it never panics,
//! bounds nesting depth, clause count and input length, and only knows the
//! field names in [`FieldName`] — there is deliberately no way to name the
//! tenant, which the index applies as a separate mandatory filter.

use std::ops::Bound;

use thiserror::Error;

/// Longest accepted query, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Deepest accepted nesting of parentheses and negations.
pub const MAX_DEPTH: usize = 16;
/// Most accepted clauses (terms, words, ranges) in one query.
pub const MAX_CLAUSES: usize = 64;

/// Why a query was refused, with the byte offset where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} (at offset {offset})")]
pub struct QueryError {
    /// What is wrong.
    pub message: String,
    /// Byte offset into the query.
    pub offset: usize,
}

/// Fields a query may address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldName {
    /// `severity:` info … critical (ranges compare by rank).
    Severity,
    /// `state:` new, open, resolved, reopened.
    State,
    /// `suppressed:` true/false (unexpired suppression or accepted risk).
    Suppressed,
    /// `port:` TCP port.
    Port,
    /// `framework:` framework key.
    Framework,
    /// `control:` control id.
    Control,
    /// `rule:` rule id (globs allowed).
    Rule,
    /// `asset:` asset (globs allowed).
    Asset,
    /// `kind:` finding or change.
    Kind,
    /// `type:` change type.
    Type,
    /// `check:` observation kind.
    Check,
    /// `job:` job id.
    Job,
    /// `days_left:` days until certificate expiry (relative to now).
    DaysLeft,
    /// `seen:` / `last_seen:` latest observation time.
    LastSeen,
    /// `first_seen:` first observation time.
    FirstSeen,
    /// `id:` finding or change id.
    Id,
}

impl FieldName {
    /// Every field with its query names.
    pub const NAMES: &'static [(&'static str, FieldName)] = &[
        ("severity", FieldName::Severity),
        ("state", FieldName::State),
        ("status", FieldName::State),
        ("suppressed", FieldName::Suppressed),
        ("port", FieldName::Port),
        ("framework", FieldName::Framework),
        ("control", FieldName::Control),
        ("rule", FieldName::Rule),
        ("asset", FieldName::Asset),
        ("kind", FieldName::Kind),
        ("type", FieldName::Type),
        ("check", FieldName::Check),
        ("job", FieldName::Job),
        ("days_left", FieldName::DaysLeft),
        ("seen", FieldName::LastSeen),
        ("last_seen", FieldName::LastSeen),
        ("first_seen", FieldName::FirstSeen),
        ("id", FieldName::Id),
    ];

    fn parse(name: &str) -> Option<FieldName> {
        let lower = name.to_ascii_lowercase();
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, f)| *f)
    }
}

/// The value side of a field term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An exact value.
    Exact(String),
    /// A value with `*` / `?` wildcards.
    Glob(String),
    /// A range; bounds are raw text, typed by the field when compiled.
    Range(Bound<String>, Bound<String>),
}

/// A parsed query expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Every child matches.
    And(Vec<Node>),
    /// Some child matches.
    Or(Vec<Node>),
    /// The child does not match.
    Not(Box<Node>),
    /// A free-text word (globs allowed) in title, evidence, location, asset, rule or subject.
    Word(String),
    /// A quoted free-text phrase.
    Phrase(String),
    /// A field term.
    Field(FieldName, Value),
}

/// Sort orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Relevance (default).
    Score,
    /// Latest observation.
    LastSeen,
    /// First observation.
    FirstSeen,
    /// Severity rank.
    Severity,
    /// Port.
    Port,
    /// Certificate expiry.
    DaysLeft,
}

/// A parsed query: an optional expression (none matches everything) and a sort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The filter expression.
    pub root: Option<Node>,
    /// Sort key and whether descending.
    pub sort: Option<(SortKey, bool)>,
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    clauses: usize,
    sort: Option<(SortKey, bool)>,
}

fn err<T>(message: impl Into<String>, offset: usize) -> Result<T, QueryError> {
    Err(QueryError {
        message: message.into(),
        offset,
    })
}

fn is_word_end(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')'
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn at_keyword(&self, kw: &str) -> bool {
        let r = self.rest();
        r.starts_with(kw) && r[kw.len()..].chars().next().is_none_or(is_word_end)
    }

    fn count_clause(&mut self) -> Result<(), QueryError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return err(format!("more than {MAX_CLAUSES} clauses"), self.pos);
        }
        Ok(())
    }

    fn or(&mut self, depth: usize) -> Result<Option<Node>, QueryError> {
        let mut alts = Vec::new();
        let first = self.and(depth)?;
        alts.extend(first);
        loop {
            self.skip_ws();
            if !self.at_keyword("OR") {
                break;
            }
            let at = self.pos;
            self.pos += 2;
            match self.and(depth)? {
                Some(n) if !alts.is_empty() => alts.push(n),
                _ => return err("OR needs an expression on both sides", at),
            }
        }
        Ok(match alts.len() {
            0 => None,
            1 => alts.pop(),
            _ => Some(Node::Or(alts)),
        })
    }

    fn and(&mut self, depth: usize) -> Result<Option<Node>, QueryError> {
        let mut all = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None | Some(')') => break,
                _ if self.at_keyword("OR") => break,
                _ => {}
            }
            if let Some(n) = self.unary(depth)? {
                all.push(n);
            }
        }
        Ok(match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(Node::And(all)),
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Option<Node>, QueryError> {
        if depth >= MAX_DEPTH {
            return err(format!("nested deeper than {MAX_DEPTH}"), self.pos);
        }
        let at = self.pos;
        let negated = if self.peek() == Some('-')
            && self.rest()[1..]
                .chars()
                .next()
                .is_some_and(|c| !is_word_end(c))
        {
            self.pos += 1;
            true
        } else if self.at_keyword("NOT") {
            self.pos += 3;
            self.skip_ws();
            true
        } else {
            false
        };
        if negated {
            return match self.unary(depth + 1)? {
                Some(n) => Ok(Some(Node::Not(Box::new(n)))),
                None => err("nothing to negate", at),
            };
        }
        if self.peek() == Some('(') {
            self.bump();
            let inner = self.or(depth + 1)?;
            self.skip_ws();
            if self.bump() != Some(')') {
                return err("unclosed '('", at);
            }
            return match inner {
                Some(n) => Ok(Some(n)),
                None => err("empty parentheses", at),
            };
        }
        self.term(depth)
    }

    fn quoted(&mut self) -> Result<String, QueryError> {
        let at = self.pos;
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return err("unterminated quote", at),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => return err("unterminated quote", at),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn bare(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|c| !is_word_end(c)) {
            self.bump();
        }
        self.s[start..self.pos].to_string()
    }

    fn term(&mut self, _depth: usize) -> Result<Option<Node>, QueryError> {
        let at = self.pos;
        if self.peek() == Some('"') {
            self.count_clause()?;
            let text = self.quoted()?;
            return Ok(Some(Node::Phrase(text)));
        }
        // A field name is an identifier directly followed by ':'.
        let ident_len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if ident_len > 0 && self.rest()[ident_len..].starts_with(':') {
            let name = self.rest()[..ident_len].to_string();
            self.pos += ident_len + 1;
            if name.eq_ignore_ascii_case("sort") {
                return self.sort_directive(at);
            }
            let Some(field) = FieldName::parse(&name) else {
                return err(format!("unknown field {name:?}"), at);
            };
            self.count_clause()?;
            let value = self.value(at)?;
            return Ok(Some(Node::Field(field, value)));
        }
        self.count_clause()?;
        let word = self.bare();
        if word.is_empty() {
            return err("expected a term", at);
        }
        Ok(Some(Node::Word(word)))
    }

    fn sort_directive(&mut self, at: usize) -> Result<Option<Node>, QueryError> {
        if self.sort.is_some() {
            return err("sort given twice", at);
        }
        let raw = self.bare();
        let (desc, name) = match raw.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, raw.strip_prefix('+').unwrap_or(&raw)),
        };
        let key = match name.to_ascii_lowercase().as_str() {
            "score" | "relevance" => SortKey::Score,
            "seen" | "last_seen" => SortKey::LastSeen,
            "first_seen" => SortKey::FirstSeen,
            "severity" => SortKey::Severity,
            "port" => SortKey::Port,
            "days_left" => SortKey::DaysLeft,
            other => return err(format!("cannot sort by {other:?}"), at),
        };
        self.sort = Some((key, desc));
        Ok(None)
    }

    fn value(&mut self, at: usize) -> Result<Value, QueryError> {
        match self.peek() {
            Some('"') => Ok(Value::Exact(self.quoted()?)),
            Some('[') | Some('{') => self.range(),
            Some('<') | Some('>') => {
                let op_gt = self.bump() == Some('>');
                let inclusive = if self.peek() == Some('=') {
                    self.bump();
                    true
                } else {
                    false
                };
                let v = match self.peek() {
                    Some('"') => self.quoted()?,
                    _ => self.bare(),
                };
                if v.is_empty() {
                    return err("comparison without a value", at);
                }
                let b = if inclusive {
                    Bound::Included(v)
                } else {
                    Bound::Excluded(v)
                };
                Ok(if op_gt {
                    Value::Range(b, Bound::Unbounded)
                } else {
                    Value::Range(Bound::Unbounded, b)
                })
            }
            _ => {
                let v = self.bare();
                if v.is_empty() {
                    return err("field without a value", at);
                }
                if v.contains('*') || v.contains('?') {
                    Ok(Value::Glob(v))
                } else {
                    Ok(Value::Exact(v))
                }
            }
        }
    }

    fn range_bound(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && c != ']' && c != '}')
        {
            self.bump();
        }
        self.s[start..self.pos].to_string()
    }

    fn range(&mut self) -> Result<Value, QueryError> {
        let at = self.pos;
        let lo_incl = self.bump() == Some('[');
        self.skip_ws();
        let lo = self.range_bound();
        self.skip_ws();
        if !self.at_keyword("TO") {
            return err("expected 'TO' in range", self.pos);
        }
        self.pos += 2;
        self.skip_ws();
        let hi = self.range_bound();
        self.skip_ws();
        let hi_incl = match self.bump() {
            Some(']') => true,
            Some('}') => false,
            _ => return err("unclosed range", at),
        };
        if lo.is_empty() || hi.is_empty() {
            return err("range needs two bounds (use * for open)", at);
        }
        let bound = |v: String, incl: bool| {
            if v == "*" {
                Bound::Unbounded
            } else if incl {
                Bound::Included(v)
            } else {
                Bound::Excluded(v)
            }
        };
        Ok(Value::Range(bound(lo, lo_incl), bound(hi, hi_incl)))
    }
}

/// Parses a query string.
pub fn parse(s: &str) -> Result<Query, QueryError> {
    if s.len() > MAX_QUERY_LEN {
        return err(
            format!("query longer than {MAX_QUERY_LEN} bytes"),
            MAX_QUERY_LEN,
        );
    }
    let mut p = Parser {
        s,
        pos: 0,
        clauses: 0,
        sort: None,
    };
    let root = p.or(0)?;
    p.skip_ws();
    if p.pos < s.len() {
        return err("unbalanced ')'", p.pos);
    }
    Ok(Query { root, sort: p.sort })
}

/// Parses a time value: `now`, `now-7d`, `now+1h`, a date `2024-05-01`, an
/// RFC 3339 timestamp or milliseconds since the epoch.
pub fn parse_time(v: &str, now_ms: u64) -> Option<i64> {
    let now = i64::try_from(now_ms).ok()?;
    if let Some(rest) = v.strip_prefix("now") {
        if rest.is_empty() {
            return Some(now);
        }
        let (sign, dur) = match rest.split_at_checked(1)? {
            ("-", d) => (-1i64, d),
            ("+", d) => (1i64, d),
            _ => return None,
        };
        let d = humantime::parse_duration(dur).ok()?;
        let ms = i64::try_from(d.as_millis()).ok()?;
        return now.checked_add(sign.checked_mul(ms)?);
    }
    if let Ok(ms) = v.parse::<i64>() {
        return Some(ms);
    }
    let ts = if v.len() == 10 {
        humantime::parse_rfc3339_weak(&format!("{v}T00:00:00Z")).ok()?
    } else {
        humantime::parse_rfc3339_weak(v).ok()?
    };
    let d = ts.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Translates a glob (`*`, `?`) into an anchored regular expression.
pub fn glob_to_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() * 2);
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '\\' | '.' | '+' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' | '#' | '&'
            | '-' | '~' | '"' | '<' | '>' | '@' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(field: FieldName, v: &str) -> Node {
        Node::Field(field, Value::Exact(v.into()))
    }

    #[test]
    fn parses_the_documented_examples() {
        let q = parse(r#"severity:high port:3389 framework:nis2 control:"A.8.24" rule:tls.* asset:web-1 kind:change"#).unwrap();
        assert_eq!(
            q.root,
            Some(Node::And(vec![
                f(FieldName::Severity, "high"),
                f(FieldName::Port, "3389"),
                f(FieldName::Framework, "nis2"),
                f(FieldName::Control, "A.8.24"),
                Node::Field(FieldName::Rule, Value::Glob("tls.*".into())),
                f(FieldName::Asset, "web-1"),
                f(FieldName::Kind, "change"),
            ]))
        );
        let q =
            parse("days_left:<14 port:[1 TO 1024] seen:>now-7d sort:-last_seen expired").unwrap();
        assert_eq!(q.sort, Some((SortKey::LastSeen, true)));
        assert_eq!(
            q.root,
            Some(Node::And(vec![
                Node::Field(
                    FieldName::DaysLeft,
                    Value::Range(Bound::Unbounded, Bound::Excluded("14".into()))
                ),
                Node::Field(
                    FieldName::Port,
                    Value::Range(Bound::Included("1".into()), Bound::Included("1024".into()))
                ),
                Node::Field(
                    FieldName::LastSeen,
                    Value::Range(Bound::Excluded("now-7d".into()), Bound::Unbounded)
                ),
                Node::Word("expired".into()),
            ]))
        );
        let q = parse("(severity:high OR severity:critical) -state:resolved NOT suppressed:true")
            .unwrap();
        assert!(matches!(q.root, Some(Node::And(ref v)) if v.len() == 3));
        assert_eq!(parse("").unwrap().root, None);
        assert_eq!(
            parse("  sort:severity ").unwrap().sort,
            Some((SortKey::Severity, false))
        );
    }

    #[test]
    fn refuses_the_tenant_and_malformed_input() {
        for bad in [
            "tenant:globex",
            "TENANT:globex",
            "_tenant:x",
            "(",
            "a)",
            "port:[1 TO",
            "port:[1 1024]",
            "\"open",
            "OR x",
            "x OR",
            "-",
            "sort:tenant",
            "severity:",
            "()",
        ] {
            if bad == "-" {
                // A lone dash is a word, not a negation.
                assert_eq!(parse(bad).unwrap().root, Some(Node::Word("-".into())));
                continue;
            }
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        let deep = "(".repeat(100) + "x" + &")".repeat(100);
        assert!(parse(&deep).is_err());
        let many = "x ".repeat(MAX_CLAUSES + 1);
        assert!(parse(&many).is_err());
    }

    #[test]
    fn times_and_globs() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("now", now), Some(now as i64));
        assert_eq!(parse_time("now-7d", now), Some(now as i64 - 7 * 86_400_000));
        assert_eq!(parse_time("2023-11-14", now), Some(1_699_920_000_000));
        assert_eq!(parse_time("now-", now), None);
        assert_eq!(parse_time("now*3", now), None);
        assert_eq!(glob_to_regex("tls.*"), "tls\\..*");
        assert_eq!(glob_to_regex("21(2)(?)"), "21\\(2\\)\\(.\\)");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_string(s in ".{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_query_like_strings(
            s in r#"([a-z_]{0,9}:?|[()\[\]{}<>=\-*?"\\ ]|TO|OR|NOT|now-7d|[0-9]{1,4}|é){0,40}"#
        ) {
            let _ = parse(&s);
        }
    }
}
