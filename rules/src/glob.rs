//! ASCII-case-insensitive glob patterns for the `matches` operator.
//!
//! Syntax: `*` any run of characters, `?` one character, `[abc]`, `[a-z]`,
//! `[!a-z]` (or `[^a-z]`) character classes, `\x` a literal `x`. The whole
//! value must match. Matching never allocates and runs in O(len(pattern) ×
//! len(value)) thanks to the single-star backtracking strategy.

/// One compiled pattern element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// A literal character, stored lowercased.
    Char(char),
    /// `?`
    Any,
    /// `*`
    Star,
    /// Character class: ranges as written (matched case-insensitively) and negation.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pieces: Vec<Piece>,
}

/// Error in a glob pattern: byte offset within the pattern and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    /// Byte offset of the problem in the pattern.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

fn fold(c: char) -> char {
    c.to_ascii_lowercase()
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let mut pieces = Vec::new();
        let mut it = pattern.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            match c {
                '*' => {
                    if pieces.last() != Some(&Piece::Star) {
                        pieces.push(Piece::Star);
                    }
                }
                '?' => pieces.push(Piece::Any),
                '\\' => match it.next() {
                    Some((_, lit)) => pieces.push(Piece::Char(fold(lit))),
                    None => {
                        return Err(GlobError {
                            offset: i,
                            reason: "pattern ends with a lone `\\`",
                        });
                    }
                },
                '[' => {
                    let negated = matches!(it.peek(), Some(&(_, '!' | '^')));
                    if negated {
                        it.next();
                    }
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    // A `]` right after `[` or `[!` is a literal member, as in POSIX.
                    let mut first = true;
                    while let Some((_, m)) = it.next() {
                        if m == ']' && !first {
                            closed = true;
                            break;
                        }
                        first = false;
                        let lo = if m == '\\' {
                            match it.next() {
                                Some((_, e)) => e,
                                None => break,
                            }
                        } else {
                            m
                        };
                        let is_range = matches!(it.peek(), Some(&(_, '-')))
                            && it.clone().nth(1).is_some_and(|(_, n)| n != ']');
                        if is_range {
                            it.next();
                            let Some((j, hi)) = it.next() else { break };
                            if hi < lo {
                                return Err(GlobError {
                                    offset: j,
                                    reason: "character range is reversed",
                                });
                            }
                            ranges.push((lo, hi));
                        } else {
                            ranges.push((lo, lo));
                        }
                    }
                    if !closed {
                        return Err(GlobError {
                            offset: i,
                            reason: "unclosed `[` character class",
                        });
                    }
                    pieces.push(Piece::Class { negated, ranges });
                }
                c => pieces.push(Piece::Char(fold(c))),
            }
        }
        Ok(Glob { pieces })
    }

    fn piece_matches(piece: &Piece, c: char) -> bool {
        match piece {
            Piece::Char(p) => *p == fold(c),
            Piece::Any => true,
            Piece::Star => false,
            Piece::Class { negated, ranges } => {
                let lc = fold(c);
                let uc = c.to_ascii_uppercase();
                let hit = ranges.iter().any(|&(lo, hi)| {
                    (lo..=hi).contains(&c) || (lo..=hi).contains(&lc) || (lo..=hi).contains(&uc)
                });
                hit != *negated
            }
        }
    }

    /// Whether the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        let p = &self.pieces;
        let (mut pi, mut ti) = (0usize, 0usize);
        // Position after the most recent star, and the text position it is trying.
        let mut star: Option<(usize, usize)> = None;
        loop {
            if pi < p.len() && p[pi] == Piece::Star {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            let next = text[ti..].chars().next();
            match next {
                Some(c) if pi < p.len() && Self::piece_matches(&p[pi], c) => {
                    pi += 1;
                    ti += c.len_utf8();
                }
                None if pi == p.len() => return true,
                _ => {
                    // Mismatch: let the last star swallow one more character.
                    let Some((sp, st)) = star else { return false };
                    let Some(c) = text[st..].chars().next() else {
                        return false;
                    };
                    let st = st + c.len_utf8();
                    star = Some((sp, st));
                    pi = sp;
                    ti = st;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).expect("valid pattern").is_match(t)
    }

    #[test]
    fn matches_like_a_shell_glob_ignoring_ascii_case() {
        assert!(m("*/[0-9]*", "nginx/1.25.3"));
        assert!(!m("*/[0-9]*", "nginx"));
        assert!(m("openssh_[1-7].*", "OpenSSH_7.4"));
        assert!(!m("openssh_[1-7].*", "OpenSSH_9.6p1"));
        assert!(m("*sha1*", "sha1WithRSAEncryption"));
        assert!(m("*SHA1*", "ecdsa-with-SHA1"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "aéc"));
        assert!(!m("a?c", "ac"));
        assert!(m("[!a-c]x", "dx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("[]]", "]"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*", "xxaxxcxxbxx"));
    }

    #[test]
    fn rejects_malformed_patterns() {
        assert_eq!(Glob::new("ab[cd").unwrap_err().offset, 2);
        assert!(Glob::new("x\\").is_err());
        assert!(Glob::new("[z-a]").is_err());
    }
}
