//! `.env` and `env_file` files: `KEY=VALUE` lines, `export` prefixes, `#` comments, single
//! quotes (literal), double quotes (escapes, interpolation) and unquoted values (interpolation,
//! ` #` comments). Values may refer to variables set earlier in the file or in `env`.

use std::collections::BTreeMap;
use std::path::Path;

use super::interpolate::{Lookup, substitute};
use crate::error::LoadError;

/// Variables visible while a file is read: earlier lines, then the outer environment.
struct Layered<'a> {
    inner: &'a BTreeMap<String, String>,
    outer: &'a dyn Lookup,
}

impl Lookup for Layered<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.outer
            .get(name)
            .or_else(|| self.inner.get(name).cloned())
    }
}

/// Reads an env file; a missing file is [`LoadError::EnvFileMissing`].
pub fn read_env_file(
    path: &Path,
    outer: &dyn Lookup,
) -> Result<BTreeMap<String, Option<String>>, LoadError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::EnvFileMissing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(LoadError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse_env(&text, outer).map_err(|(line, text)| LoadError::EnvFileSyntax {
        path: path.to_path_buf(),
        line,
        text,
    })
}

/// Parses env-file text. A bare `KEY` (no `=`) takes its value from `outer`, or none.
/// Errors are (line number, offending text).
pub fn parse_env(
    text: &str,
    outer: &dyn Lookup,
) -> Result<BTreeMap<String, Option<String>>, (usize, String)> {
    let mut values: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, raw)) = lines.next() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let (key, rest) = match line.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(v)),
            None => (line.trim_end(), None),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err((n + 1, raw.to_string()));
        }
        let Some(rest) = rest else {
            values.insert(key.to_string(), outer.get(key));
            continue;
        };
        let known: BTreeMap<String, String> = values
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let layered = Layered {
            inner: &known,
            outer,
        };
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            // Single quotes: literal, may span lines.
            let mut body = body.to_string();
            while !body.contains('\'') {
                let Some((_, next)) = lines.next() else { break };
                body.push('\n');
                body.push_str(next);
            }
            body.split('\'').next().unwrap_or_default().to_string()
        } else if let Some(body) = rest.strip_prefix('"') {
            let mut body = body.to_string();
            while closing_quote(&body).is_none() {
                let Some((_, next)) = lines.next() else { break };
                body.push('\n');
                body.push_str(next);
            }
            let end = closing_quote(&body).unwrap_or(body.len());
            let unescaped = unescape(&body[..end]);
            substitute(&unescaped, &layered).unwrap_or(unescaped)
        } else {
            let value = match rest.find(" #") {
                Some(i) => &rest[..i],
                None => rest,
            }
            .trim_end();
            substitute(value, &layered).unwrap_or_else(|_| value.to_string())
        };
        values.insert(key.to_string(), Some(value));
    }
    Ok(values)
}

fn closing_quote(body: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_compose_accepts() {
        let outer: BTreeMap<String, String> = [("HOME".to_string(), "/root".to_string())]
            .into_iter()
            .collect();
        let text = "# comment\nA=1\nexport B = two \nC='lit $A'\nD=\"q\\n$A\"\nE=x #c\nF=${A}-${HOME}\nHOME\nG=\"multi\nline\"\nH=\n";
        let v = parse_env(text, &outer).unwrap();
        let get = |k: &str| v.get(k).cloned().flatten();
        assert_eq!(get("A").as_deref(), Some("1"));
        assert_eq!(get("B").as_deref(), Some("two"));
        assert_eq!(get("C").as_deref(), Some("lit $A"));
        assert_eq!(get("D").as_deref(), Some("q\n1"));
        assert_eq!(get("E").as_deref(), Some("x"));
        assert_eq!(get("F").as_deref(), Some("1-/root"));
        assert_eq!(get("HOME").as_deref(), Some("/root"));
        assert_eq!(get("G").as_deref(), Some("multi\nline"));
        assert_eq!(get("H").as_deref(), Some(""));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(parse_env("A B=1", &BTreeMap::new()).unwrap_err().0, 1);
    }
}
