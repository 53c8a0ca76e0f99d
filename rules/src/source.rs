//! Maps offsets inside decoded TOML strings back to byte offsets in the file,
//! so condition and template errors point at the exact character.

use std::ops::Range;

/// Byte offset in the file of byte `decoded` of the string value whose raw
/// token (quotes included) occupies `span` of `file`.
pub(crate) fn file_offset(file: &str, span: Range<usize>, decoded: usize) -> usize {
    let Some(raw) = file.get(span.clone()) else {
        return span.start;
    };
    let (open, basic) = if raw.starts_with("'''") {
        (3, false)
    } else if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with('\'') {
        (1, false)
    } else if raw.starts_with('"') {
        (1, true)
    } else {
        (0, false)
    };
    let mut start = open;
    if open == 3 {
        // TOML trims a newline directly after the opening delimiter.
        if raw[start..].starts_with("\r\n") {
            start += 2;
        } else if raw[start..].starts_with('\n') {
            start += 1;
        }
    }
    if !basic {
        return (span.start + start + decoded).min(span.end);
    }
    let body = &raw[start..];
    let mut chars = body.char_indices().peekable();
    let mut d = 0usize;
    while let Some((i, c)) = chars.next() {
        let line_continuation = c == '\\'
            && chars
                .peek()
                .is_some_and(|(_, w)| matches!(w, ' ' | '\t' | '\r' | '\n'));
        if d >= decoded && !line_continuation {
            return span.start + start + i;
        }
        if c != '\\' {
            d += c.len_utf8();
            continue;
        }
        let Some((_, e)) = chars.next() else { break };
        d += match e {
            'u' | 'U' | 'x' => {
                let n = match e {
                    'u' => 4,
                    'U' => 8,
                    _ => 2,
                };
                let mut code = 0u32;
                for _ in 0..n {
                    if let Some((_, h)) = chars.next() {
                        code = code.wrapping_mul(16) + h.to_digit(16).unwrap_or(0);
                    }
                }
                char::from_u32(code).map_or(1, char::len_utf8)
            }
            ' ' | '\t' | '\r' | '\n' => {
                // Line-ending backslash: all following whitespace is dropped.
                while chars.peek().is_some_and(|(_, w)| w.is_whitespace()) {
                    chars.next();
                }
                0
            }
            _ => 1,
        };
    }
    (span.start + start + body.len()).min(span.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locate(file: &str, needle_in_value: &str, value: &str) -> usize {
        let start = file.find(['"', '\'']).unwrap();
        let span = start..file.len();
        file_offset(file, span, value.find(needle_in_value).unwrap())
    }

    #[test]
    fn maps_offsets_through_quotes_and_escapes() {
        let file = r#"x = "a \"q\" \u00e9 TARGET""#;
        let value = "a \"q\" \u{e9} TARGET";
        let at = locate(file, "TARGET", value);
        assert_eq!(&file[at..at + 6], "TARGET");

        let file = "x = 'a \"b\" TARGET'";
        let at = locate(file, "TARGET", "a \"b\" TARGET");
        assert_eq!(&file[at..at + 6], "TARGET");

        let file = "x = '''\nab TARGET'''";
        let at = locate(file, "TARGET", "ab TARGET");
        assert_eq!(&file[at..at + 6], "TARGET");

        let file = "x = \"\"\"\nab \\\n    TARGET\"\"\"";
        let at = locate(file, "TARGET", "ab TARGET");
        assert_eq!(&file[at..at + 6], "TARGET");
    }
}
