//! Typed errors for condition parsing and rule loading.

use std::fmt;
use std::path::PathBuf;

use crate::lexer::Span;

/// What went wrong in a condition, independent of where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionErrorKind {
    /// A character that starts no token.
    #[error("unexpected character `{found}`{hint}")]
    UnexpectedChar {
        /// The offending character.
        found: char,
        /// Extra advice, empty or starting with a space.
        hint: &'static str,
    },
    /// A string literal without its closing quote.
    #[error("unterminated string literal")]
    UnterminatedString,
    /// A backslash escape other than `\" \\ \n \t \r`.
    #[error("invalid escape `\\{0}` in string literal")]
    InvalidEscape(char),
    /// Integer literal outside the 64-bit signed range.
    #[error("integer literal out of range")]
    IntOutOfRange,
    /// A malformed dotted path.
    #[error("malformed field path: {hint}")]
    BadPath {
        /// What is wrong with it.
        hint: &'static str,
    },
    /// The parser met a token it cannot use here.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        /// What would have been valid.
        expected: &'static str,
        /// Description of what was there.
        found: String,
    },
    /// Parentheses or `not`s nested deeper than the parser allows.
    #[error("condition nested deeper than {0} levels")]
    TooDeep(usize),
    /// A function name the language does not define.
    #[error("unknown function `{0}` (known: exists, len)")]
    UnknownFunction(String),
    /// A field path not in the vocabulary.
    #[error("unknown field {0}")]
    UnknownField(String),
    /// A field of another observation kind than the rule applies to.
    #[error(
        "field {field} belongs to {field_kind} observations, but the rule applies to {rule_kind}"
    )]
    WrongKind {
        /// The field path.
        field: String,
        /// Kind the field belongs to.
        field_kind: &'static str,
        /// Kind the rule applies to.
        rule_kind: &'static str,
    },
    /// Operands whose types the operator cannot combine.
    #[error("type mismatch: {0}")]
    Type(String),
    /// A literal outside an enumerated field's value set.
    #[error("{field} is never {value:?}; possible values: {allowed}")]
    NotAValue {
        /// The field path.
        field: String,
        /// The literal used.
        value: String,
        /// Comma-separated possible values.
        allowed: String,
    },
    /// A malformed glob pattern.
    #[error("invalid glob pattern: {0}")]
    BadGlob(&'static str),
}

/// A condition error with the byte span it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at byte {})", span.start)]
pub struct ConditionError {
    /// Location inside the condition source.
    pub span: Span,
    /// What went wrong.
    pub kind: ConditionErrorKind,
}

impl ConditionError {
    /// An error at `span`.
    pub fn new(span: Span, kind: ConditionErrorKind) -> Self {
        ConditionError { span, kind }
    }
}

/// A position in a rule file, 1-based, columns counted in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    /// File name as given to the loader (builtin files use `rules/data/NAME`).
    pub file: String,
    /// Line number.
    pub line: usize,
    /// Column number.
    pub column: usize,
}

impl SourcePos {
    /// Position of byte `offset` in `text`, which was read from `file`.
    pub fn at(file: &str, text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        SourcePos {
            file: file.to_string(),
            line,
            column,
        }
    }
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Errors from loading and compiling rule files.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A rule directory or file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not follow the rule file schema.
    #[error("{pos}: {message}")]
    Syntax {
        /// Where.
        pos: SourcePos,
        /// The TOML parser's message.
        message: String,
    },
    /// A condition failed to parse or type-check.
    #[error("{pos}: {kind}")]
    Condition {
        /// Where, pointing inside the condition string.
        pos: SourcePos,
        /// What went wrong.
        kind: ConditionErrorKind,
    },
    /// A `location` or `evidence` template is malformed or names a bad field.
    #[error("{pos}: in template: {message}")]
    Template {
        /// Where, pointing inside the template string.
        pos: SourcePos,
        /// What went wrong.
        message: String,
    },
    /// A rule id is not a dotted lowercase name.
    #[error(
        "{pos}: invalid rule id {id:?}: use lowercase letters, digits, `-` and `_` in dot-separated segments"
    )]
    InvalidId {
        /// Where.
        pos: SourcePos,
        /// The id.
        id: String,
    },
    /// Two rules share an id.
    #[error("{pos}: duplicate rule id {id} (first defined at {first})")]
    DuplicateRule {
        /// The second definition.
        pos: SourcePos,
        /// The id.
        id: String,
        /// The first definition.
        first: SourcePos,
    },
    /// A framework or control is defined twice.
    #[error("{pos}: duplicate {what} (first defined at {first})")]
    DuplicateControl {
        /// The second definition.
        pos: SourcePos,
        /// `framework X` or `control X Y`.
        what: String,
        /// The first definition.
        first: SourcePos,
    },
    /// A mapping names a framework nobody declared.
    #[error("{pos}: unknown framework {framework} (declare it with [[framework]])")]
    UnknownFramework {
        /// Where.
        pos: SourcePos,
        /// The framework key.
        framework: String,
    },
    /// A mapping names a control its framework does not have.
    #[error(
        "{pos}: unknown control {control} in framework {framework} (declare it with [[control]])"
    )]
    UnknownControl {
        /// Where.
        pos: SourcePos,
        /// The framework key.
        framework: String,
        /// The control id.
        control: String,
    },
    /// A framework is both mapped and listed as unmapped, or a rule has no mapping at all.
    #[error("{pos}: {message}")]
    Mapping {
        /// Where.
        pos: SourcePos,
        /// What is inconsistent.
        message: String,
    },
}
