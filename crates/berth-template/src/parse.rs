//! Lexing and parsing: the template source into a tree of nodes, each operand with its byte
//! span in the source (Go's errors name the failing node's line, column and text).

use serde_json::Value;

use crate::{Options, TemplateError};

/// A parse failure at a byte offset of the source; made a [`TemplateError`] with the
/// template's name and the offset's line at the end.
pub(crate) struct ParseError {
    pos: usize,
    message: String,
}

type PResult<T> = Result<T, ParseError>;

fn perr<T>(pos: usize, message: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        pos,
        message: message.into(),
    })
}

/// A byte range of the template source, and the node's position as Go reports it: its start,
/// except for a chain of fields (`.A.B`, `$x.A`, `(...).A`), which Go places at the field
/// that made it a chain (the second of `.A.B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub pos: usize,
}

// ---------------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.A.B` (empty for `.`); `attached` when it directly follows `)`.
    Field(Vec<String>, bool),
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(Value),
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    span: Span,
}

/// Lexes one action's text, found at byte offset `base` of the source.
fn lex_action(src: &str, base: usize) -> PResult<Vec<Token>> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let at = |i: usize| base + chars.get(i).map_or(src.len(), |c| c.0);
    let ch = |i: usize| chars.get(i).map(|c| c.1);
    let mut toks = Vec::new();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    // The fields, and where each began (its dot).
    let read_fields = |i: &mut usize| -> (Vec<String>, Vec<usize>) {
        let mut fields = Vec::new();
        let mut dots = Vec::new();
        while ch(*i) == Some('.') {
            let start = *i + 1;
            let mut j = start;
            while ch(j).is_some_and(ident_char) {
                j += 1;
            }
            if j == start {
                break;
            }
            fields.push(chars[start..j].iter().map(|c| c.1).collect());
            dots.push(*i);
            *i = j;
        }
        (fields, dots)
    };
    let push_at = |toks: &mut Vec<Token>, tok: Tok, start: usize, end: usize, pos: usize| {
        toks.push(Token {
            tok,
            span: Span {
                start: at(start),
                end: at(end),
                pos: at(pos),
            },
        })
    };
    let push = |toks: &mut Vec<Token>, tok: Tok, start: usize, end: usize| {
        push_at(toks, tok, start, end, start)
    };
    while let Some(c) = ch(i) {
        let start = i;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                i += 1;
                push(&mut toks, Tok::LParen, start, i);
            }
            ')' => {
                i += 1;
                push(&mut toks, Tok::RParen, start, i);
                if ch(i) == Some('.') {
                    let fstart = i;
                    let (fields, _) = read_fields(&mut i);
                    push(&mut toks, Tok::Field(fields, true), fstart, i);
                }
            }
            '|' => {
                i += 1;
                push(&mut toks, Tok::Pipe, start, i);
            }
            ',' => {
                i += 1;
                push(&mut toks, Tok::Comma, start, i);
            }
            ':' if ch(i + 1) == Some('=') => {
                i += 2;
                push(&mut toks, Tok::Declare, start, i);
            }
            '=' => {
                i += 1;
                push(&mut toks, Tok::Assign, start, i);
            }
            '.' => {
                if ch(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    return perr(at(i), format!("unexpected number in action: {src}"));
                }
                let (fields, dots) = read_fields(&mut i);
                if fields.is_empty() {
                    i += 1;
                }
                let pos = dots.get(1).copied().unwrap_or(start);
                push_at(&mut toks, Tok::Field(fields, false), start, i, pos);
            }
            '$' => {
                let mut j = i + 1;
                while ch(j).is_some_and(ident_char) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().map(|c| c.1).collect();
                i = j;
                let (fields, dots) = read_fields(&mut i);
                let pos = dots.first().copied().unwrap_or(start);
                push_at(&mut toks, Tok::Var(name, fields), start, i, pos);
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match ch(i) {
                        None => return perr(at(start), "unterminated quoted string"),
                        Some('"') => break,
                        Some('\\') => {
                            let e = ch(i + 1).unwrap_or('\\');
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '0' => '\0',
                                other => other,
                            });
                            i += 2;
                        }
                        Some(c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                push(&mut toks, Tok::Str(s), start, i);
            }
            '`' => {
                let Some(len) = chars[i + 1..].iter().position(|c| c.1 == '`') else {
                    return perr(at(start), "unterminated raw quoted string");
                };
                let s = chars[i + 1..i + 1 + len].iter().map(|c| c.1).collect();
                i += len + 2;
                push(&mut toks, Tok::Str(s), start, i);
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                i += 1;
                while ch(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().map(|c| c.1).collect();
                let num = if let Ok(n) = text.parse::<i64>() {
                    Value::from(n)
                } else if let Some(n) = text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                {
                    Value::Number(n)
                } else {
                    return perr(at(start), format!("bad number syntax: {text:?}"));
                };
                push(&mut toks, Tok::Num(num), start, i);
            }
            c if ident_char(c) => {
                while ch(i).is_some_and(ident_char) {
                    i += 1;
                }
                if ch(i) == Some('.') {
                    return perr(at(i), "unexpected <.> in operand");
                }
                let name = chars[start..i].iter().map(|c| c.1).collect();
                push(&mut toks, Tok::Ident(name), start, i);
            }
            other => return perr(at(i), format!("unexpected {other:?} in command")),
        }
    }
    Ok(toks)
}

/// The source split into text and actions, with `{{-`/`-}}` trimming applied and comments
/// dropped; an action's text is trimmed, `at` its byte offset in the source.
enum Piece {
    Text(String),
    Action { text: String, at: usize },
}

fn split_pieces(src: &str) -> PResult<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    let offset = |s: &str| s.as_ptr() as usize - src.as_ptr() as usize;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        let body_start = if trim_left { 1 } else { 0 };
        let Some(close) = after.find("}}") else {
            return perr(offset(after), "unclosed action");
        };
        let mut body = &after[body_start..close];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        let trimmed = body.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return perr(offset(trimmed), "unclosed comment");
            }
        } else {
            pieces.push(Piece::Action {
                text: trimmed.to_string(),
                at: offset(trimmed),
            });
        }
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        pieces.push(Piece::Text(text.to_string()));
    }
    Ok(pieces)
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone)]
pub(crate) enum ArgKind {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Lit(Value),
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) struct Arg {
    pub kind: ArgKind,
    pub span: Span,
}

/// A command: a function and its arguments, or one operand.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    pub vars: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Cmd>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Print(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
}

struct TokStream {
    toks: Vec<Token>,
    pos: usize,
    /// Where the action ends (for errors at its end).
    end: usize,
}

impl TokStream {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn here(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |t| t.span.start)
    }
}

/// Go's builtin functions.
const GO_FUNCS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge", "print",
    "printf", "println",
];
/// docker CLI's functions (`templates.basicFunctions`).
pub(crate) const DOCKER_FUNCS: &[&str] = &[
    "json", "join", "split", "lower", "upper", "title", "pad", "truncate",
];

struct Parser<'o> {
    pieces: Vec<Piece>,
    pos: usize,
    opts: &'o Options,
}

impl Parser<'_> {
    fn known_func(&self, name: &str) -> bool {
        GO_FUNCS.contains(&name)
            || (self.opts.docker_funcs && DOCKER_FUNCS.contains(&name))
            || self.opts.funcs.iter().any(|f| f == name)
    }

    fn pipeline(&self, text: &str, at: usize) -> PResult<Pipeline> {
        let toks = lex_action(text, at)?;
        let mut stream = TokStream {
            toks,
            pos: 0,
            end: at + text.len(),
        };
        // Declarations: `$x :=`, `$i, $v :=`, `$x =`.
        let mut vars = Vec::new();
        let mut assign = false;
        loop {
            let next = stream.toks.get(stream.pos + 1).map(|t| &t.tok);
            match (stream.peek(), next) {
                (Some(Tok::Var(name, f)), Some(Tok::Comma)) if f.is_empty() => {
                    vars.push(name.clone());
                    stream.pos += 2;
                }
                (Some(Tok::Var(name, f)), Some(Tok::Declare)) if f.is_empty() => {
                    vars.push(name.clone());
                    stream.pos += 2;
                    break;
                }
                (Some(Tok::Var(name, f)), Some(Tok::Assign)) if f.is_empty() => {
                    vars.push(name.clone());
                    assign = true;
                    stream.pos += 2;
                    break;
                }
                _ => {
                    vars.clear();
                    stream.pos = 0;
                    break;
                }
            }
        }
        let pipeline = self.cmds(text, &mut stream, vars, assign)?;
        if let Some(t) = stream.toks.get(stream.pos) {
            return perr(t.span.start, format!("unexpected {:?} in operand", t.tok));
        }
        Ok(pipeline)
    }

    fn cmds(
        &self,
        text: &str,
        stream: &mut TokStream,
        vars: Vec<String>,
        assign: bool,
    ) -> PResult<Pipeline> {
        let mut cmds = Vec::new();
        let mut cmd: Vec<Arg> = Vec::new();
        let close = |cmd: Vec<Arg>| {
            let start = cmd.first().map_or(0, |a| a.span.start);
            let span = Span {
                start,
                end: cmd.last().map_or(0, |a| a.span.end),
                pos: start,
            };
            Cmd { args: cmd, span }
        };
        let start = stream.here();
        loop {
            match stream.peek() {
                None | Some(Tok::RParen) => break,
                Some(Tok::Pipe) => {
                    let at = stream.here();
                    stream.next();
                    if cmd.is_empty() {
                        return perr(at, "missing command before |");
                    }
                    cmds.push(close(std::mem::take(&mut cmd)));
                }
                _ => cmd.push(self.operand(text, stream)?),
            }
        }
        if cmd.is_empty() {
            return perr(
                stream.here(),
                format!("missing value for command in {text:?}"),
            );
        }
        cmds.push(close(cmd));
        let end = cmds.last().map_or(start, |c| c.span.end);
        Ok(Pipeline {
            vars,
            assign,
            cmds,
            span: Span {
                start,
                end,
                pos: start,
            },
        })
    }

    fn operand(&self, text: &str, stream: &mut TokStream) -> PResult<Arg> {
        let here = stream.here();
        let Some(Token { tok, span }) = stream.next() else {
            return perr(here, "unexpected end in operand");
        };
        let kind = match tok {
            Tok::Field(fields, _) => ArgKind::Field(fields),
            Tok::Var(name, fields) => ArgKind::Var(name, fields),
            Tok::Str(s) => ArgKind::Lit(Value::String(s)),
            Tok::Num(n) => ArgKind::Lit(n),
            Tok::Ident(name) => match name.as_str() {
                "true" => ArgKind::Lit(Value::Bool(true)),
                "false" => ArgKind::Lit(Value::Bool(false)),
                "nil" => ArgKind::Lit(Value::Null),
                f if self.known_func(f) => ArgKind::Func(name),
                _ => return perr(span.start, format!("function {name:?} not defined")),
            },
            Tok::LParen => {
                let inner = self.cmds(text, stream, Vec::new(), false)?;
                let close_at = stream.here();
                let end = match stream.next() {
                    Some(Token {
                        tok: Tok::RParen,
                        span,
                    }) => span.end,
                    _ => return perr(close_at, "unclosed left paren"),
                };
                let (fields, end, pos) = match stream.peek() {
                    Some(Tok::Field(_, true)) => match stream.next() {
                        Some(Token {
                            tok: Tok::Field(f, _),
                            span: field,
                        }) => (f, field.end, field.start),
                        _ => (Vec::new(), end, span.start),
                    },
                    _ => (Vec::new(), end, span.start),
                };
                return Ok(Arg {
                    kind: ArgKind::Sub(Box::new(inner), fields),
                    span: Span {
                        start: span.start,
                        end,
                        pos,
                    },
                });
            }
            other => return perr(span.start, format!("unexpected {other:?} in operand")),
        };
        Ok(Arg { kind, span })
    }

    /// Parses nodes until `else`, `end` or the end of input.
    fn list(&mut self) -> PResult<(Vec<Node>, Control)> {
        let mut nodes = Vec::new();
        while self.pos < self.pieces.len() {
            let (a, at) = match &self.pieces[self.pos] {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t.clone()));
                    self.pos += 1;
                    continue;
                }
                Piece::Action { text, at } => (text.clone(), *at),
            };
            self.pos += 1;
            // The keyword ends at a space or at the `.` of a field (`range.Tags`).
            let end = a
                .find(|c: char| c.is_whitespace() || c == '.' || c == '$' || c == '(')
                .unwrap_or(a.len());
            let word = &a[..end];
            let rest = a[end..].trim_start();
            let rest_at = at + a.len() - rest.len();
            match word {
                "end" => return Ok((nodes, Control::End)),
                "else" => {
                    if let Some(cond) = rest
                        .strip_prefix("if")
                        .filter(|c| c.starts_with(|ch: char| ch.is_whitespace() || ch == '.'))
                    {
                        let pipe = self.pipeline(cond, rest_at + 2)?;
                        return Ok((nodes, Control::Else(Some(pipe))));
                    }
                    return Ok((nodes, Control::Else(None)));
                }
                "if" | "with" | "range" => {
                    if rest.is_empty() {
                        return perr(at, format!("missing value for {word}"));
                    }
                    let pipe = self.pipeline(rest, rest_at)?;
                    let node = self.block(word, pipe, at)?;
                    nodes.push(node);
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return perr(at, format!("{word} is not supported"));
                }
                _ => nodes.push(Node::Print(self.pipeline(&a, at)?)),
            }
        }
        Ok((nodes, Control::Eof))
    }

    fn block(&mut self, word: &str, pipe: Pipeline, at: usize) -> PResult<Node> {
        let (body, control) = self.list()?;
        let else_body = match control {
            Control::Eof => return perr(at, format!("unexpected EOF in {word}")),
            Control::End => Vec::new(),
            Control::Else(None) => {
                let (else_body, control) = self.list()?;
                if !matches!(control, Control::End) {
                    return perr(at, format!("expected end after else in {word}"));
                }
                else_body
            }
            Control::Else(Some(cond)) => {
                // `else if` chains share the outer `end`.
                vec![self.block("if", cond, at)?]
            }
        };
        Ok(match word {
            "if" => Node::If(pipe, body, else_body),
            "with" => Node::With(pipe, body, else_body),
            _ => Node::Range(pipe, body, else_body),
        })
    }
}

enum Control {
    Else(Option<Pipeline>),
    End,
    Eof,
}

/// Go's line of a byte offset (1-based).
pub(crate) fn line_of(src: &str, pos: usize) -> usize {
    1 + src.as_bytes()[..pos.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// Go's `LINE:COL` of a byte offset: the column is the byte offset in its line.
pub(crate) fn loc_of(src: &str, pos: usize) -> String {
    let pos = pos.min(src.len());
    let col = match src.as_bytes()[..pos].iter().rposition(|&b| b == b'\n') {
        Some(nl) => pos - nl - 1,
        None => pos,
    };
    format!("{}:{col}", line_of(src, pos))
}

/// Parses `src` into nodes.
pub(crate) fn parse(src: &str, opts: &Options) -> Result<Vec<Node>, TemplateError> {
    let located = |e: ParseError| TemplateError::Parse {
        name: opts.name.clone(),
        line: line_of(src, e.pos),
        message: e.message,
    };
    let mut parser = Parser {
        pieces: split_pieces(src).map_err(located)?,
        pos: 0,
        opts,
    };
    let (nodes, control) = parser.list().map_err(located)?;
    let at = |piece: usize| match parser.pieces.get(piece.saturating_sub(1)) {
        Some(Piece::Action { at, .. }) => *at,
        _ => 0,
    };
    match control {
        Control::Eof => Ok(nodes),
        Control::End => Err(located(ParseError {
            pos: at(parser.pos),
            message: "unexpected {{end}}".into(),
        })),
        Control::Else(_) => Err(located(ParseError {
            pos: at(parser.pos),
            message: "unexpected {{else}}".into(),
        })),
    }
}
