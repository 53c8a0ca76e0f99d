//! A small PDF 1.4 writer: base-14 Helvetica fonts in WinAnsi encoding, text,
//! lines and filled rectangles, one uncompressed content stream per page, and
//! a cross-reference table. [`layout`] builds paged documents on top of it.

mod helvetica;
pub mod layout;

pub use layout::{Color, Column, Layout};

/// One of the two fonts every page can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Font {
    /// Helvetica (`/F1`).
    Regular,
    /// Helvetica-Bold (`/F2`).
    Bold,
}

impl Font {
    fn resource(self) -> &'static str {
        match self {
            Font::Regular => "F1",
            Font::Bold => "F2",
        }
    }

    fn widths(self) -> &'static [u16; 224] {
        match self {
            Font::Regular => &helvetica::REGULAR,
            Font::Bold => &helvetica::BOLD,
        }
    }
}

/// WinAnsi code of a character; `None` when the encoding has no such glyph.
fn winansi(c: char) -> Option<u8> {
    let code = match c {
        ' '..='~' => c as u32 as u8,
        '\u{A0}'..='\u{FF}' => c as u32 as u8,
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8A,
        '‹' => 0x8B,
        'Œ' => 0x8C,
        'Ž' => 0x8E,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9A,
        '›' => 0x9B,
        'œ' => 0x9C,
        'ž' => 0x9E,
        'Ÿ' => 0x9F,
        _ => return None,
    };
    Some(code)
}

/// Encodes text in WinAnsi: whitespace controls become spaces and characters
/// the base-14 fonts cannot show become `?`, so every byte has a glyph.
pub fn encode(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| {
            if c.is_whitespace() && (c as u32) < 0x80 {
                b' '
            } else {
                winansi(c).unwrap_or(b'?')
            }
        })
        .collect()
}

/// Width of `text` set in `font` at `size` points.
pub fn text_width(font: Font, size: f32, text: &str) -> f32 {
    let w = font.widths();
    let units: u32 = encode(text)
        .iter()
        .map(|&b| u32::from(w[usize::from(b.max(32)) - 32]))
        .sum();
    units as f32 * size / 1000.0
}

/// A PDF literal string `( ... )` of WinAnsi bytes: `(`, `)` and `\` are
/// escaped, bytes outside printable ASCII written as octal escapes.
pub fn literal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('(');
    for &b in bytes {
        match b {
            b'(' | b')' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7E => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push(')');
    out
}

/// Document information dictionary entries.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// `/Title`.
    pub title: String,
    /// `/CreationDate` as ms since the epoch.
    pub created_ms: u64,
}

fn pdf_date(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let dt = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    format!("D:{}Z", dt.format("%Y%m%d%H%M%S"))
}

/// Serialises pages (content stream operators, A4 portrait) into a PDF file.
pub fn write(pages: &[String], info: &Info, page_size: (f32, f32)) -> Vec<u8> {
    // Objects: 1 catalog, 2 page tree, 3 and 4 fonts, 5 info, then a page and
    // its content stream per page.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let page_ids: Vec<usize> = (0..pages.len()).map(|i| 6 + 2 * i).collect();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = page_ids.iter().map(|id| format!("{id} 0 R")).collect();
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
    );
    for name in ["Helvetica", "Helvetica-Bold"] {
        objects.push(
            format!(
                "<< /Type /Font /Subtype /Type1 /BaseFont /{name} /Encoding /WinAnsiEncoding >>"
            )
            .into_bytes(),
        );
    }
    objects.push(
        format!(
            "<< /Title {} /Producer (vigil) /CreationDate ({}) >>",
            literal(&encode(&info.title)),
            pdf_date(info.created_ms)
        )
        .into_bytes(),
    );
    for (i, content) in pages.iter().enumerate() {
        let content_id = page_ids[i] + 1;
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] \
                 /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {content_id} 0 R >>",
                fmt_num(page_size.0),
                fmt_num(page_size.1)
            )
            .into_bytes(),
        );
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend_from_slice(content.as_bytes());
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }
    let mut out = Vec::new();
    // The binary comment tells transfer tools the file is not text.
    out.extend_from_slice(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n");
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref_at = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n", objects.len() + 1).as_bytes());
    // Each entry is exactly 20 bytes, line end included.
    out.extend_from_slice(b"0000000000 65535 f \n");
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref_at}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A number as PDF operators want it: at most two decimals, no exponent.
pub fn fmt_num(v: f32) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Appends the operators that show `text` at `(x, y)`.
pub fn show_text(out: &mut String, font: Font, size: f32, x: f32, y: f32, text: &str) {
    out.push_str(&format!(
        "BT /{} {} Tf {} {} Td {} Tj ET\n",
        font.resource(),
        fmt_num(size),
        fmt_num(x),
        fmt_num(y),
        literal(&encode(text))
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn literal_escapes_delimiters_backslashes_and_high_bytes() {
        assert_eq!(literal(b"a(b)c\\d"), "(a\\(b\\)c\\\\d)");
        assert_eq!(literal(&encode("Größe €")), "(Gr\\366\\337e \\200)");
        // Unbalanced parentheses must not end the string early.
        assert_eq!(literal(b")("), "(\\)\\()");
    }

    #[test]
    fn characters_outside_winansi_fall_back_to_a_question_mark() {
        assert_eq!(encode("Ж漢\u{1F600}é\tx"), b"???\xE9 x".to_vec());
    }

    #[test]
    fn widths_follow_the_helvetica_metrics() {
        // "Hi" = H 722 + i 222 in Helvetica; 722 + 278 in the bold face.
        assert!((text_width(Font::Regular, 10.0, "Hi") - 9.44).abs() < 1e-4);
        assert!((text_width(Font::Bold, 10.0, "Hi") - 10.0).abs() < 1e-4);
        assert!((text_width(Font::Regular, 1000.0, "é") - 556.0).abs() < 1e-3);
        // Every defined WinAnsi code has a width; only undefined codes are 0.
        for code in 32u8..=255 {
            let undefined = matches!(code, 0x7F | 0x81 | 0x8D | 0x8F | 0x90 | 0x9D);
            for w in [&helvetica::REGULAR, &helvetica::BOLD] {
                assert_eq!(w[usize::from(code) - 32] == 0, undefined, "code {code:#x}");
            }
        }
    }

    #[test]
    fn xref_offsets_point_at_their_objects() {
        let mut page = String::new();
        show_text(&mut page, Font::Bold, 12.0, 50.0, 800.0, "Hello (world) \\");
        let pdf = write(
            &[page.clone(), page],
            &Info {
                title: "T".into(),
                created_ms: 0,
            },
            (595.0, 842.0),
        );
        assert!(pdf.starts_with(b"%PDF-1.4\n"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        let tail = std::str::from_utf8(&pdf[pdf.len() - 40..]).unwrap_or_default();
        let startxref: usize = tail
            .split("startxref\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .and_then(|s| s.parse().ok())
            .expect("startxref");
        assert_eq!(&pdf[startxref..startxref + 5], b"xref\n");
        let xref = std::str::from_utf8(&pdf[startxref..]).unwrap();
        let mut lines = xref.lines().skip(1);
        let count: usize = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap();
        // catalog, pages, 2 fonts, info, 2 × (page + content)
        assert_eq!(count, 10);
        assert_eq!(lines.next(), Some("0000000000 65535 f "));
        for obj in 1..count {
            let line = lines.next().unwrap();
            assert_eq!(
                line.len(),
                19,
                "entry {obj} must be 20 bytes with its newline"
            );
            let off: usize = line[..10].parse().unwrap();
            let head = format!("{obj} 0 obj\n");
            assert_eq!(&pdf[off..off + head.len()], head.as_bytes(), "object {obj}");
        }
        assert!(xref.contains(&format!("/Size {count}")));
        // Stream lengths are exact.
        let at = find(&pdf, b"/Length ").unwrap();
        let rest = std::str::from_utf8(&pdf[at + 8..at + 20]).unwrap_or_default();
        let len: usize = rest.split_whitespace().next().unwrap().parse().unwrap();
        let start = find(&pdf[at..], b"stream\n").unwrap() + at + 7;
        assert_eq!(&pdf[start + len..start + len + 10], b"\nendstream");
    }

    #[test]
    fn numbers_have_no_exponent_or_trailing_zeros() {
        assert_eq!(fmt_num(12.0), "12");
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(-0.001), "0");
        assert_eq!(fmt_num(841.89), "841.89");
    }
}
