//! Parse errors, worded as dockerd's legacy builder words them (its parser is BuildKit's
//! `frontend/dockerfile/parser` and `instructions`), so clients and scripts see the same text.

use std::fmt;

/// Why a Dockerfile was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A zero-byte file (a file of only comments is [`SyntaxError::NoInstructions`]).
    #[error("the Dockerfile ({name}) cannot be empty")]
    Empty { name: String },
    /// The line level failed (directives, here-documents, JSON of strings, ENV/LABEL form).
    #[error("failed to parse {name}: {kind}")]
    Syntax { name: String, kind: SyntaxError },
    /// One instruction is invalid.
    #[error("dockerfile parse error on line {line}: {kind}")]
    Instruction { line: usize, kind: InstructionError },
    /// An instruction other than ARG before the first FROM.
    #[error("no build stage in current context")]
    NoStage { line: usize },
    /// No FROM at all (only ARGs): dockerd finds no image to produce.
    #[error("No image was generated. Is your Dockerfile empty?")]
    NoFrom,
}

impl ParseError {
    /// The 1-based line the error is about, when it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::Syntax { kind, .. } => kind.line(),
            ParseError::Instruction { line, .. } | ParseError::NoStage { line } => Some(*line),
            ParseError::Empty { .. } | ParseError::NoFrom => None,
        }
    }
}

/// Errors of the line level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("file with no instructions")]
    NoInstructions,
    #[error("invalid escape token '{token}' does not match ` or \\")]
    InvalidEscape { line: usize, token: String },
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective { line: usize, name: String },
    #[error("unterminated heredoc")]
    UnterminatedHeredoc { line: usize },
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray { line: usize },
    /// `ENV key` (legacy form without a value).
    #[error("{keyword} must have two arguments")]
    TwoArguments { line: usize, keyword: String },
    #[error("Syntax error - can't find = in {word:?}. Must be of the form: name=value")]
    NoEquals { line: usize, word: String },
    /// The shell lexer failed on a here-document word.
    #[error("{message}")]
    Heredoc { line: usize, message: String },
}

impl SyntaxError {
    pub fn line(&self) -> Option<usize> {
        match self {
            SyntaxError::NoInstructions => None,
            SyntaxError::InvalidEscape { line, .. }
            | SyntaxError::DuplicateDirective { line, .. }
            | SyntaxError::UnterminatedHeredoc { line }
            | SyntaxError::NotStringArray { line }
            | SyntaxError::TwoArguments { line, .. }
            | SyntaxError::NoEquals { line, .. }
            | SyntaxError::Heredoc { line, .. } => Some(*line),
        }
    }
}

/// A close match offered after an unknown name, as BuildKit's `suggest` package does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Suggestion(pub Option<String>);

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(s) => write!(f, " (did you mean {s}?)"),
            None => Ok(()),
        }
    }
}

/// Errors of one instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionError {
    #[error("unknown instruction: {name}{suggestion}")]
    UnknownInstruction {
        name: String,
        suggestion: Suggestion,
    },
    /// Also what an instruction that takes no flags answers to any flag.
    #[error("unknown flag: {flag}{suggestion}")]
    UnknownFlag {
        flag: String,
        suggestion: Suggestion,
    },
    #[error("duplicate flag specified: {flag}")]
    DuplicateFlag { flag: String },
    #[error("missing a value on flag: {flag}")]
    MissingFlagValue { flag: String },
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    NotBoolean { flag: String, value: String },
    #[error("{keyword} requires at least one argument")]
    AtLeastOneArgument { keyword: &'static str },
    #[error("{keyword} requires exactly one argument")]
    ExactlyOneArgument { keyword: &'static str },
    #[error(
        "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
    )]
    NoDestination { keyword: &'static str },
    #[error("{keyword} cannot accept a heredoc as {what}")]
    BadHeredoc {
        keyword: &'static str,
        what: &'static str,
    },
    #[error("{keyword} names can not be blank")]
    BlankName { keyword: &'static str },
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error(
        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
    )]
    StageName { name: String },
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{trigger} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger { trigger: String },
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    #[error("Unknown type {kind:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType { kind: String },
    /// Go's `time.ParseDuration` wording.
    #[error("time: invalid duration {value:?}")]
    Duration { value: String },
    #[error("Interval {flag:?} cannot be less than 1ms")]
    IntervalTooShort { flag: String },
    /// Go's `strconv.ParseInt` wording.
    #[error("strconv.ParseInt: parsing {value:?}: invalid syntax")]
    Retries { value: String },
    #[error("--retries cannot be negative ({value})")]
    NegativeRetries { value: i64 },
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error("{keyword} requires the arguments to be in JSON form")]
    NotJson { keyword: &'static str },
    #[error("invalid network mode {value:?}")]
    Network { value: String },
    #[error("security {value:?} is not valid")]
    Security { value: String },
    #[error("{0}")]
    Mount(#[from] MountError),
}

/// Errors of one `RUN --mount=` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("failed to parse csv mounts: {0}")]
    Csv(String),
    #[error("unsupported mount type {value:?}{suggestion}")]
    Type {
        value: String,
        suggestion: Suggestion,
    },
    #[error("unsupported sharing value {value:?}{suggestion}")]
    Sharing {
        value: String,
        suggestion: Suggestion,
    },
    #[error("invalid field '{field}' must be a key=value pair")]
    NotKeyValue { field: String },
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyForType { key: String, kind: &'static str },
    #[error("unexpected key '{key}' in '{field}'{suggestion}")]
    UnknownKey {
        key: String,
        field: String,
        suggestion: Suggestion,
    },
    #[error("invalid value for {key}: {value}")]
    Value { key: String, value: String },
    #[error("invalid value {value} for {key}")]
    Number { key: &'static str, value: String },
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    #[error("{what} not allowed for {kind:?} type mounts")]
    FileInfo {
        what: &'static str,
        kind: &'static str,
    },
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("secret mount should not define sharing")]
    SecretSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretTarget,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("invalid cache sharing set for {kind} mount")]
    SharingNotCache { kind: &'static str },
}

/// The closest of `options` to `value` within an edit distance of 2, as BuildKit's
/// `suggest.Search` (an exact match means the error is about something else: none).
pub(crate) fn suggest(value: &str, options: &[&str], case_sensitive: bool) -> Suggestion {
    let val = if case_sensitive {
        value.to_string()
    } else {
        value.to_lowercase()
    };
    let mut best: Option<String> = None;
    let mut min = 3;
    for opt in options {
        let o = if case_sensitive {
            opt.to_string()
        } else {
            opt.to_lowercase()
        };
        if o == val {
            return Suggestion(None);
        }
        let d = levenshtein(&val, &o);
        if d < min {
            min = d;
            best = Some(if case_sensitive {
                o
            } else if value == value.to_lowercase() {
                o.to_lowercase()
            } else if value == value.to_uppercase() {
                o.to_uppercase()
            } else {
                o
            });
        }
    }
    Suggestion(best)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
