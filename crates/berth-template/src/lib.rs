//! A Go `text/template` evaluator over JSON values: the subset docker's `--format` uses, and
//! what swarm's templated configs and secrets need (swarmkit's `template` package).
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`;
//! pipelines (`a | b`), parenthesized pipelines, fields (`.A.B`, `$x.A`, `(...).A`), variables
//! (`$x := ...`, `$x = ...`, `$` for the root); `if`/`else if`/`else`, `range` (with
//! `$i, $v :=` and `else`), `with`/`else`; Go's builtins `and or not len index slice eq ne lt
//! le gt ge print printf println`, docker's `json join split lower upper title pad truncate`
//! (with [`Options::docker_funcs`]), and functions the caller registers ([`Funcs`], Go's
//! `FuncMap`).
//!
//! Values print as Go's `fmt` prints them: slices `[a b]`, maps `map[k:v]` (sorted keys),
//! structs ([`go_struct`]) `{a b}`, a missing value `<no value>`. A *strict* template (list
//! commands, whose rows have a fixed set of fields) reports unknown fields as Go does for
//! structs; a lenient one (inspect, raw JSON) yields `<no value>` for them, as Go does for maps.
//! Errors carry Go's text, with the template's name, line and column.
//!
//! Written from the `text/template` documentation; `gtmpl` was set aside because it cannot
//! print Go's `map[...]`/`<no value>` forms nor tell a struct-like row from a JSON map.

mod exec;
mod funcs;
mod parse;

use std::collections::BTreeMap;

use serde_json::Value;

pub use funcs::{go_float, go_json, print_top, print_value, truth};

/// A value during evaluation: `None` is Go's invalid value (a missing map key), printed
/// `<no value>`.
pub type Val = Option<Value>;

/// A parse or execution failure, with Go's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `template: NAME:LINE: MESSAGE`.
    #[error("template: {name}:{line}: {message}")]
    Parse {
        name: String,
        line: usize,
        message: String,
    },
    /// `template: NAME:LINE:COL: executing "NAME" at <NODE>: MESSAGE`.
    #[error("template: {name}:{loc}: executing \"{name}\" at <{at}>: {message}")]
    Exec {
        name: String,
        /// `LINE:COL` (the column is a 0-based byte offset in the line, as Go counts).
        loc: String,
        /// The source of the node that failed.
        at: String,
        message: String,
    },
    /// How docker's CLI reports parse errors (and a list row's execution errors).
    #[error("template parsing error: {0}")]
    Cli(Box<TemplateError>),
}

impl TemplateError {
    /// Wraps an execution error the way docker's list formatters report it.
    pub fn in_row(self) -> TemplateError {
        match self {
            e @ TemplateError::Exec { .. } => TemplateError::Cli(Box::new(e)),
            other => other,
        }
    }
}

/// How a template is parsed and run (Go's `template.New(name).Option(...).Funcs(...)`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The template's name in error messages (`""` for docker's `--format`).
    pub name: String,
    /// Unknown fields of objects are errors (struct-like rows of list commands).
    pub strict: bool,
    /// Go's `missingkey=error`: a missing map key is an error, not `<no value>`.
    pub missing_key_error: bool,
    /// docker CLI's functions (`json join split lower upper title pad truncate`).
    pub docker_funcs: bool,
    /// The names of the functions the caller registers ([`Funcs`]), known at parse time as
    /// Go's `Funcs` must precede `Parse`. They take precedence over the builtins.
    pub funcs: Vec<String>,
}

/// Why a registered function gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuncError {
    /// Its arguments do not fit (Go checks them before the call and says so plainly).
    Args(String),
    /// The function's own error: Go reports `error calling NAME: MESSAGE`.
    Failed(String),
}

/// A function registered for an execution: its evaluated arguments in, a value out.
pub type Func<'a> = Box<dyn Fn(&[Val]) -> Result<Val, FuncError> + 'a>;

/// The functions a caller registers for one execution (Go's `FuncMap`); they may borrow
/// what the call needs (a task's secrets, say).
#[derive(Default)]
pub struct Funcs<'a> {
    map: BTreeMap<String, Func<'a>>,
}

impl<'a> Funcs<'a> {
    pub fn new() -> Self {
        Funcs::default()
    }

    /// Registers `name`; a later registration of the same name replaces it.
    pub fn add(
        &mut self,
        name: &str,
        f: impl Fn(&[Val]) -> Result<Val, FuncError> + 'a,
    ) -> &mut Self {
        self.map.insert(name.to_string(), Box::new(f));
        self
    }

    /// The registered names, for [`Options::funcs`].
    pub fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Func<'a>> {
        self.map.get(name)
    }
}

/// The one string argument of a registered function, checked as Go's reflection-based call
/// checks it.
pub fn string_arg(name: &str, args: &[Val]) -> Result<String, FuncError> {
    match args {
        [Some(Value::String(s))] => Ok(s.clone()),
        [other] => Err(FuncError::Args(format!(
            "wrong type for value; expected string; got {}",
            funcs::go_type(other.as_ref().unwrap_or(&Value::Null))
        ))),
        _ => Err(FuncError::Args(format!(
            "wrong number of args for {name}: want 1 got {}",
            args.len()
        ))),
    }
}

/// The marker key of an object that stands for a Go struct; its value lists the type's name
/// and its fields in declaration order.
pub(crate) const STRUCT_KEY: &str = "\u{0}go struct";

/// A Go struct value of type `type_name` with `fields` in declaration order: an unknown field
/// is an error naming the type (`can't evaluate field X in type T`), and it prints as Go
/// prints structs (`{v1 v2}`).
pub fn go_struct(type_name: &str, fields: Vec<(&str, Value)>) -> Value {
    let mut map = serde_json::Map::new();
    let mut shape = vec![Value::String(type_name.to_string())];
    for (k, v) in fields {
        shape.push(Value::String(k.to_string()));
        map.insert(k.to_string(), v);
    }
    map.insert(STRUCT_KEY.to_string(), Value::Array(shape));
    Value::Object(map)
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<parse::Node>,
    src: String,
    opts: Options,
}

impl Template {
    /// Parses a `--format` template as docker's CLI does (its functions, errors prefixed with
    /// `template parsing error:`). `strict`: unknown fields of objects are errors.
    pub fn parse(src: &str, strict: bool) -> Result<Template, TemplateError> {
        let opts = Options {
            strict,
            docker_funcs: true,
            ..Options::default()
        };
        Template::parse_with(src, opts).map_err(|e| TemplateError::Cli(Box::new(e)))
    }

    /// Parses a template with `opts`; errors are Go's own text.
    pub fn parse_with(src: &str, opts: Options) -> Result<Template, TemplateError> {
        let nodes = parse::parse(src, &opts)?;
        Ok(Template {
            nodes,
            src: src.to_string(),
            opts,
        })
    }

    /// Executes the template against `data`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        self.render_with(data, &Funcs::default())
    }

    /// Executes the template against `data` with the caller's functions.
    pub fn render_with(&self, data: &Value, funcs: &Funcs<'_>) -> Result<String, TemplateError> {
        exec::run(self, data, funcs)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_payload;
