//! Execution: walks the parsed nodes over the data, as Go's `text/template` executes.

use serde_json::Value;

use crate::funcs::{self, go_type, print_top, print_value, truth};
use crate::parse::{Arg, ArgKind, Cmd, Node, Pipeline, Span, loc_of};
use crate::{FuncError, Funcs, STRUCT_KEY, Template, TemplateError, Val};

struct Exec<'t, 'f> {
    t: &'t Template,
    funcs: &'t Funcs<'f>,
    vars: Vec<(String, Value)>,
    out: String,
}

pub(crate) fn run(t: &Template, data: &Value, funcs: &Funcs<'_>) -> Result<String, TemplateError> {
    let mut exec = Exec {
        t,
        funcs,
        // `$` (the root) is the variable with the empty name.
        vars: vec![(String::new(), data.clone())],
        out: String::new(),
    };
    exec.walk(&t.nodes, data)?;
    Ok(exec.out)
}

impl Exec<'_, '_> {
    /// Go's execution error at the node spanning `span`.
    fn err<T>(&self, span: Span, message: impl Into<String>) -> Result<T, TemplateError> {
        let src = &self.t.src;
        Err(TemplateError::Exec {
            name: self.t.opts.name.clone(),
            loc: loc_of(src, span.pos),
            at: src
                .get(span.start..span.end)
                .unwrap_or_default()
                .to_string(),
            message: message.into(),
        })
    }

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
                Node::Range(pipe, body, otherwise) => self.range(pipe, body, otherwise, dot)?,
            }
        }
        Ok(())
    }

    fn range(
        &mut self,
        pipe: &Pipeline,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
    ) -> Result<(), TemplateError> {
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
            Some(Value::Object(o)) if !o.contains_key(STRUCT_KEY) => {
                o.into_iter().map(|(k, v)| (Value::String(k), v)).collect()
            }
            None | Some(Value::Null) => Vec::new(),
            Some(other) => {
                return self.err(
                    pipe.span,
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
        Ok(())
    }

    fn pipeline(&mut self, pipe: &Pipeline, dot: &Value) -> Result<Val, TemplateError> {
        let mut piped: Option<Val> = None;
        for cmd in &pipe.cmds {
            piped = Some(self.command(cmd, dot, piped)?);
        }
        let value = piped.unwrap_or(None);
        if !pipe.vars.is_empty() {
            let v = value.clone().unwrap_or(Value::Null);
            for name in &pipe.vars {
                if pipe.assign {
                    match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                        Some(slot) => slot.1 = v.clone(),
                        None => return self.err(pipe.span, format!("undefined variable: ${name}")),
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
        cmd: &Cmd,
        dot: &Value,
        piped: Option<Val>,
    ) -> Result<Val, TemplateError> {
        if let ArgKind::Func(name) = &cmd.args[0].kind {
            let mut args = Vec::new();
            for arg in &cmd.args[1..] {
                args.push(self.arg(arg, dot)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return self.call(name, args, cmd.span);
        }
        if cmd.args.len() > 1 || piped.is_some() {
            return self.err(cmd.span, "can't give argument to non-function");
        }
        self.arg(&cmd.args[0], dot)
    }

    /// Calls a registered function, else a builtin; errors are at the command.
    fn call(&self, name: &str, args: Vec<Val>, span: Span) -> Result<Val, TemplateError> {
        if let Some(f) = self.funcs.get(name) {
            return match f(&args) {
                Ok(v) => Ok(v),
                Err(FuncError::Args(m)) => self.err(span, m),
                Err(FuncError::Failed(m)) => self.err(span, format!("error calling {name}: {m}")),
            };
        }
        funcs::call(name, args, self.t.opts.docker_funcs).or_else(|m| self.err(span, m))
    }

    fn arg(&mut self, arg: &Arg, dot: &Value) -> Result<Val, TemplateError> {
        match &arg.kind {
            ArgKind::Lit(v) => Ok(Some(v.clone())),
            ArgKind::Field(fields) => self.fields(Some(dot.clone()), fields, arg.span),
            ArgKind::Var(name, fields) => {
                let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return self.err(arg.span, format!("undefined variable: ${name}"));
                };
                let v = v.clone();
                self.fields(Some(v), fields, arg.span)
            }
            ArgKind::Func(name) => self.call(name, Vec::new(), arg.span),
            ArgKind::Sub(pipe, fields) => {
                let v = self.pipeline(pipe, dot)?;
                self.fields(v, fields, arg.span)
            }
        }
    }

    fn fields(&self, mut v: Val, fields: &[String], span: Span) -> Result<Val, TemplateError> {
        let opts = &self.t.opts;
        for field in fields {
            v = match v {
                Some(Value::Object(map)) => {
                    if let Some(shape) = map.get(STRUCT_KEY) {
                        match map.get(field).filter(|_| field != STRUCT_KEY) {
                            Some(found) => Some(found.clone()),
                            None => {
                                let ty = shape[0].as_str().unwrap_or_default();
                                return self.err(
                                    span,
                                    format!("can't evaluate field {field} in type {ty}"),
                                );
                            }
                        }
                    } else {
                        match map.get(field) {
                            Some(found) => Some(found.clone()),
                            None if opts.strict => {
                                return self.err(span, format!("can't evaluate field {field}"));
                            }
                            None if opts.missing_key_error => {
                                return self
                                    .err(span, format!("map has no entry for key {field:?}"));
                            }
                            None => None,
                        }
                    }
                }
                // Nil maps and pointers (absent values) have no fields, but docker's typed
                // structs would print their zero values; stay lenient.
                None | Some(Value::Null) => None,
                Some(other) => {
                    return self.err(
                        span,
                        format!("can't evaluate field {field} in type {}", go_type(&other)),
                    );
                }
            };
        }
        Ok(v)
    }
}
