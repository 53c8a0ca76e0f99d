//! Type-checks a condition against the field vocabulary and lowers it to a
//! tree of typed nodes that evaluate without name lookups or allocation.

use protocol::Record;

use crate::ast::{Expr, Func, Literal, Operand};
use crate::error::{ConditionError, ConditionErrorKind as K};
use crate::fields::{self, FieldId, FieldInfo, FieldType, Kind, Value};
use crate::glob::Glob;
use crate::lexer::{CmpOp, Span};

/// Integer comparison (`in` is lowered separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl IntOp {
    #[inline]
    fn apply(self, a: i64, b: i64) -> bool {
        match self {
            IntOp::Eq => a == b,
            IntOp::Ne => a != b,
            IntOp::Lt => a < b,
            IntOp::Le => a <= b,
            IntOp::Gt => a > b,
            IntOp::Ge => a >= b,
        }
    }
}

/// A compiled condition node.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    /// Optional field present (`true`) or absent (`false`).
    Present(FieldId, bool),
    /// Boolean field present and equal to the constant.
    Bool(FieldId, bool),
    Int(FieldId, IntOp, i64),
    IntIn(FieldId, Box<[i64]>),
    Len(FieldId, IntOp, i64),
    LenIn(FieldId, Box<[i64]>),
    /// String field present and (equal if the flag is true, different otherwise).
    StrEq(FieldId, Box<str>, bool),
    StrIn(FieldId, Box<[Box<str>]>),
    StrContains(FieldId, Box<str>),
    StrMatches(FieldId, Glob),
    ListContains(FieldId, Box<str>),
    ListMatches(FieldId, Glob),
}

impl Node {
    /// Evaluates against a record of the kind the node was compiled for.
    pub(crate) fn eval(&self, rec: &Record) -> bool {
        let v = |f: FieldId| fields::value(f, rec);
        match self {
            Node::Const(b) => *b,
            Node::And(items) => items.iter().all(|n| n.eval(rec)),
            Node::Or(items) => items.iter().any(|n| n.eval(rec)),
            Node::Not(inner) => !inner.eval(rec),
            Node::Present(f, want) => !matches!(v(*f), Value::Absent) == *want,
            Node::Bool(f, want) => matches!(v(*f), Value::Bool(b) if b == *want),
            Node::Int(f, op, k) => matches!(v(*f), Value::Int(i) if op.apply(i, *k)),
            Node::IntIn(f, set) => matches!(v(*f), Value::Int(i) if set.contains(&i)),
            Node::Len(f, op, k) => {
                matches!(v(*f), Value::List(l) if op.apply(l.len() as i64, *k))
            }
            Node::LenIn(f, set) => {
                matches!(v(*f), Value::List(l) if set.contains(&(l.len() as i64)))
            }
            Node::StrEq(f, s, eq) => matches!(v(*f), Value::Str(x) if (x == &**s) == *eq),
            Node::StrIn(f, set) => {
                matches!(v(*f), Value::Str(x) if set.iter().any(|s| x == &**s))
            }
            Node::StrContains(f, needle) => {
                matches!(v(*f), Value::Str(x) if x.contains(&**needle))
            }
            Node::StrMatches(f, glob) => matches!(v(*f), Value::Str(x) if glob.is_match(x)),
            Node::ListContains(f, s) => {
                matches!(v(*f), Value::List(l) if l.any(|x| x == &**s))
            }
            Node::ListMatches(f, glob) => {
                matches!(v(*f), Value::List(l) if l.any(|x| glob.is_match(x)))
            }
        }
    }
}

fn err(span: Span, kind: K) -> ConditionError {
    ConditionError::new(span, kind)
}

fn type_err(span: Span, msg: String) -> ConditionError {
    err(span, K::Type(msg))
}

/// Resolves `path` for a rule of `kind`, rejecting unknown fields and other kinds' fields.
pub(crate) fn resolve(
    path: &str,
    span: Span,
    kind: Kind,
) -> Result<&'static FieldInfo, ConditionError> {
    let info = fields::lookup(path).ok_or_else(|| err(span, K::UnknownField(path.to_string())))?;
    if let Some(fk) = info.kind
        && fk != kind
    {
        return Err(err(
            span,
            K::WrongKind {
                field: path.to_string(),
                field_kind: fk.as_str(),
                rule_kind: kind.as_str(),
            },
        ));
    }
    Ok(info)
}

fn check_value(info: &FieldInfo, s: &str, span: Span) -> Result<(), ConditionError> {
    if info.values.is_empty() || info.values.contains(&s) {
        return Ok(());
    }
    Err(err(
        span,
        K::NotAValue {
            field: info.path.to_string(),
            value: s.to_string(),
            allowed: info.values.join(", "),
        },
    ))
}

fn glob(pattern: &str, span: Span) -> Result<Glob, ConditionError> {
    Glob::new(pattern).map_err(|e| {
        // Point into the literal: +1 skips the opening quote. Escapes in the
        // literal can shift this slightly; the span stays inside the literal.
        let at = (span.start + 1 + e.offset).min(span.end.saturating_sub(1));
        err(Span::new(at, at + 1), K::BadGlob(e.reason))
    })
}

fn int_op(op: CmpOp) -> Option<IntOp> {
    Some(match op {
        CmpOp::Eq => IntOp::Eq,
        CmpOp::Ne => IntOp::Ne,
        CmpOp::Lt => IntOp::Lt,
        CmpOp::Le => IntOp::Le,
        CmpOp::Gt => IntOp::Gt,
        CmpOp::Ge => IntOp::Ge,
        _ => return None,
    })
}

fn lit_type(l: &Literal) -> &'static str {
    match l {
        Literal::Int(_) => "an integer",
        Literal::Str(_) => "a string",
        Literal::Bool(_) => "a boolean",
        Literal::Absent => "`absent`",
    }
}

fn int_list(items: &[(Literal, Span)], what: &str) -> Result<Box<[i64]>, ConditionError> {
    items
        .iter()
        .map(|(l, s)| match l {
            Literal::Int(i) => Ok(*i),
            other => Err(type_err(
                *s,
                format!(
                    "{what} is an integer but this list element is {}",
                    lit_type(other)
                ),
            )),
        })
        .collect()
}

/// Compiles `expr` for rules that apply to `kind`.
pub(crate) fn compile(expr: &Expr, kind: Kind) -> Result<Node, ConditionError> {
    match expr {
        Expr::Or(items, _) => Ok(Node::Or(
            items
                .iter()
                .map(|e| compile(e, kind))
                .collect::<Result<_, _>>()?,
        )),
        Expr::And(items, _) => Ok(Node::And(
            items
                .iter()
                .map(|e| compile(e, kind))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Not(inner, _) => Ok(Node::Not(Box::new(compile(inner, kind)?))),
        Expr::Operand(o) => predicate(o, kind),
        Expr::Compare {
            lhs,
            op,
            op_span,
            rhs,
        } => compare(lhs, *op, *op_span, rhs, kind),
    }
}

fn predicate(o: &Operand, kind: Kind) -> Result<Node, ConditionError> {
    match o {
        Operand::Lit(Literal::Bool(b), _) => Ok(Node::Const(*b)),
        Operand::Path(path, span) => {
            let info = resolve(path, *span, kind)?;
            if info.ty != FieldType::Bool {
                return Err(type_err(
                    *span,
                    format!(
                        "{path} is {}, not a boolean; compare it (==, <, contains, matches...) or test exists({path})",
                        info.ty.a_name()
                    ),
                ));
            }
            Ok(Node::Bool(info.id, true))
        }
        Operand::Call(Func::Exists, path, span) => {
            let info = resolve(path, *span, kind)?;
            if !info.optional {
                return Err(type_err(*span, never_absent(info)));
            }
            Ok(Node::Present(info.id, true))
        }
        Operand::Call(Func::Len, path, span) => Err(type_err(
            *span,
            format!("len({path}) is an integer, not a condition; compare it, e.g. len({path}) > 0"),
        )),
        other => Err(type_err(
            other.span(),
            "a condition needs a boolean field, a comparison or exists(...)".into(),
        )),
    }
}

fn never_absent(info: &FieldInfo) -> String {
    match info.ty {
        FieldType::StrList => format!(
            "{} is never absent (it is a list); test emptiness with len({}) == 0",
            info.path, info.path
        ),
        _ => format!("{} is never absent", info.path),
    }
}

fn compare(
    lhs: &Operand,
    op: CmpOp,
    op_span: Span,
    rhs: &Operand,
    kind: Kind,
) -> Result<Node, ConditionError> {
    let rhs_lit = match rhs {
        Operand::Lit(..) | Operand::List(..) => rhs,
        other => {
            return Err(type_err(
                other.span(),
                "the right side of a comparison must be a literal or a list of literals".into(),
            ));
        }
    };
    match lhs {
        Operand::Path(path, span) => {
            let info = resolve(path, *span, kind)?;
            compare_field(info, op, op_span, rhs_lit)
        }
        Operand::Call(Func::Len, path, span) => {
            let info = resolve(path, *span, kind)?;
            if info.ty != FieldType::StrList {
                return Err(type_err(
                    *span,
                    format!(
                        "len() needs a list field, but {path} is {}",
                        info.ty.a_name()
                    ),
                ));
            }
            let what = format!("len({path})");
            match (op, rhs_lit) {
                (CmpOp::In, Operand::List(items, _)) => {
                    Ok(Node::LenIn(info.id, int_list(items, &what)?))
                }
                (op, Operand::Lit(Literal::Int(k), _)) if int_op(op).is_some() => {
                    Ok(Node::Len(info.id, int_op(op).unwrap_or(IntOp::Eq), *k))
                }
                _ => Err(type_err(
                    op_span,
                    format!(
                        "{what} is an integer: use ==, !=, <, <=, >, >= with an integer, or `in` with a list of integers"
                    ),
                )),
            }
        }
        Operand::Call(Func::Exists, path, span) => Err(type_err(
            *span,
            format!("exists({path}) is already a condition; do not compare it"),
        )),
        other => Err(type_err(
            other.span(),
            "the left side of a comparison must be a field or len(field)".into(),
        )),
    }
}

fn compare_field(
    info: &'static FieldInfo,
    op: CmpOp,
    op_span: Span,
    rhs: &Operand,
) -> Result<Node, ConditionError> {
    let path = info.path;
    let id = info.id;
    // Presence tests work the same for every type.
    if let Operand::Lit(Literal::Absent, s) = rhs {
        if !info.optional {
            return Err(type_err(*s, never_absent(info)));
        }
        return match op {
            CmpOp::Eq => Ok(Node::Present(id, false)),
            CmpOp::Ne => Ok(Node::Present(id, true)),
            _ => Err(type_err(
                op_span,
                "`absent` can only be compared with == or !=".into(),
            )),
        };
    }
    let mismatch = |span: Span, l: &Literal| {
        type_err(
            span,
            format!(
                "{path} is {} but is compared with {}",
                info.ty.a_name(),
                lit_type(l)
            ),
        )
    };
    let bad_op = |usage: &str| {
        type_err(
            op_span,
            format!(
                "`{}` cannot be used on {path} ({}): {usage}",
                op.as_str(),
                info.ty.name()
            ),
        )
    };
    match info.ty {
        FieldType::Object => Err(type_err(
            op_span,
            format!(
                "{path} is a record: test it with exists({path}) or == absent, or compare one of its fields"
            ),
        )),
        FieldType::Bool => match (op, rhs) {
            (CmpOp::Eq | CmpOp::Ne, Operand::Lit(Literal::Bool(b), _)) => {
                Ok(Node::Bool(id, if op == CmpOp::Eq { *b } else { !*b }))
            }
            (CmpOp::Eq | CmpOp::Ne, Operand::Lit(l, s)) => Err(mismatch(*s, l)),
            _ => Err(bad_op("use == true / == false, or the field alone")),
        },
        FieldType::Int => match (op, rhs) {
            (CmpOp::In, Operand::List(items, _)) => Ok(Node::IntIn(id, int_list(items, path)?)),
            (CmpOp::In, Operand::Lit(_, s)) => Err(type_err(
                *s,
                "`in` needs a list literal, e.g. [1, 2]".into(),
            )),
            (op, Operand::Lit(Literal::Int(k), _)) if int_op(op).is_some() => {
                Ok(Node::Int(id, int_op(op).unwrap_or(IntOp::Eq), *k))
            }
            (op, Operand::Lit(l, s)) if int_op(op).is_some() => Err(mismatch(*s, l)),
            _ => Err(bad_op("use ==, !=, <, <=, >, >= or in")),
        },
        FieldType::Str => match (op, rhs) {
            (CmpOp::Eq | CmpOp::Ne, Operand::Lit(Literal::Str(s), span)) => {
                check_value(info, s, *span)?;
                Ok(Node::StrEq(id, s.as_str().into(), op == CmpOp::Eq))
            }
            (CmpOp::In, Operand::List(items, _)) => {
                let set = items
                    .iter()
                    .map(|(l, s)| match l {
                        Literal::Str(v) => {
                            check_value(info, v, *s)?;
                            Ok(v.as_str().into())
                        }
                        other => Err(mismatch(*s, other)),
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Node::StrIn(id, set))
            }
            (CmpOp::Contains, Operand::Lit(Literal::Str(s), _)) => {
                Ok(Node::StrContains(id, s.as_str().into()))
            }
            (CmpOp::Matches, Operand::Lit(Literal::Str(s), span)) => {
                Ok(Node::StrMatches(id, glob(s, *span)?))
            }
            (CmpOp::In, Operand::Lit(_, s)) => Err(type_err(
                *s,
                "`in` needs a list literal, e.g. [\"a\", \"b\"]".into(),
            )),
            (CmpOp::Eq | CmpOp::Ne | CmpOp::Contains | CmpOp::Matches, Operand::Lit(l, s)) => {
                Err(mismatch(*s, l))
            }
            (_, Operand::List(_, s)) => Err(type_err(
                *s,
                format!("only `in` takes a list; {path} is a string"),
            )),
            _ => Err(bad_op("use ==, !=, in, contains or matches")),
        },
        FieldType::StrList => match (op, rhs) {
            (CmpOp::Contains, Operand::Lit(Literal::Str(s), span)) => {
                check_value(info, s, *span)?;
                Ok(Node::ListContains(id, s.as_str().into()))
            }
            (CmpOp::Matches, Operand::Lit(Literal::Str(s), span)) => {
                Ok(Node::ListMatches(id, glob(s, *span)?))
            }
            (CmpOp::Contains | CmpOp::Matches, Operand::Lit(l, s)) => Err(mismatch(*s, l)),
            _ => Err(bad_op(&format!(
                "use `contains \"x\"`, `matches \"glob\"` (any element), or compare len({path})"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::parse_condition;

    fn check(src: &str, kind: Kind) -> Result<Node, ConditionError> {
        compile(&parse_condition(src)?, kind)
    }

    #[test]
    fn rejects_unknown_fields_and_type_errors_with_positions() {
        let e = check("tls.certificat.days_left < 14", Kind::Tls).unwrap_err();
        assert_eq!(e.kind, K::UnknownField("tls.certificat.days_left".into()));
        assert_eq!(e.span, Span::new(0, 24));

        let e = check("exists(tls.certificate) and http.hsts == absent", Kind::Tls).unwrap_err();
        assert!(matches!(e.kind, K::WrongKind { .. }), "{e:?}");
        assert_eq!(e.span.start, 28);

        let e = check("tls.certificate.days_left < \"14\"", Kind::Tls).unwrap_err();
        assert!(matches!(e.kind, K::Type(_)));
        assert_eq!(e.span.start, 28);

        let e = check("port.state == \"opne\"", Kind::Port).unwrap_err();
        assert!(matches!(e.kind, K::NotAValue { .. }));

        let e = check("tls.protocols contains \"TLS1.0\"", Kind::Tls).unwrap_err();
        assert!(matches!(e.kind, K::NotAValue { .. }));

        let e = check("port.port == absent", Kind::Port).unwrap_err();
        assert!(matches!(e.kind, K::Type(_)));

        let e = check("dns.mx", Kind::Dns).unwrap_err();
        assert!(matches!(e.kind, K::Type(_)));

        let e = check("http.server matches \"[a-\"", Kind::Http).unwrap_err();
        assert!(matches!(e.kind, K::BadGlob(_)));

        let e = check("port.port in [1, \"2\"]", Kind::Port).unwrap_err();
        assert_eq!(e.span.start, 17);

        assert!(check("record.asset == \"x\" and len(dns.caa) == 0", Kind::Dns).is_ok());
    }
}
