//! A Go `text/template` evaluator over JSON values: the subset docker's `--format` uses.
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`;
//! pipelines (`a | b`), parenthesized pipelines, fields (`.A.B`, `$x.A`, `(...).A`), variables
//! (`$x := ...`, `$x = ...`, `$` for the root); `if`/`else if`/`else`, `range` (with
//! `$i, $v :=` and `else`), `with`/`else`; Go's builtins `and or not len index eq ne lt le gt ge
//! print printf println`, and docker's `json join split lower upper title pad truncate`.
//!
//! Values print as Go's `fmt` prints them: slices `[a b]`, maps `map[k:v]` (sorted keys),
//! a missing value `<no value>`. A *strict* template (list commands, whose rows have a fixed set
//! of fields) reports unknown fields as Go does for structs; a lenient one (inspect, raw JSON)
//! yields `<no value>` for them, as Go does for maps.
//!
//! Written from the `text/template` documentation; `gtmpl` was set aside because it cannot
//! print Go's `map[...]`/`<no value>` forms nor tell a struct-like row from a JSON map.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// A parse or execution failure, with docker's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template parsing error: template: :1: {0}")]
    Parse(String),
    #[error("template: :1: executing \"\" at <{at}>: {message}")]
    Exec { at: String, message: String },
    /// An execution error of a list command's row template: docker reports those as parsing
    /// errors.
    #[error("template parsing error: {0}")]
    Row(Box<TemplateError>),
}

impl TemplateError {
    /// Wraps an execution error the way docker's list formatters report it.
    pub fn in_row(self) -> TemplateError {
        match self {
            e @ TemplateError::Exec { .. } => TemplateError::Row(Box::new(e)),
            other => other,
        }
    }
}

fn parse_err<T>(message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Parse(message.into()))
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

fn lex_action(src: &str) -> Result<Vec<Tok>, TemplateError> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    let read_fields = |i: &mut usize| -> Vec<String> {
        let mut fields = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            let start = *i + 1;
            let mut j = start;
            while j < chars.len() && ident_char(chars[j]) {
                j += 1;
            }
            if j == start {
                break;
            }
            fields.push(chars[start..j].iter().collect());
            *i = j;
        }
        fields
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1;
                if i < chars.len() && chars[i] == '.' {
                    let fields = read_fields(&mut i);
                    toks.push(Tok::Field(fields, true));
                }
            }
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '.' => {
                if chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    return parse_err(format!("unexpected number in action: {src}"));
                }
                let fields = read_fields(&mut i);
                if fields.is_empty() {
                    i += 1;
                }
                toks.push(Tok::Field(fields, false));
            }
            '$' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && ident_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                i = j;
                let fields = read_fields(&mut i);
                toks.push(Tok::Var(name, fields));
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return parse_err("unterminated quoted string"),
                        Some('"') => break,
                        Some('\\') => {
                            let e = chars.get(i + 1).copied().unwrap_or('\\');
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '0' => '\0',
                                other => other,
                            });
                            i += 2;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                toks.push(Tok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let Some(len) = chars[start..].iter().position(|&c| c == '`') else {
                    return parse_err("unterminated raw quoted string");
                };
                toks.push(Tok::Str(chars[start..start + len].iter().collect()));
                i = start + len + 1;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let num = if let Ok(n) = text.parse::<i64>() {
                    Value::from(n)
                } else if let Some(n) = text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                {
                    Value::Number(n)
                } else {
                    return parse_err(format!("bad number syntax: {text:?}"));
                };
                toks.push(Tok::Num(num));
            }
            c if ident_char(c) => {
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                if chars.get(i) == Some(&'.') {
                    return parse_err("unexpected <.> in operand");
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return parse_err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(toks)
}

/// Splits the source into text and actions, applying `{{-`/`-}}` trimming and dropping comments.
enum Piece {
    Text(String),
    Action(String),
}

fn split_pieces(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
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
            return parse_err("unclosed action");
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
                return parse_err("unclosed comment");
            }
        } else {
            pieces.push(Piece::Action(trimmed.to_string()));
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
enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Lit(Value),
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Pipeline {
    vars: Vec<String>,
    assign: bool,
    cmds: Vec<Vec<Arg>>,
    /// The action's source, for error messages.
    src: String,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Print(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
}

struct TokStream {
    toks: Vec<Tok>,
    pos: usize,
}

impl TokStream {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
}

fn parse_pipeline(src: &str, toks: Vec<Tok>) -> Result<Pipeline, TemplateError> {
    let mut stream = TokStream { toks, pos: 0 };
    // Declarations: `$x :=`, `$i, $v :=`, `$x =`.
    let mut vars = Vec::new();
    let mut assign = false;
    let save = stream.pos;
    loop {
        match (
            stream.peek().cloned(),
            stream.toks.get(stream.pos + 1).cloned(),
        ) {
            (Some(Tok::Var(name, f)), Some(Tok::Comma)) if f.is_empty() => {
                vars.push(name);
                stream.pos += 2;
            }
            (Some(Tok::Var(name, f)), Some(Tok::Declare)) if f.is_empty() => {
                vars.push(name);
                stream.pos += 2;
                break;
            }
            (Some(Tok::Var(name, f)), Some(Tok::Assign)) if f.is_empty() => {
                vars.push(name);
                assign = true;
                stream.pos += 2;
                break;
            }
            _ => {
                vars.clear();
                stream.pos = save;
                break;
            }
        }
    }
    let pipeline = parse_cmds(src, &mut stream, vars, assign)?;
    if stream.pos < stream.toks.len() {
        return parse_err(format!(
            "unexpected {:?} in operand",
            stream.toks[stream.pos]
        ));
    }
    Ok(pipeline)
}

fn parse_cmds(
    src: &str,
    stream: &mut TokStream,
    vars: Vec<String>,
    assign: bool,
) -> Result<Pipeline, TemplateError> {
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    loop {
        match stream.peek() {
            None | Some(Tok::RParen) => break,
            Some(Tok::Pipe) => {
                stream.next();
                if cmd.is_empty() {
                    return parse_err("missing command before |");
                }
                cmds.push(std::mem::take(&mut cmd));
            }
            _ => cmd.push(parse_operand(src, stream)?),
        }
    }
    if cmd.is_empty() {
        return parse_err(format!("missing value for command in {src:?}"));
    }
    cmds.push(cmd);
    Ok(Pipeline {
        vars,
        assign,
        cmds,
        src: src.to_string(),
    })
}

const FUNCS: &[&str] = &[
    "and", "or", "not", "len", "index", "eq", "ne", "lt", "le", "gt", "ge", "print", "printf",
    "println", "json", "join", "split", "lower", "upper", "title", "pad", "truncate", "slice",
];

fn parse_operand(src: &str, stream: &mut TokStream) -> Result<Arg, TemplateError> {
    match stream.next() {
        Some(Tok::Field(fields, _)) => Ok(Arg::Field(fields)),
        Some(Tok::Var(name, fields)) => Ok(Arg::Var(name, fields)),
        Some(Tok::Str(s)) => Ok(Arg::Lit(Value::String(s))),
        Some(Tok::Num(n)) => Ok(Arg::Lit(n)),
        Some(Tok::Ident(name)) => match name.as_str() {
            "true" => Ok(Arg::Lit(Value::Bool(true))),
            "false" => Ok(Arg::Lit(Value::Bool(false))),
            "nil" => Ok(Arg::Lit(Value::Null)),
            f if FUNCS.contains(&f) => Ok(Arg::Func(name)),
            _ => parse_err(format!("function {name:?} not defined")),
        },
        Some(Tok::LParen) => {
            let inner = parse_cmds(src, stream, Vec::new(), false)?;
            if stream.next() != Some(Tok::RParen) {
                return parse_err("unclosed left paren");
            }
            let fields = match stream.peek() {
                Some(Tok::Field(fields, true)) => {
                    let f = fields.clone();
                    stream.next();
                    f
                }
                _ => Vec::new(),
            };
            Ok(Arg::Sub(Box::new(inner), fields))
        }
        other => parse_err(format!("unexpected {other:?} in operand")),
    }
}

enum Control {
    Else(Option<Pipeline>),
    End,
    Eof,
}

struct Parser {
    pieces: Vec<Piece>,
    pos: usize,
}

impl Parser {
    /// Parses nodes until `else`, `end` or the end of input.
    fn parse_list(&mut self) -> Result<(Vec<Node>, Control), TemplateError> {
        let mut nodes = Vec::new();
        while self.pos < self.pieces.len() {
            let piece = &self.pieces[self.pos];
            self.pos += 1;
            match piece {
                Piece::Text(t) => nodes.push(Node::Text(t.clone())),
                Piece::Action(a) => {
                    let a = a.clone();
                    // The keyword ends at a space or at the `.` of a field (`range.Tags`).
                    let end = a
                        .find(|c: char| c.is_whitespace() || c == '.' || c == '$' || c == '(')
                        .unwrap_or(a.len());
                    let (word, rest) = (&a[..end], a[end..].trim());
                    match word {
                        "end" => return Ok((nodes, Control::End)),
                        "else" => {
                            if let Some(cond) = rest.strip_prefix("if").filter(|c| {
                                c.starts_with(|ch: char| ch.is_whitespace() || ch == '.')
                            }) {
                                let pipe = parse_pipeline(cond, lex_action(cond)?)?;
                                return Ok((nodes, Control::Else(Some(pipe))));
                            }
                            return Ok((nodes, Control::Else(None)));
                        }
                        "if" | "with" | "range" => {
                            if rest.is_empty() {
                                return parse_err(format!("missing value for {word}"));
                            }
                            let pipe = parse_pipeline(rest, lex_action(rest)?)?;
                            let node = self.parse_block(word, pipe)?;
                            nodes.push(node);
                        }
                        "define" | "template" | "block" | "break" | "continue" => {
                            return parse_err(format!("{word} is not supported"));
                        }
                        _ => nodes.push(Node::Print(parse_pipeline(&a, lex_action(&a)?)?)),
                    }
                }
            }
        }
        Ok((nodes, Control::Eof))
    }

    fn parse_block(&mut self, word: &str, pipe: Pipeline) -> Result<Node, TemplateError> {
        let (body, control) = self.parse_list()?;
        let else_body = match control {
            Control::Eof => return parse_err(format!("unexpected EOF in {word}")),
            Control::End => Vec::new(),
            Control::Else(None) => {
                let (else_body, control) = self.parse_list()?;
                if !matches!(control, Control::End) {
                    return parse_err(format!("expected end after else in {word}"));
                }
                else_body
            }
            Control::Else(Some(cond)) => {
                // `else if` chains share the outer `end`.
                vec![self.parse_block("if", cond)?]
            }
        };
        Ok(match word {
            "if" => Node::If(pipe, body, else_body),
            "with" => Node::With(pipe, body, else_body),
            _ => Node::Range(pipe, body, else_body),
        })
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    strict: bool,
}

impl Template {
    /// Parses a template. `strict`: unknown fields of objects are errors (struct-like rows).
    pub fn parse(src: &str, strict: bool) -> Result<Template, TemplateError> {
        let mut parser = Parser {
            pieces: split_pieces(src)?,
            pos: 0,
        };
        let (nodes, control) = parser.parse_list()?;
        match control {
            Control::Eof => Ok(Template { nodes, strict }),
            Control::End => parse_err("unexpected {{end}}"),
            Control::Else(_) => parse_err("unexpected {{else}}"),
        }
    }

    /// Executes the template against `data`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut exec = Exec {
            // `$` (the root) is the variable with the empty name.
            vars: vec![(String::new(), data.clone())],
            strict: self.strict,
            out: String::new(),
        };
        exec.walk(&self.nodes, data)?;
        Ok(exec.out)
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

/// A value during evaluation: `None` is Go's invalid value (a missing map key), printed
/// `<no value>`.
type Val = Option<Value>;

struct Exec {
    vars: Vec<(String, Value)>,
    strict: bool,
    out: String,
}

fn exec_err<T>(at: &str, message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Exec {
        at: at.to_string(),
        message: message.into(),
    })
}

/// Go's notion of truth: false, 0, "", nil, empty collections are false.
pub fn truth(v: &Val) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

impl Exec {
    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Print(pipe) => {
                    let v = self.pipeline(pipe, dot)?;
                    if pipe.vars.is_empty() {
                        self.out.push_str(&print_top(&v));
                    }
                }
                Node::If(pipe, then, otherwise) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(pipe, dot)?;
                    if truth(&v) {
                        self.walk(then, dot)?;
                    } else {
                        self.walk(otherwise, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::With(pipe, then, otherwise) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(pipe, dot)?;
                    if truth(&v) {
                        let inner = v.unwrap_or(Value::Null);
                        self.walk(then, &inner)?;
                    } else {
                        self.walk(otherwise, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range(pipe, body, otherwise) => {
                    let mark = self.vars.len();
                    let mut decl = pipe.clone();
                    let names = std::mem::take(&mut decl.vars);
                    let v = self.pipeline(&decl, dot)?;
                    let items: Vec<(Value, Value)> = match v {
                        Some(Value::Array(a)) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::from(i), v))
                            .collect(),
                        Some(Value::Object(o)) => {
                            o.into_iter().map(|(k, v)| (Value::String(k), v)).collect()
                        }
                        None | Some(Value::Null) => Vec::new(),
                        Some(other) => {
                            return exec_err(
                                &pipe.src,
                                format!("range can't iterate over {}", print_value(&other)),
                            );
                        }
                    };
                    if items.is_empty() {
                        self.walk(otherwise, dot)?;
                    }
                    for (key, item) in items {
                        let inner = self.vars.len();
                        match names.as_slice() {
                            [] => {}
                            [v] => self.vars.push((v.clone(), item.clone())),
                            [k, v, ..] => {
                                self.vars.push((k.clone(), key));
                                self.vars.push((v.clone(), item.clone()));
                            }
                        }
                        self.walk(body, &item)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, pipe: &Pipeline, dot: &Value) -> Result<Val, TemplateError> {
        let mut piped: Option<Val> = None;
        for cmd in &pipe.cmds {
            piped = Some(self.command(cmd, dot, piped, &pipe.src)?);
        }
        let value = piped.unwrap_or(None);
        if !pipe.vars.is_empty() {
            let v = value.clone().unwrap_or(Value::Null);
            for name in &pipe.vars {
                if pipe.assign {
                    match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                        Some(slot) => slot.1 = v.clone(),
                        None => return exec_err(&pipe.src, format!("undefined variable: ${name}")),
                    }
                } else {
                    self.vars.push((name.clone(), v.clone()));
                }
            }
        }
        Ok(value)
    }

    fn command(
        &mut self,
        cmd: &[Arg],
        dot: &Value,
        piped: Option<Val>,
        src: &str,
    ) -> Result<Val, TemplateError> {
        if let Arg::Func(name) = &cmd[0] {
            let mut args = Vec::new();
            for arg in &cmd[1..] {
                args.push(self.arg(arg, dot, src)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return call(name, args, src);
        }
        if cmd.len() > 1 || piped.is_some() {
            return exec_err(src, "can't give argument to non-function");
        }
        self.arg(&cmd[0], dot, src)
    }

    fn arg(&mut self, arg: &Arg, dot: &Value, src: &str) -> Result<Val, TemplateError> {
        match arg {
            Arg::Lit(v) => Ok(Some(v.clone())),
            Arg::Field(fields) => self.fields(Some(dot.clone()), fields, src),
            Arg::Var(name, fields) => {
                let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return exec_err(src, format!("undefined variable: ${name}"));
                };
                let v = v.clone();
                self.fields(Some(v), fields, src)
            }
            Arg::Func(name) => call(name, Vec::new(), src),
            Arg::Sub(pipe, fields) => {
                let v = self.pipeline(pipe, dot)?;
                self.fields(v, fields, src)
            }
        }
    }

    fn fields(&self, mut v: Val, fields: &[String], src: &str) -> Result<Val, TemplateError> {
        for field in fields {
            v = match v {
                Some(Value::Object(map)) => match map.get(field) {
                    Some(found) => Some(found.clone()),
                    None if self.strict => {
                        return exec_err(src, format!("can't evaluate field {field}"));
                    }
                    None => None,
                },
                // Nil maps and pointers (absent values) have no fields, but docker's typed
                // structs would print their zero values; stay lenient.
                None | Some(Value::Null) => None,
                Some(other) => {
                    return exec_err(
                        src,
                        format!("can't evaluate field {field} in type {}", go_type(&other)),
                    );
                }
            };
        }
        Ok(v)
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "interface {}",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn as_str(v: &Val) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        other => print_top(other),
    }
}

fn as_int(v: &Val, src: &str) -> Result<i64, TemplateError> {
    match v {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or_else(|| exec_err(src, "expected integer"), Ok),
        _ => exec_err(src, format!("expected integer; found {}", print_top(v))),
    }
}

fn compare(a: &Val, b: &Val, src: &str) -> Result<std::cmp::Ordering, TemplateError> {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            Ok(x.partial_cmp(&y).unwrap_or(Ordering::Equal))
        }
        (Some(Value::String(x)), Some(Value::String(y))) => Ok(x.cmp(y)),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => Ok(x.cmp(y)),
        _ => exec_err(src, "incompatible types for comparison"),
    }
}

fn equal(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (None, Some(Value::Null)) | (Some(Value::Null), None) => true,
        _ => a == b,
    }
}

fn call(name: &str, args: Vec<Val>, src: &str) -> Result<Val, TemplateError> {
    let want = |n: usize| -> Result<(), TemplateError> {
        if args.len() == n {
            Ok(())
        } else {
            exec_err(
                src,
                format!(
                    "error calling {name}: wrong number of args for {name}: want {n} got {}",
                    args.len()
                ),
            )
        }
    };
    let string = |s: String| Ok(Some(Value::String(s)));
    match name {
        "and" => {
            if args.is_empty() {
                return exec_err(src, "wrong number of args for and");
            }
            Ok(args
                .iter()
                .find(|a| !truth(a))
                .unwrap_or(&args[args.len() - 1])
                .clone())
        }
        "or" => {
            if args.is_empty() {
                return exec_err(src, "wrong number of args for or");
            }
            Ok(args
                .iter()
                .find(|a| truth(a))
                .unwrap_or(&args[args.len() - 1])
                .clone())
        }
        "not" => {
            want(1)?;
            Ok(Some(Value::Bool(!truth(&args[0]))))
        }
        "len" => {
            want(1)?;
            let n = match &args[0] {
                Some(Value::String(s)) => s.len(),
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(o)) => o.len(),
                other => {
                    return exec_err(
                        src,
                        format!(
                            "error calling len: len of type {}",
                            go_type(other.as_ref().unwrap_or(&Value::Null))
                        ),
                    );
                }
            };
            Ok(Some(Value::from(n)))
        }
        "index" => {
            let Some((first, keys)) = args.split_first() else {
                return exec_err(src, "wrong number of args for index");
            };
            let mut v = first.clone();
            for key in keys {
                v = match (&v, key) {
                    (Some(Value::Object(map)), Some(Value::String(k))) => map.get(k).cloned(),
                    (Some(Value::Array(items)), Some(Value::Number(_))) => {
                        let i = as_int(key, src)?;
                        match usize::try_from(i).ok().and_then(|i| items.get(i)) {
                            Some(item) => Some(item.clone()),
                            None => {
                                return exec_err(
                                    src,
                                    format!("error calling index: index out of range: {i}"),
                                );
                            }
                        }
                    }
                    (None | Some(Value::Null), _) => None,
                    _ => {
                        return exec_err(
                            src,
                            format!("error calling index: cannot index {}", print_top(&v)),
                        );
                    }
                };
            }
            Ok(v)
        }
        "slice" => {
            let Some((first, bounds)) = args.split_first() else {
                return exec_err(src, "wrong number of args for slice");
            };
            let ints: Vec<i64> = bounds
                .iter()
                .map(|b| as_int(b, src))
                .collect::<Result<_, _>>()?;
            match first {
                Some(Value::String(s)) => {
                    let lo = *ints.first().unwrap_or(&0) as usize;
                    let hi = ints.get(1).map_or(s.len(), |h| *h as usize);
                    match s.get(lo..hi) {
                        Some(part) => string(part.to_string()),
                        None => exec_err(src, "error calling slice: index out of range"),
                    }
                }
                Some(Value::Array(a)) => {
                    let lo = *ints.first().unwrap_or(&0) as usize;
                    let hi = ints.get(1).map_or(a.len(), |h| *h as usize);
                    match a.get(lo..hi) {
                        Some(part) => Ok(Some(Value::Array(part.to_vec()))),
                        None => exec_err(src, "error calling slice: index out of range"),
                    }
                }
                _ => exec_err(src, "error calling slice: can't slice item"),
            }
        }
        "eq" => {
            if args.len() < 2 {
                return exec_err(src, "missing argument for comparison");
            }
            Ok(Some(Value::Bool(
                args[1..].iter().any(|b| equal(&args[0], b)),
            )))
        }
        "ne" => {
            want(2)?;
            Ok(Some(Value::Bool(!equal(&args[0], &args[1]))))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let ord = compare(&args[0], &args[1], src)?;
            use std::cmp::Ordering::*;
            let result = match name {
                "lt" => ord == Less,
                "le" => ord != Greater,
                "gt" => ord == Greater,
                _ => ord != Less,
            };
            Ok(Some(Value::Bool(result)))
        }
        "print" => string(go_sprint(&args)),
        "println" => {
            let parts: Vec<String> = args.iter().map(print_top).collect();
            string(format!("{}\n", parts.join(" ")))
        }
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return exec_err(src, "wrong number of args for printf");
            };
            string(go_sprintf(&as_str(fmt), rest))
        }
        "json" => {
            want(1)?;
            string(go_json(args[0].as_ref().unwrap_or(&Value::Null)))
        }
        "join" => {
            want(2)?;
            let sep = as_str(&args[1]);
            match &args[0] {
                Some(Value::Array(items)) => {
                    let parts: Vec<String> = items.iter().map(print_value).collect();
                    string(parts.join(&sep))
                }
                None | Some(Value::Null) => string(String::new()),
                Some(other) => exec_err(
                    src,
                    format!(
                        "error calling join: wrong type for value; expected []string; got {}",
                        go_type(other)
                    ),
                ),
            }
        }
        "split" => {
            want(2)?;
            let (s, sep) = (as_str(&args[0]), as_str(&args[1]));
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep.as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect()
            };
            Ok(Some(Value::Array(parts)))
        }
        "lower" => {
            want(1)?;
            string(as_str(&args[0]).to_lowercase())
        }
        "upper" => {
            want(1)?;
            string(as_str(&args[0]).to_uppercase())
        }
        "title" => {
            want(1)?;
            string(title_case(&as_str(&args[0])))
        }
        "pad" => {
            want(3)?;
            let (l, r) = (as_int(&args[1], src)?.max(0), as_int(&args[2], src)?.max(0));
            string(format!(
                "{}{}{}",
                " ".repeat(l as usize),
                as_str(&args[0]),
                " ".repeat(r as usize)
            ))
        }
        "truncate" => {
            want(2)?;
            let s = as_str(&args[0]);
            let n = as_int(&args[1], src)?.max(0) as usize;
            // docker truncates by bytes; stay on a character boundary.
            if s.len() <= n {
                return string(s);
            }
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            string(s[..end].to_string())
        }
        other => exec_err(src, format!("function {other:?} not defined")),
    }
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric() && c != '\'';
    }
    out
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
fn go_sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = matches!(a, Some(Value::String(_)));
        if i > 0 && !is_str && !matches!(args[i - 1], Some(Value::String(_))) {
            out.push(' ');
        }
        out.push_str(&print_top(a));
    }
    out
}

/// `fmt.Sprintf` for the verbs templates use: `%s %v %d %q %t %%`, with width and `-`.
fn go_sprintf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut width = String::new();
        while let Some(&f) = chars.peek() {
            if f == '-' {
                left = true;
                chars.next();
            } else if f.is_ascii_digit() {
                width.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let text = match verb {
            'q' => go_json(&Value::String(as_str(arg))),
            _ => print_top(arg),
        };
        let width: usize = width.parse().unwrap_or(0);
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&text);
        }
    }
    out
}

/// How an action prints its value: Go's `fmt.Print` of the value, `<no value>` when missing.
pub fn print_top(v: &Val) -> String {
    match v {
        None | Some(Value::Null) => "<no value>".to_string(),
        Some(v) => print_value(v),
    }
}

/// Go's `%v` of a decoded JSON value.
pub fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                go_float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(print_value).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(map) => format!("map[{}]", print_map(map)),
    }
}

fn print_map(map: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let parts: Vec<String> = keys
        .into_iter()
        .map(|k| format!("{k}:{}", print_value(&map[k])))
        .collect();
    parts.join(" ")
}

/// Go's `%v` of a float64: shortest digits, exponent form when the exponent is < -4 or >= 6
/// (`strconv.FormatFloat(f, 'g', -1, 64)`: 4261376.5 prints `4.2613765e+06`).
pub fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// Go's `json.Marshal`: compact, with `<`, `>` and `&` escaped as `\u003c` and so on.
pub fn go_json(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_default();
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests;
