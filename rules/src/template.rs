//! `location` and `evidence` templates: literal text with `{field.path}` placeholders.

use protocol::Record;

use crate::compile::resolve;
use crate::fields::{self, FieldId, Kind};
use crate::lexer::Span;

#[derive(Debug, Clone)]
enum Part {
    Text(Box<str>),
    Field(FieldId),
}

/// A compiled template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    parts: Box<[Part]>,
}

/// Template error: byte offset inside the template and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl Template {
    /// Compiles `src` for rules of `kind`. `{{` and `}}` stand for literal braces.
    pub(crate) fn compile(src: &str, kind: Kind) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut it = src.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            match c {
                '{' if matches!(it.peek(), Some(&(_, '{'))) => {
                    it.next();
                    text.push('{');
                }
                '}' if matches!(it.peek(), Some(&(_, '}'))) => {
                    it.next();
                    text.push('}');
                }
                '{' => {
                    let start = i + 1;
                    let Some(len) = src[start..].find('}') else {
                        return Err(TemplateError {
                            offset: i,
                            message: "unclosed `{` (write `{{` for a literal brace)".into(),
                        });
                    };
                    let path = src[start..start + len].trim();
                    let info = resolve(path, Span::new(start, start + len), kind).map_err(|e| {
                        TemplateError {
                            offset: start,
                            message: e.kind.to_string(),
                        }
                    })?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text).into()));
                    }
                    parts.push(Part::Field(info.id));
                    // Skip to just past the closing brace.
                    while let Some(&(j, _)) = it.peek() {
                        it.next();
                        if j == start + len {
                            break;
                        }
                    }
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "unmatched `}` (write `}}` for a literal brace)".into(),
                    });
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text.into()));
        }
        Ok(Template {
            parts: parts.into(),
        })
    }

    /// Renders for `rec`.
    pub(crate) fn render(&self, rec: &Record) -> String {
        let mut out = String::new();
        for p in self.parts.iter() {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => fields::render(fields::value(*f, rec), &mut out),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Observation, PortObservation, PortState};

    #[test]
    fn renders_fields_and_escapes() {
        let rec = Record {
            asset: "db1".into(),
            job_id: String::new(),
            observed_ms: 0,
            observation: Observation::Port(PortObservation {
                ip: "10.0.0.5".into(),
                port: 6379,
                state: PortState::Open,
                service: Some("redis".into()),
                product: None,
                banner: None,
                tls: false,
            }),
        };
        let t = Template::compile(
            "{port.ip}:{port.port} {{{port.service}}} {port.product}",
            Kind::Port,
        )
        .unwrap();
        assert_eq!(t.render(&rec), "10.0.0.5:6379 {redis} -");
    }

    #[test]
    fn reports_offsets() {
        let e = Template::compile("ip {port.ipp}", Kind::Port).unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(
            e.message.contains("unknown field port.ipp"),
            "{}",
            e.message
        );
        assert_eq!(
            Template::compile("a {port.ip", Kind::Port)
                .unwrap_err()
                .offset,
            2
        );
        assert_eq!(
            Template::compile("a } b", Kind::Port).unwrap_err().offset,
            2
        );
        assert!(Template::compile("{tls.ip}", Kind::Port).is_err());
    }
}
