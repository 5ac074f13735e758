//! Variable substitution as the Dockerfile's shell lexer does it (BuildKit's
//! `frontend/dockerfile/shell/lex.go`): `$v`, `${v}`, `${v:-d}`, `${v-d}`, `${v:+a}`,
//! `${v+a}`, `${v:?e}`, `${v?e}`, `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`, `${v/p/r}`,
//! `${v//p/r}`, single and double quotes (removed), the escape character.
//!
//! The lexer also serves the parser, which needs the same tokenisation (with quotes and
//! escapes kept) to find here-document words; hence the [`Lexer`] options.

mod instruction;
mod pattern;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

/// Why a word could not be expanded; Display is BuildKit's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ExpandError {
    pub word: String,
    pub kind: ExpandErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandErrorKind {
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${v?message}` / `${v:?message}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{ch}'")]
    InvalidPattern { pattern: String, ch: char },
}

/// Expands one word: variables substituted, quotes and escapes removed, spaces kept
/// (BuildKit's `ProcessWord`). Unset variables expand to nothing.
pub fn expand_word(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(escape).process(word, lookup).map(|r| r.word)
}

/// Expands and splits into words on unquoted whitespace, after substitution
/// (BuildKit's `ProcessWords`): `"a b" $X` with `X="c d"` gives `a b`, `c`, `d`.
pub fn expand_words(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Lexer::new(escape).process(word, lookup).map(|r| r.words)
}

/// Like [`expand_word`], also returning the names of the variables the word refers to that
/// were set (for cache keys: a step depends on the build args it uses).
pub fn expand_word_used(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<(String, BTreeSet<String>), ExpandError> {
    Lexer::new(escape)
        .process(word, lookup)
        .map(|r| (r.word, r.used))
}

/// The shell lexer with BuildKit's switches.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
    /// Quotes are ordinary characters (here-document bodies).
    pub skip_quotes: bool,
}

/// The result of one [`Lexer::process`].
#[derive(Debug, Clone, Default)]
pub struct Processed {
    pub word: String,
    pub words: Vec<String>,
    pub used: BTreeSet<String>,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    pub fn process(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Processed, ExpandError> {
        let mut sc = Scan {
            lex: self,
            chars: word.chars().collect(),
            pos: 0,
            lookup,
            raw_escapes: self.raw_escapes,
            used: BTreeSet::new(),
        };
        let raw = self.raw_escapes;
        match sc.stop_on(None, raw) {
            Ok((w, words)) => Ok(Processed {
                word: w,
                words,
                used: sc.used,
            }),
            Err(kind) => Err(ExpandError {
                word: word.to_string(),
                kind,
            }),
        }
    }
}

/// Words being split as characters arrive; quoted or escaped characters never split.
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct Scan<'a> {
    lex: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    raw_escapes: bool,
    used: BTreeSet<String>,
}

type Kind = ExpandErrorKind;

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get(&mut self, name: &str) -> Option<String> {
        let v = (self.lookup)(name);
        if v.is_some() {
            self.used.insert(name.to_string());
        }
        v
    }

    /// Reads up to `stop` (consumed) or the end; returns the text and its split words.
    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), Kind> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), Kind> {
        let mut result = String::new();
        let mut words = Words {
            buf: String::new(),
            words: Vec::new(),
            in_word: false,
        };
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let v = self.dollar()?;
                    result.push_str(&v);
                    words.add_string(&v);
                }
                '<' => {
                    let v = self.possible_heredoc();
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                '\'' if !self.lex.skip_quotes => {
                    let v = self.single_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                '"' if !self.lex.skip_quotes => {
                    let v = self.double_quote()?;
                    result.push_str(&v);
                    words.add_raw_string(&v);
                }
                _ => {
                    self.next();
                    let mut ch = ch;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape character escapes the next one, except at the end.
                        match self.next() {
                            None => break,
                            Some(c) => ch = c,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(Kind::Unterminated(stop));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, Kind> {
        let mut out = String::new();
        let open = self.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            out.push(open);
        }
        loop {
            match self.next() {
                None => return Err(Kind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, Kind> {
        let mut out = String::new();
        let open = self.next().unwrap_or('"');
        if self.lex.raw_quotes {
            out.push(open);
        }
        loop {
            match self.peek() {
                None => return Err(Kind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // A trailing escape is dropped (the quote is then unterminated).
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.next();
                            }
                            // Inside double quotes other escapes stay literal, as in sh.
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut out = "<<".to_string();
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            out.push(c);
            self.next();
        }
        out
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                // Positional parameters: all the digits.
                while let Some(d) = self.peek().filter(|c| c.is_ascii_digit()) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn dollar(&mut self) -> Result<String, Kind> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(Kind::MissingBrace),
            Some('{' | '}' | ':') => return Err(Kind::BadSubstitution),
            _ => {}
        }
        let name = self.name();
        let Some(mut ch) = self.next() else {
            return Err(Kind::MissingBrace);
        };
        let mut chs = ch.to_string();
        match ch {
            '}' => Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    ch = self.next().ok_or(Kind::MissingBrace)?;
                    chs.push(ch);
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(Kind::UnsupportedModifier(chs));
                }
                let word = self.stop_on_brace(raw)?;
                let value = self.get(&name);
                if value.is_none() && self.lex.skip_unset {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match ch {
                    '-' => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty { String::new() } else { word }),
                    '?' => match value {
                        None => Err(Kind::Required {
                            name,
                            message: or(word, "is not allowed to be unset"),
                        }),
                        Some(v) if null_is_unset && v.is_empty() => Err(Kind::Required {
                            name,
                            message: or(word, "is not allowed to be empty"),
                        }),
                        Some(v) => Ok(v),
                    },
                    '%' | '#' => {
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let value = value.unwrap_or_default();
                        if ch == '%' {
                            pattern::trim_suffix(&pat, &value, greedy)
                        } else {
                            pattern::trim_prefix(&pat, &value, greedy)
                        }
                    }
                    _ => Err(Kind::UnsupportedModifier(chs)),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pat = match self.stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => return Err(Kind::MissingSlash),
                    Err(e) => return Err(e),
                };
                let replacement = self.stop_on_brace(true)?;
                let value = self.get(&name);
                if value.is_none() && self.lex.skip_unset {
                    return Ok(format!("${{{name}/{pat}/{replacement}}}"));
                }
                pattern::replace(&pat, &value.unwrap_or_default(), &replacement, all)
            }
            _ => Err(Kind::UnsupportedModifier(chs)),
        }
    }

    fn stop_on_brace(&mut self, raw: bool) -> Result<String, Kind> {
        match self.stop_on(Some('}'), raw) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(Kind::MissingBrace),
            Err(e) => Err(e),
        }
    }
}

fn or(word: String, default: &str) -> String {
    if word.is_empty() {
        default.to_string()
    } else {
        word
    }
}
