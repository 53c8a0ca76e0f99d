//! Syntax tree of conditions, its parser, and its canonical printer.

use std::fmt;

use crate::error::{ConditionError, ConditionErrorKind};
use crate::lexer::{CmpOp, Span, Tok, tokenize};

/// Deepest nesting of parentheses/`not` accepted, so hostile input cannot overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// Integer.
    Int(i64),
    /// String.
    Str(String),
    /// Boolean.
    Bool(bool),
    /// The `absent` marker for missing optional fields.
    Absent,
}

/// Built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `exists(path)`: the optional field is present.
    Exists,
    /// `len(path)`: number of elements of a list field.
    Len,
}

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Exists => "exists",
            Func::Len => "len",
        }
    }
}

/// Something that can stand on either side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// Dotted field path.
    Path(String, Span),
    /// Function applied to a path.
    Call(Func, String, Span),
    /// Literal.
    Lit(Literal, Span),
    /// List literal.
    List(Vec<(Literal, Span)>, Span),
}

impl Operand {
    /// Source span.
    pub fn span(&self) -> Span {
        match self {
            Operand::Path(_, s)
            | Operand::Call(_, _, s)
            | Operand::Lit(_, s)
            | Operand::List(_, s) => *s,
        }
    }
}

/// A condition expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Any operand true (two or more).
    Or(Vec<Expr>, Span),
    /// All operands true (two or more).
    And(Vec<Expr>, Span),
    /// Negation.
    Not(Box<Expr>, Span),
    /// Binary comparison.
    Compare {
        /// Left side.
        lhs: Operand,
        /// Operator.
        op: CmpOp,
        /// Span of the operator.
        op_span: Span,
        /// Right side.
        rhs: Operand,
    },
    /// A bare operand used as a predicate (`tls.chain_valid`, `exists(x)`, `true`).
    Operand(Operand),
}

impl Expr {
    /// Source span.
    pub fn span(&self) -> Span {
        match self {
            Expr::Or(_, s) | Expr::And(_, s) | Expr::Not(_, s) => *s,
            Expr::Compare { lhs, rhs, .. } => lhs.span().to(rhs.span()),
            Expr::Operand(o) => o.span(),
        }
    }

    /// The same tree with every span zeroed, for structural comparison.
    pub fn without_spans(&self) -> Expr {
        fn op(o: &Operand) -> Operand {
            let z = Span::default();
            match o {
                Operand::Path(p, _) => Operand::Path(p.clone(), z),
                Operand::Call(f, p, _) => Operand::Call(*f, p.clone(), z),
                Operand::Lit(l, _) => Operand::Lit(l.clone(), z),
                Operand::List(items, _) => {
                    Operand::List(items.iter().map(|(l, _)| (l.clone(), z)).collect(), z)
                }
            }
        }
        let z = Span::default();
        match self {
            Expr::Or(v, _) => Expr::Or(v.iter().map(Expr::without_spans).collect(), z),
            Expr::And(v, _) => Expr::And(v.iter().map(Expr::without_spans).collect(), z),
            Expr::Not(e, _) => Expr::Not(Box::new(e.without_spans()), z),
            Expr::Compare {
                lhs, op: o, rhs, ..
            } => Expr::Compare {
                lhs: op(lhs),
                op: *o,
                op_span: z,
                rhs: op(rhs),
            },
            Expr::Operand(o) => Expr::Operand(op(o)),
        }
    }
}

/// Parses a condition into its syntax tree; never panics, whatever the input.
pub fn parse_condition(src: &str) -> Result<Expr, ConditionError> {
    let tokens = tokenize(src)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let expr = p.or_expr()?;
    match p.peek() {
        Tok::Eof => Ok(expr),
        Tok::RParen => Err(p.error("`and`, `or` or end of condition (unbalanced `)`)")),
        _ => Err(p.error("`and`, `or` or end of condition")),
    }
}

struct Parser {
    tokens: Vec<(Tok, Span)>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        // tokenize always ends with Eof and we never advance past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)].0
    }

    fn span(&self) -> Span {
        self.tokens[self.pos.min(self.tokens.len() - 1)].1
    }

    fn bump(&mut self) -> (Tok, Span) {
        let t = self.tokens[self.pos.min(self.tokens.len() - 1)].clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn error(&self, expected: &'static str) -> ConditionError {
        ConditionError::new(
            self.span(),
            ConditionErrorKind::Unexpected {
                expected,
                found: self.peek().describe(),
            },
        )
    }

    fn enter(&mut self) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ConditionError::new(
                self.span(),
                ConditionErrorKind::TooDeep(MAX_DEPTH),
            ));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, ConditionError> {
        let first = self.and_expr()?;
        if *self.peek() != Tok::Or {
            return Ok(first);
        }
        let mut items = vec![first];
        while *self.peek() == Tok::Or {
            self.bump();
            items.push(self.and_expr()?);
        }
        let span = items[0].span().to(items[items.len() - 1].span());
        Ok(Expr::Or(items, span))
    }

    fn and_expr(&mut self) -> Result<Expr, ConditionError> {
        let first = self.unary()?;
        if *self.peek() != Tok::And {
            return Ok(first);
        }
        let mut items = vec![first];
        while *self.peek() == Tok::And {
            self.bump();
            items.push(self.unary()?);
        }
        let span = items[0].span().to(items[items.len() - 1].span());
        Ok(Expr::And(items, span))
    }

    fn unary(&mut self) -> Result<Expr, ConditionError> {
        self.enter()?;
        let result = match self.peek() {
            Tok::Not => {
                let (_, start) = self.bump();
                let inner = self.unary()?;
                let span = start.to(inner.span());
                Ok(Expr::Not(Box::new(inner), span))
            }
            Tok::LParen => {
                let (_, open) = self.bump();
                let inner = self.or_expr()?;
                if *self.peek() != Tok::RParen {
                    let mut err = self.error("`)`");
                    if *self.peek() == Tok::Eof {
                        err.span = open;
                        err.kind = ConditionErrorKind::Unexpected {
                            expected: "a matching `)` for this `(`",
                            found: "end of condition".into(),
                        };
                    }
                    return Err(err);
                }
                let (_, close) = self.bump();
                // Re-span the group so errors about it cover the parentheses.
                Ok(match inner {
                    Expr::Or(v, _) => Expr::Or(v, open.to(close)),
                    Expr::And(v, _) => Expr::And(v, open.to(close)),
                    other => other,
                })
            }
            _ => self.comparison(),
        };
        self.depth -= 1;
        result
    }

    fn comparison(&mut self) -> Result<Expr, ConditionError> {
        let lhs = self.operand()?;
        let Tok::Cmp(op) = *self.peek() else {
            return Ok(Expr::Operand(lhs));
        };
        let (_, op_span) = self.bump();
        let rhs = self.operand()?;
        Ok(Expr::Compare {
            lhs,
            op,
            op_span,
            rhs,
        })
    }

    fn literal(&mut self) -> Option<(Literal, Span)> {
        let lit = match self.peek() {
            Tok::Str(s) => Literal::Str(s.clone()),
            Tok::Int(i) => Literal::Int(*i),
            Tok::True => Literal::Bool(true),
            Tok::False => Literal::Bool(false),
            Tok::Absent => Literal::Absent,
            _ => return None,
        };
        let (_, span) = self.bump();
        Some((lit, span))
    }

    fn operand(&mut self) -> Result<Operand, ConditionError> {
        if let Some((lit, span)) = self.literal() {
            return Ok(Operand::Lit(lit, span));
        }
        match self.peek().clone() {
            Tok::Path(name) => {
                let (_, span) = self.bump();
                if *self.peek() != Tok::LParen {
                    return Ok(Operand::Path(name, span));
                }
                let func = match name.as_str() {
                    "exists" => Func::Exists,
                    "len" => Func::Len,
                    _ => {
                        return Err(ConditionError::new(
                            span,
                            ConditionErrorKind::UnknownFunction(name),
                        ));
                    }
                };
                self.bump();
                let Tok::Path(arg) = self.peek().clone() else {
                    return Err(self.error("a field path"));
                };
                self.bump();
                if *self.peek() != Tok::RParen {
                    return Err(self.error("`)`"));
                }
                let (_, close) = self.bump();
                Ok(Operand::Call(func, arg, span.to(close)))
            }
            Tok::LBracket => {
                let (_, open) = self.bump();
                let mut items = Vec::new();
                if *self.peek() == Tok::RBracket {
                    let (_, close) = self.bump();
                    return Ok(Operand::List(items, open.to(close)));
                }
                loop {
                    let Some(item) = self.literal() else {
                        return Err(self.error("a literal (string, integer, true, false)"));
                    };
                    items.push(item);
                    match self.peek() {
                        Tok::Comma => {
                            self.bump();
                        }
                        Tok::RBracket => {
                            let (_, close) = self.bump();
                            return Ok(Operand::List(items, open.to(close)));
                        }
                        _ => return Err(self.error("`,` or `]`")),
                    }
                }
            }
            _ => Err(self.error("a field, literal, list, `not` or `(`")),
        }
    }
}

fn write_str_lit(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Str(s) => write_str_lit(f, s),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Absent => f.write_str("absent"),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Path(p, _) => f.write_str(p),
            Operand::Call(func, p, _) => write!(f, "{}({p})", func.name()),
            Operand::Lit(l, _) => write!(f, "{l}"),
            Operand::List(items, _) => {
                f.write_str("[")?;
                for (i, (l, _)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{l}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Prints in canonical form: nested `and`/`or` groups are always parenthesized so
/// that re-parsing yields the same tree.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn child(f: &mut fmt::Formatter<'_>, e: &Expr) -> fmt::Result {
            match e {
                Expr::Or(..) | Expr::And(..) => write!(f, "({e})"),
                _ => write!(f, "{e}"),
            }
        }
        fn join(f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str) -> fmt::Result {
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                child(f, e)?;
            }
            Ok(())
        }
        match self {
            Expr::Or(items, _) => join(f, items, " or "),
            Expr::And(items, _) => join(f, items, " and "),
            Expr::Not(inner, _) => {
                f.write_str("not ")?;
                child(f, inner)
            }
            Expr::Compare { lhs, op, rhs, .. } => write!(f, "{lhs} {} {rhs}", op.as_str()),
            Expr::Operand(o) => write!(f, "{o}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_or_below_and_below_not() {
        let e = parse_condition("not a or b and c == 1").unwrap();
        match e {
            Expr::Or(items, _) => {
                assert!(matches!(items[0], Expr::Not(..)));
                assert!(matches!(items[1], Expr::And(..)));
            }
            other => panic!("expected or, got {other:?}"),
        }
        assert_eq!(
            parse_condition("not a or b and c == 1")
                .unwrap()
                .to_string(),
            "not a or (b and c == 1)"
        );
    }

    #[test]
    fn parses_lists_calls_and_groups() {
        let e = parse_condition(
            r#"port.state == "open" and (port.port in [23, 3389] or exists(port.banner)) and len(dns.mx) > 0"#,
        )
        .unwrap();
        assert_eq!(
            e.to_string(),
            r#"port.state == "open" and (port.port in [23, 3389] or exists(port.banner)) and len(dns.mx) > 0"#
        );
    }

    #[test]
    fn error_positions_point_at_the_problem() {
        let err = parse_condition("a == 1 and").unwrap_err();
        assert_eq!(err.span.start, 10);
        let err = parse_condition("(a == 1").unwrap_err();
        assert_eq!(err.span.start, 0);
        let err = parse_condition("a == 1)").unwrap_err();
        assert_eq!(err.span.start, 6);
        let err = parse_condition("foo(a)").unwrap_err();
        assert_eq!(err.kind, ConditionErrorKind::UnknownFunction("foo".into()));
        let err = parse_condition("a in [1, b]").unwrap_err();
        assert_eq!(err.span.start, 9);
        let deep = "(".repeat(10_000);
        let err = parse_condition(&deep).unwrap_err();
        assert_eq!(err.kind, ConditionErrorKind::TooDeep(MAX_DEPTH));
        let nots = "not ".repeat(10_000) + "a";
        assert!(parse_condition(&nots).is_err());
    }
}
