//! Flowing layout over the PDF writer: a cursor moving down A4 pages,
//! word-wrapped paragraphs, tables with repeated headers, automatic page
//! breaks and "page i of n" footers.

use super::{Font, Info, fmt_num, show_text, text_width};

/// An RGB colour, components 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Color(pub f32, pub f32, pub f32);

impl Color {
    /// Black.
    pub const BLACK: Color = Color(0.0, 0.0, 0.0);
    /// White.
    pub const WHITE: Color = Color(1.0, 1.0, 1.0);
    /// Mid grey for rules and secondary text.
    pub const GREY: Color = Color(0.45, 0.45, 0.45);
    /// Light grey for table headers.
    pub const LIGHT: Color = Color(0.9, 0.9, 0.9);

    fn ops(self) -> String {
        format!(
            "{} {} {}",
            fmt_num(self.0),
            fmt_num(self.1),
            fmt_num(self.2)
        )
    }
}

/// A table column: header text and share of the text width.
#[derive(Debug, Clone)]
pub struct Column {
    /// Header text.
    pub title: String,
    /// Fraction of the usable width (the fractions of a table should sum to 1).
    pub share: f32,
}

/// One table cell: text, and a fill colour behind it.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// Text, wrapped to the column width.
    pub text: String,
    /// Background fill.
    pub fill: Option<Color>,
    /// Text colour when the fill is dark.
    pub light_text: bool,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell {
            text,
            ..Cell::default()
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::from(text.to_string())
    }
}

/// A4 portrait in points.
pub const A4: (f32, f32) = (595.28, 841.89);
const MARGIN: f32 = 50.0;
const FOOTER: f32 = 30.0;
const CELL_PAD: f32 = 3.0;

/// A document being laid out.
pub struct Layout {
    pages: Vec<String>,
    cur: String,
    y: f32,
    footer_text: String,
}

impl Layout {
    /// An empty document whose pages carry `footer_text` next to the page number.
    pub fn new(footer_text: &str) -> Self {
        Self {
            pages: Vec::new(),
            cur: String::new(),
            y: A4.1 - MARGIN,
            footer_text: footer_text.to_string(),
        }
    }

    /// Usable text width.
    pub fn width(&self) -> f32 {
        A4.0 - 2.0 * MARGIN
    }

    /// Current vertical position (baseline space left is `y - bottom`).
    pub fn y(&self) -> f32 {
        self.y
    }

    fn bottom() -> f32 {
        MARGIN + FOOTER
    }

    /// Ends the current page and starts a fresh one.
    pub fn page_break(&mut self) {
        self.pages.push(std::mem::take(&mut self.cur));
        self.y = A4.1 - MARGIN;
    }

    /// Breaks the page unless `height` points fit below the cursor.
    pub fn ensure(&mut self, height: f32) {
        if self.y - height < Self::bottom() && self.y < A4.1 - MARGIN {
            self.page_break();
        }
    }

    /// Moves the cursor down.
    pub fn space(&mut self, h: f32) {
        self.y -= h;
        if self.y < Self::bottom() {
            self.page_break();
        }
    }

    /// A filled rectangle with its lower-left corner at `(x, y)`.
    pub fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Color) {
        self.cur.push_str(&format!(
            "q {} rg {} {} {} {} re f Q\n",
            color.ops(),
            fmt_num(x),
            fmt_num(y),
            fmt_num(w),
            fmt_num(h)
        ));
    }

    /// A stroked line.
    pub fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, color: Color, width: f32) {
        self.cur.push_str(&format!(
            "q {} RG {} w {} {} m {} {} l S Q\n",
            color.ops(),
            fmt_num(width),
            fmt_num(x1),
            fmt_num(y1),
            fmt_num(x2),
            fmt_num(y2)
        ));
    }

    /// Text at an absolute position.
    pub fn text_at(&mut self, font: Font, size: f32, x: f32, y: f32, text: &str, color: Color) {
        self.cur.push_str(&format!("q {} rg\n", color.ops()));
        show_text(&mut self.cur, font, size, x, y, text);
        self.cur.push_str("Q\n");
    }

    /// Word-wrapped paragraph across the text width, breaking pages between lines.
    pub fn paragraph(&mut self, font: Font, size: f32, text: &str, color: Color) {
        self.paragraph_indented(font, size, 0.0, text, color);
    }

    /// Word-wrapped paragraph starting `indent` points from the margin.
    pub fn paragraph_indented(
        &mut self,
        font: Font,
        size: f32,
        indent: f32,
        text: &str,
        color: Color,
    ) {
        let lh = size * 1.3;
        for line in wrap(font, size, self.width() - indent, text) {
            self.ensure(lh);
            self.y -= lh;
            let y = self.y + size * 0.25;
            self.text_at(font, size, MARGIN + indent, y, &line, color);
        }
    }

    /// A section heading with a rule under it; kept with at least `keep` points of what follows.
    pub fn heading(&mut self, text: &str, size: f32, keep: f32) {
        self.ensure(size * 2.0 + keep);
        self.space(size * 0.6);
        self.paragraph(Font::Bold, size, text, Color::BLACK);
        let y = self.y - 2.0;
        self.line(MARGIN, y, A4.0 - MARGIN, y, Color::GREY, 0.5);
        self.space(size * 0.5);
    }

    /// A table; the header row repeats after each page break. Rows never split.
    pub fn table(&mut self, columns: &[Column], rows: &[Vec<Cell>], size: f32) {
        let total = self.width();
        let widths: Vec<f32> = columns.iter().map(|c| c.share * total).collect();
        let header: Vec<Cell> = columns
            .iter()
            .map(|c| Cell {
                text: c.title.clone(),
                fill: Some(Color::LIGHT),
                light_text: false,
            })
            .collect();
        let header_h = self.row_height(&header, &widths, Font::Bold, size);
        let first_h = rows
            .first()
            .map_or(0.0, |r| self.row_height(r, &widths, Font::Regular, size));
        self.ensure(header_h + first_h);
        self.row(&header, &widths, Font::Bold, size, header_h);
        for r in rows {
            let h = self.row_height(r, &widths, Font::Regular, size);
            if self.y - h < Self::bottom() {
                self.page_break();
                self.row(&header, &widths, Font::Bold, size, header_h);
            }
            self.row(r, &widths, Font::Regular, size, h);
        }
        self.space(size);
    }

    fn row_height(&self, cells: &[Cell], widths: &[f32], font: Font, size: f32) -> f32 {
        let lines = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| wrap(font, size, w - 2.0 * CELL_PAD, &c.text).len().max(1))
            .max()
            .unwrap_or(1);
        // A row taller than a page would never fit; cap it (text is clipped by
        // the cap, which only overlong evidence could reach).
        (lines as f32 * size * 1.25 + 2.0 * CELL_PAD).min(A4.1 - 2.0 * MARGIN - FOOTER - 40.0)
    }

    fn row(&mut self, cells: &[Cell], widths: &[f32], font: Font, size: f32, h: f32) {
        let top = self.y;
        let mut x = MARGIN;
        for (c, w) in cells.iter().zip(widths) {
            if let Some(fill) = c.fill {
                self.fill_rect(x, top - h, *w, h, fill);
            }
            let color = if c.light_text {
                Color::WHITE
            } else {
                Color::BLACK
            };
            let mut y = top - CELL_PAD - size;
            for line in wrap(font, size, w - 2.0 * CELL_PAD, &c.text) {
                if y < top - h {
                    break;
                }
                self.text_at(font, size, x + CELL_PAD, y + size * 0.2, &line, color);
                y -= size * 1.25;
            }
            x += w;
        }
        // Grid: the row's top and bottom rule and the column separators.
        let right = MARGIN + widths.iter().sum::<f32>();
        self.line(MARGIN, top, right, top, Color::GREY, 0.4);
        self.line(MARGIN, top - h, right, top - h, Color::GREY, 0.4);
        let mut x = MARGIN;
        self.line(x, top, x, top - h, Color::GREY, 0.4);
        for w in widths {
            x += w;
            self.line(x, top, x, top - h, Color::GREY, 0.4);
        }
        self.y = top - h;
    }

    /// Finishes the document: numbers every page and serialises it.
    pub fn finish(mut self, info: &Info) -> Vec<u8> {
        if !self.cur.is_empty() || self.pages.is_empty() {
            self.pages.push(std::mem::take(&mut self.cur));
        }
        let n = self.pages.len();
        let footer = self.footer_text.clone();
        let pages: Vec<String> = self
            .pages
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| {
                let label = format!("Page {} of {n}", i + 1);
                let w = text_width(Font::Regular, 8.0, &label);
                p.push_str(&format!("q {} rg\n", Color::GREY.ops()));
                show_text(&mut p, Font::Regular, 8.0, MARGIN, MARGIN - 10.0, &footer);
                show_text(
                    &mut p,
                    Font::Regular,
                    8.0,
                    A4.0 - MARGIN - w,
                    MARGIN - 10.0,
                    &label,
                );
                p.push_str("Q\n");
                p
            })
            .collect();
        super::write(&pages, info, A4)
    }
}

/// Greedy word wrap by font metrics; a word wider than the line is split.
pub fn wrap(font: Font, size: f32, width: f32, text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if text_width(font, size, &candidate) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if text_width(font, size, word) <= width {
                line = word.to_string();
                continue;
            }
            for c in word.chars() {
                let mut next = line.clone();
                next.push(c);
                if text_width(font, size, &next) > width && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    line.push(c);
                } else {
                    line = next;
                }
            }
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_lines_within_the_width_and_loses_no_words() {
        let text = "The quick brown fox jumps over the lazy dog and keeps running far away";
        let lines = wrap(Font::Regular, 10.0, 100.0, text);
        assert!(lines.len() > 1);
        for l in &lines {
            assert!(text_width(Font::Regular, 10.0, l) <= 100.0, "{l:?}");
        }
        assert_eq!(lines.join(" "), text);
        let long = "x".repeat(200);
        let lines = wrap(Font::Bold, 10.0, 50.0, &long);
        assert!(lines.len() >= 4);
        assert_eq!(lines.concat(), long);
    }

    #[test]
    fn long_content_breaks_pages_and_numbers_them() {
        let mut l = Layout::new("footer");
        for i in 0..200 {
            l.paragraph(Font::Regular, 10.0, &format!("line {i}"), Color::BLACK);
        }
        let pdf = l.finish(&Info::default());
        let text = String::from_utf8_lossy(&pdf);
        let pages = text.matches("/Type /Page ").count();
        assert!(pages >= 4, "{pages} pages");
        assert!(text.contains(&format!("(Page {pages} of {pages})")));
        assert!(text.contains("(line 199)"));
    }
}
