//! Tokenizer for the condition language.

use crate::error::{ConditionError, ConditionErrorKind};

/// Byte range inside a condition's source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span covering `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Comparison operators, in the spelling the language uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in` (scalar in list literal)
    In,
    /// `contains` (list element or substring)
    Contains,
    /// `matches` (glob)
    Matches,
}

impl CmpOp {
    /// Source spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::In => "in",
            CmpOp::Contains => "contains",
            CmpOp::Matches => "matches",
        }
    }
}

/// One lexical token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// Dotted field path or function name.
    Path(String),
    /// String literal, escapes already decoded.
    Str(String),
    /// Integer literal.
    Int(i64),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// A comparison operator (symbolic or keyword).
    Cmp(CmpOp),
    /// `and`
    And,
    /// `or`
    Or,
    /// `not`
    Not,
    /// `true`
    True,
    /// `false`
    False,
    /// `absent`
    Absent,
    /// End of input.
    Eof,
}

impl Tok {
    /// Human description used in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Path(p) => format!("`{p}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Int(i) => format!("`{i}`"),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Cmp(op) => format!("`{}`", op.as_str()),
            Tok::And => "`and`".into(),
            Tok::Or => "`or`".into(),
            Tok::Not => "`not`".into(),
            Tok::True => "`true`".into(),
            Tok::False => "`false`".into(),
            Tok::Absent => "`absent`".into(),
            Tok::Eof => "end of condition".into(),
        }
    }
}

/// Words that cannot be used as a single-segment field path.
pub const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "contains", "matches", "true", "false", "absent",
];

fn keyword(word: &str) -> Option<Tok> {
    Some(match word {
        "and" => Tok::And,
        "or" => Tok::Or,
        "not" => Tok::Not,
        "in" => Tok::Cmp(CmpOp::In),
        "contains" => Tok::Cmp(CmpOp::Contains),
        "matches" => Tok::Cmp(CmpOp::Matches),
        "true" => Tok::True,
        "false" => Tok::False,
        "absent" => Tok::Absent,
        _ => return None,
    })
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits `src` into tokens with their spans; the last token is always `Eof`.
pub fn tokenize(src: &str) -> Result<Vec<(Tok, Span)>, ConditionError> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let single = |t: Tok| (t, Span::new(start, start + 1));
        match c {
            '(' => {
                chars.next();
                out.push(single(Tok::LParen));
            }
            ')' => {
                chars.next();
                out.push(single(Tok::RParen));
            }
            '[' => {
                chars.next();
                out.push(single(Tok::LBracket));
            }
            ']' => {
                chars.next();
                out.push(single(Tok::RBracket));
            }
            ',' => {
                chars.next();
                out.push(single(Tok::Comma));
            }
            '=' | '!' | '<' | '>' => {
                chars.next();
                let followed_by_eq = matches!(chars.peek(), Some(&(_, '=')));
                let op = match (c, followed_by_eq) {
                    ('=', true) => CmpOp::Eq,
                    ('!', true) => CmpOp::Ne,
                    ('<', true) => CmpOp::Le,
                    ('>', true) => CmpOp::Ge,
                    ('<', false) => CmpOp::Lt,
                    ('>', false) => CmpOp::Gt,
                    _ => {
                        return Err(ConditionError::new(
                            Span::new(start, start + 1),
                            ConditionErrorKind::UnexpectedChar {
                                found: c,
                                hint: if c == '=' {
                                    " (use `==` to compare)"
                                } else {
                                    " (use `not` to negate, `!=` to compare)"
                                },
                            },
                        ));
                    }
                };
                let end = if followed_by_eq {
                    chars.next();
                    start + 2
                } else {
                    start + 1
                };
                out.push((Tok::Cmp(op), Span::new(start, end)));
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                let end = loop {
                    let Some((i, ch)) = chars.next() else {
                        return Err(ConditionError::new(
                            Span::new(start, src.len()),
                            ConditionErrorKind::UnterminatedString,
                        ));
                    };
                    match ch {
                        '"' => break i + 1,
                        '\\' => {
                            let Some((j, esc)) = chars.next() else {
                                return Err(ConditionError::new(
                                    Span::new(start, src.len()),
                                    ConditionErrorKind::UnterminatedString,
                                ));
                            };
                            value.push(match esc {
                                '"' => '"',
                                '\\' => '\\',
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => {
                                    return Err(ConditionError::new(
                                        Span::new(i, j + other.len_utf8()),
                                        ConditionErrorKind::InvalidEscape(other),
                                    ));
                                }
                            });
                        }
                        other => value.push(other),
                    }
                };
                out.push((Tok::Str(value), Span::new(start, end)));
            }
            '-' | '0'..='9' => {
                chars.next();
                let mut end = start + 1;
                while let Some(&(i, d)) = chars.peek() {
                    if d.is_ascii_digit() {
                        end = i + 1;
                        chars.next();
                    } else {
                        break;
                    }
                }
                let span = Span::new(start, end);
                if c == '-' && end == start + 1 {
                    return Err(ConditionError::new(
                        span,
                        ConditionErrorKind::UnexpectedChar {
                            found: '-',
                            hint: " (only integer literals may start with `-`)",
                        },
                    ));
                }
                if let Some(&(i, next)) = chars.peek()
                    && is_ident_continue(next)
                {
                    return Err(ConditionError::new(
                        Span::new(i, i + next.len_utf8()),
                        ConditionErrorKind::UnexpectedChar {
                            found: next,
                            hint: " (a number must be followed by a space or operator)",
                        },
                    ));
                }
                let value = src[start..end]
                    .parse::<i64>()
                    .map_err(|_| ConditionError::new(span, ConditionErrorKind::IntOutOfRange))?;
                out.push((Tok::Int(value), span));
            }
            c if is_ident_start(c) => {
                let mut end = start;
                // Segments are identifiers joined by single dots; a trailing or
                // doubled dot is reported where it occurs.
                loop {
                    match chars.peek() {
                        Some(&(i, ch)) if is_ident_continue(ch) => {
                            end = i + 1;
                            chars.next();
                        }
                        Some(&(i, '.')) => {
                            chars.next();
                            match chars.peek() {
                                Some(&(_, next)) if is_ident_start(next) => {}
                                Some(&(j, next)) => {
                                    return Err(ConditionError::new(
                                        Span::new(j, j + next.len_utf8()),
                                        ConditionErrorKind::BadPath {
                                            hint: "a path segment must start with a letter or `_`",
                                        },
                                    ));
                                }
                                None => {
                                    return Err(ConditionError::new(
                                        Span::new(i, i + 1),
                                        ConditionErrorKind::BadPath {
                                            hint: "a path cannot end with `.`",
                                        },
                                    ));
                                }
                            }
                        }
                        _ => break,
                    }
                }
                let word = &src[start..end];
                let tok = keyword(word).unwrap_or_else(|| Tok::Path(word.to_string()));
                out.push((tok, Span::new(start, end)));
            }
            other => {
                return Err(ConditionError::new(
                    Span::new(start, start + other.len_utf8()),
                    ConditionErrorKind::UnexpectedChar {
                        found: other,
                        hint: "",
                    },
                ));
            }
        }
    }
    out.push((Tok::Eof, Span::new(src.len(), src.len())));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src)
            .expect("tokenizes")
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    #[test]
    fn lexes_operators_literals_and_paths() {
        assert_eq!(
            toks(r#"tls.certificate.days_left <= -3 and x != "a\"b""#),
            vec![
                Tok::Path("tls.certificate.days_left".into()),
                Tok::Cmp(CmpOp::Le),
                Tok::Int(-3),
                Tok::And,
                Tok::Path("x".into()),
                Tok::Cmp(CmpOp::Ne),
                Tok::Str("a\"b".into()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn reports_positions_of_bad_input() {
        let err = tokenize("a == \"open").unwrap_err();
        assert_eq!(err.kind, ConditionErrorKind::UnterminatedString);
        assert_eq!(err.span.start, 5);
        let err = tokenize("a = 1").unwrap_err();
        assert_eq!(err.span, Span::new(2, 3));
        let err = tokenize("tls..x").unwrap_err();
        assert_eq!(err.span.start, 4);
        let err = tokenize("x == 99999999999999999999").unwrap_err();
        assert_eq!(err.kind, ConditionErrorKind::IntOutOfRange);
        let err = tokenize("x == 1a").unwrap_err();
        assert_eq!(err.span.start, 6);
    }
}
