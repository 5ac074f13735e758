//! The line level of the parser (BuildKit's `parser.Parse`): parser directives at the head,
//! comments, continuation lines, here-documents, and per-keyword argument splitting.

use super::error::SyntaxError;
use super::words::{Json, extract_flags, parse_json, parse_words, split_once_ws, split_whitespace};
use crate::expand::Lexer;
use crate::instructions::Directives;

/// One instruction as the line level sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    /// The keyword as written (`run`, `RUN`).
    pub keyword: String,
    /// `--flag[=value]` words before the arguments.
    pub flags: Vec<String>,
    /// Arguments, split per keyword (see `dispatch`).
    pub args: Vec<String>,
    /// ENV/LABEL pairs: key, value, whether written with `=`.
    pub pairs: Vec<(String, String, bool)>,
    /// The arguments were a JSON array of strings (exec form).
    pub json: bool,
    /// The whole instruction, continuation lines joined (what `Step N/M :` prints).
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
    pub heredocs: Vec<RawHeredoc>,
    /// ONBUILD's trigger instruction.
    pub child: Option<Box<Node>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHeredoc {
    pub name: String,
    pub expand: bool,
    /// `<<-`: leading tabs are removed from the body and the terminator line.
    pub chomp: bool,
    /// The body as read, tabs not yet removed.
    pub content: String,
}

pub(crate) struct Lines {
    pub directives: Directives,
    pub nodes: Vec<Node>,
    /// Instructions (joined) that had empty continuation lines, which Docker warns about.
    pub empty_continuations: Vec<String>,
}

/// Recognises `# name=value` directives while they are the first lines.
struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

impl DirectiveParser {
    fn line(&mut self, line: &str, no: usize, d: &mut Directives) -> Result<bool, SyntaxError> {
        if self.done {
            return Ok(false);
        }
        let Some(body) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let body = body.trim_start();
        let Some((name, value)) = body.split_once('=') else {
            self.done = true;
            return Ok(false);
        };
        let name = name.trim_end();
        let value = value.trim();
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric());
        let key = name.to_ascii_lowercase();
        if !valid_name || value.is_empty() || !matches!(key.as_str(), "syntax" | "escape" | "check")
        {
            self.done = true;
            return Ok(false);
        }
        if self.seen.contains(&key) {
            return Err(SyntaxError::DuplicateDirective {
                line: no,
                name: key,
            });
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                if value != "`" && value != "\\" {
                    return Err(SyntaxError::InvalidEscape {
                        line: no,
                        token: value.to_string(),
                    });
                }
                d.escape = value.chars().next().unwrap_or('\\');
            }
            "syntax" => d.syntax = Some(value.to_string()),
            _ => d.check = Some(value.to_string()),
        }
        Ok(true)
    }
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Removes a trailing continuation escape (followed only by blanks, not itself escaped).
/// Returns the line and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t
        .strip_suffix(escape)
        .filter(|b| b.is_empty() || !b.ends_with(escape))
    {
        return (before.to_string(), false);
    }
    (line.to_string(), true)
}

pub(crate) fn parse_lines(text: &str) -> Result<Lines, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw: Vec<&str> = text.split_inclusive('\n').collect();
    let mut directives = Directives::default();
    let mut dp = DirectiveParser {
        done: false,
        seen: Vec::new(),
    };
    let mut nodes = Vec::new();
    let mut empty_continuations = Vec::new();
    let mut i = 0;
    let mut current = 0;
    while i < raw.len() {
        let line = trim_newline(raw[i]).trim_start();
        i += 1;
        current += 1;
        dp.line(line, current, &mut directives)?;
        let escape = directives.escape;
        let processed = if is_comment(line) { "" } else { line };
        let start = current;
        let (first, mut end) = trim_continuation(processed, escape);
        if end && first.is_empty() {
            continue;
        }
        let mut buf = first;
        let mut had_empty = false;
        while !end && i < raw.len() {
            let next = trim_newline(raw[i]);
            i += 1;
            current += 1;
            // Directives are over by now; this only marks the parser done.
            dp.done = true;
            // Comment lines and empty lines inside a continuation are skipped.
            if is_comment(next) {
                continue;
            }
            if next.trim_start().is_empty() {
                had_empty = true;
                continue;
            }
            let (part, e) = trim_continuation(next, escape);
            buf.push_str(&part);
            end = e;
        }
        if had_empty {
            empty_continuations.push(buf.clone());
        }
        let mut node = node_from_line(&buf, escape, start)?;
        if can_contain_heredoc(&node) && buf.contains("<<") {
            for mut doc in heredocs_from_line(&buf, start)? {
                let mut content = String::new();
                let mut terminated = false;
                while i < raw.len() {
                    let body = raw[i];
                    i += 1;
                    current += 1;
                    let mut candidate = trim_newline(body);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(body);
                }
                if !terminated {
                    return Err(SyntaxError::UnterminatedHeredoc { line: start });
                }
                doc.content = content;
                node.heredocs.push(doc);
            }
        }
        node.start_line = start;
        node.end_line = current;
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(SyntaxError::NoInstructions);
    }
    Ok(Lines {
        directives,
        nodes,
        empty_continuations,
    })
}

fn can_contain_heredoc(node: &Node) -> bool {
    let n = match (&node.child, node.keyword.eq_ignore_ascii_case("onbuild")) {
        (Some(child), true) => child,
        _ => node,
    };
    matches!(
        n.keyword.to_ascii_lowercase().as_str(),
        "add" | "copy" | "run"
    ) && !n.json
}

/// Splits an instruction line into keyword, flags and arguments, then splits the arguments
/// the way the keyword wants them.
fn node_from_line(line: &str, escape: char, line_no: usize) -> Result<Node, SyntaxError> {
    let (keyword, rest) = split_once_ws(line.trim_matches(super::words::is_ws));
    let (args_text, flags) = match rest {
        Some(rest) => extract_flags(&rest, escape),
        None => (String::new(), Vec::new()),
    };
    let rest = args_text.trim().to_string();
    let mut node = Node {
        keyword,
        flags,
        original: line.to_string(),
        ..Node::default()
    };
    dispatch(&mut node, &rest, escape, line_no)?;
    Ok(node)
}

fn dispatch(node: &mut Node, rest: &str, escape: char, line: usize) -> Result<(), SyntaxError> {
    let maybe_json = |node: &mut Node, list: bool| -> Result<(), SyntaxError> {
        match parse_json(rest) {
            Json::Strings(v) => {
                node.args = v;
                node.json = true;
            }
            Json::NotStrings => return Err(SyntaxError::NotStringArray { line }),
            Json::No if list => node.args = split_whitespace(rest),
            Json::No if !rest.is_empty() => node.args = vec![rest.to_string()],
            Json::No => {}
        }
        Ok(())
    };
    match node.keyword.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => maybe_json(node, true)?,
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(node, false)?,
        "arg" => node.args = parse_words(rest, escape),
        "env" | "label" => {
            let keyword = node.keyword.to_ascii_uppercase();
            node.pairs = parse_name_val(rest, &keyword, escape, line)?;
        }
        "expose" | "from" => node.args = split_whitespace(rest),
        "healthcheck" => {
            let (kind, cmd) = split_once_ws(rest);
            if !kind.is_empty() {
                node.args.push(kind);
                let cmd = cmd.unwrap_or_default();
                match parse_json(&cmd) {
                    Json::Strings(v) => {
                        node.args.extend(v);
                        node.json = true;
                    }
                    Json::NotStrings => return Err(SyntaxError::NotStringArray { line }),
                    Json::No if !cmd.is_empty() => node.args.push(cmd),
                    Json::No => {}
                }
            }
        }
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args = vec![rest.to_string()];
        }
        "onbuild" if !rest.is_empty() => {
            let child = node_from_line(rest, escape, line)?;
            node.args.push(child.keyword.clone());
            node.json = child.json;
            node.child = Some(Box::new(child));
        }
        _ => {}
    }
    Ok(())
}

/// ENV and LABEL: `k=v k2="v 2"` or the legacy `k v w` (key, then the rest verbatim).
fn parse_name_val(
    rest: &str,
    keyword: &str,
    escape: char,
    line: usize,
) -> Result<Vec<(String, String, bool)>, SyntaxError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let (key, value) = split_once_ws(rest);
        return match value {
            Some(v) if !v.is_empty() => Ok(vec![(key, v, false)]),
            _ => Err(SyntaxError::TwoArguments {
                line,
                keyword: keyword.to_string(),
            }),
        };
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string(), true)),
            None => Err(SyntaxError::NoEquals { line, word: w }),
        })
        .collect()
}

/// Finds the here-documents a line opens (`<<EOF`, `<<-EOF`, `<<"EOF"`, `2<<EOF`), in order.
fn heredocs_from_line(line: &str, line_no: usize) -> Result<Vec<RawHeredoc>, SyntaxError> {
    let lexer = Lexer {
        escape: '\\',
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        skip_quotes: false,
    };
    let none = |_: &str| None;
    let words = lexer
        .process(line, &none)
        .map(|p| p.words)
        .unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word).map_err(|e| SyntaxError::Heredoc {
            line: line_no,
            message: e,
        })? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// A here-document word, or `None` when `word` is not one.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<RawHeredoc>, String> {
    let after_fd = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(after) = after_fd.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let rest = after.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let none = |_: &str| None;
    let mut lexer = Lexer {
        escape: '\\',
        raw_quotes: false,
        raw_escapes: false,
        skip_unset: true,
        skip_quotes: false,
    };
    let words = lexer.process(rest, &none).map_err(|e| e.to_string())?.words;
    if words.len() != 1 {
        return Ok(None);
    }
    lexer.raw_quotes = true;
    let raw = lexer.process(rest, &none).map_err(|e| e.to_string())?.words;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    // A quoted delimiter (any part of it) means the body is not expanded.
    let expand = raw.len() == 1 && quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(RawHeredoc {
        name: words[0].clone(),
        expand,
        chomp,
        content: String::new(),
    }))
}

/// Go's `strconv.Quote` for the texts the dump holds.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0b}' => out.push_str("\\v"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Node {
    /// The node in BuildKit's `Node.Dump()` s-expression form (`(run "echo hi")`), to check
    /// the line level against the same golden results.
    pub(crate) fn dump(&self) -> String {
        let mut s = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&format!(" [{}]", flags.join(" ")));
        }
        if let Some(child) = &self.child {
            s.push_str(&format!(" ({})", child.dump()));
            return s;
        }
        if !self.pairs.is_empty() {
            for (k, v, eq) in &self.pairs {
                s.push_str(&format!(
                    " {} {} {}",
                    go_quote(k),
                    go_quote(v),
                    go_quote(if *eq { "=" } else { "" })
                ));
            }
            return s;
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        s
    }
}

/// The line level's view of a Dockerfile, one `(keyword args...)` per instruction, as
/// BuildKit's parser dumps it. For checking the parser against BuildKit's golden files.
#[doc(hidden)]
pub fn dump(text: &str) -> Result<String, SyntaxError> {
    let lines = parse_lines(text)?;
    Ok(lines
        .nodes
        .iter()
        .map(|n| format!("({})\n", n.dump()))
        .collect())
}
