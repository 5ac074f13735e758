//! Word-level helpers of the line parser: flags before the arguments, quoted words of
//! ENV/LABEL/ARG (quotes kept for the expander), whitespace splitting, JSON arrays, and Go's
//! duration syntax (HEALTHCHECK options are validated as dockerd validates them).

use std::time::Duration;

/// Splits on runs of `[\t\v\f\r ]` (not newlines), as BuildKit's `reWhitespace`.
pub(crate) fn split_whitespace(s: &str) -> Vec<String> {
    s.split(is_ws)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\u{0b}' | '\u{0c}' | '\r' | ' ')
}

/// Splits `s` once on its first whitespace run.
pub(crate) fn split_once_ws(s: &str) -> (String, Option<String>) {
    match s.find(is_ws) {
        None => (s.to_string(), None),
        Some(i) => {
            let rest = s[i..].trim_start_matches(is_ws);
            (s[..i].to_string(), Some(rest.to_string()))
        }
    }
}

/// Takes the leading `--flag[=value]` words off `line` (quotes and escapes inside a flag
/// word are resolved; a bare `--` ends the flags). Returns the rest and the flags.
pub(crate) fn extract_flags(line: &str, escape: char) -> (String, Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let byte_at = |i: usize| chars[..i].iter().map(|c| c.len_utf8()).sum::<usize>();
    let mut words = Vec::new();
    let mut pos = 0;
    loop {
        while pos < chars.len() && chars[pos].is_whitespace() {
            pos += 1;
        }
        if pos == chars.len() {
            return (String::new(), words);
        }
        if !(chars[pos] == '-' && chars.get(pos + 1) == Some(&'-')) {
            return (line[byte_at(pos)..].to_string(), words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut blank_ok = false;
        while pos < chars.len() {
            let ch = chars[pos];
            match quote {
                None if ch.is_whitespace() => break,
                None if ch == '\'' || ch == '"' => {
                    quote = Some(ch);
                    blank_ok = true;
                }
                Some(q) if ch == q => quote = None,
                _ if ch == escape => {
                    if pos + 1 == chars.len() {
                        pos += 1;
                        break;
                    }
                    pos += 1;
                    word.push(chars[pos]);
                }
                _ => word.push(ch),
            }
            pos += 1;
        }
        if word == "--" {
            return (line[byte_at(pos)..].to_string(), words);
        }
        if blank_ok || !word.is_empty() {
            words.push(word);
        }
    }
}

/// Splits ENV/LABEL/ARG arguments into words, keeping quotes and escapes (the expander
/// removes them later) but not splitting inside quotes.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if !in_word {
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            in_word = true;
        }
        match quote {
            None => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    // An escaped character (even a quote) is kept with its escape.
                    word.push(ch);
                    i += 1;
                }
                word.push(chars[i]);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                // Single quotes escape nothing.
                if ch == escape && q != '\'' {
                    if i + 1 == chars.len() {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                }
                word.push(chars[i]);
            }
        }
        i += 1;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// What `[...]` argument text is.
pub(crate) enum Json {
    /// A JSON array of strings: the exec form.
    Strings(Vec<String>),
    /// Valid JSON array with a non-string element: an error in Docker.
    NotStrings,
    /// Not a JSON array: the shell form.
    No,
}

pub(crate) fn parse_json(rest: &str) -> Json {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Json::No;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Err(_) => Json::No,
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Strings(out)
        }
    }
}

/// Parses a Go duration (`300ms`, `1.5h`, `2h45m`, `-1s` is refused): units ns, us, µs, ms,
/// s, m, h. `None` when invalid. Negative durations are not meaningful for HEALTHCHECK.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * nanos_per;
    }
    Some(Duration::from_nanos(total.round() as u64))
}
