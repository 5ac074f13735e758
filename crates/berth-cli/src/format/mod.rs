//! Output formatting: `--format` handling, docker's tables, human units, JSON as docker prints it.

pub mod progress;
pub mod table;
pub mod template;
pub mod units;

use serde_json::{Map, Value};

pub use template::{Template, TemplateError};

/// A `--format` value as docker interprets it for list commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `table` (header row, tab-aligned columns) with the template for one row.
    Table(String),
    /// A raw template, one output line per row.
    Raw(String),
}

impl Format {
    /// A list command's format: with `-q` only `{{.field}}` (docker prints IDs or names), else
    /// `--format` or the command's default table.
    pub fn for_list(quiet: bool, field: &str, format: Option<&str>, default: &str) -> Format {
        if quiet {
            Format::Raw(format!("{{{{.{field}}}}}"))
        } else {
            Format::parse(format, default)
        }
    }

    /// `None`/`""`/`table` → the default table; `json` → `{{json .}}`; `table TEMPLATE`;
    /// anything else is a raw template. `\t` and `\n` written literally are unescaped, as docker
    /// does.
    pub fn parse(format: Option<&str>, default_table: &str) -> Format {
        let unescape = |s: &str| s.trim().replace("\\t", "\t").replace("\\n", "\n");
        match format.map(str::trim) {
            None | Some("") | Some("table") => Format::Table(unescape(
                default_table
                    .strip_prefix("table ")
                    .unwrap_or(default_table),
            )),
            Some("json") => Format::Raw("{{json .}}".to_string()),
            // docker only looks for the prefix: `table{{.ID}}` is a table too.
            Some(f) if f.starts_with("table") => Format::Table(unescape(&f["table".len()..])),
            Some(f) => Format::Raw(unescape(f)),
        }
    }

    /// Renders rows (objects keyed by docker's formatter field names); `headers` maps field
    /// names to column titles for the table's header row.
    pub fn render(
        &self,
        rows: &[Value],
        headers: &[(&str, &str)],
    ) -> Result<String, TemplateError> {
        match self {
            Format::Raw(src) => {
                let template = Template::parse(src, true)?;
                let mut out = String::new();
                for row in rows {
                    out.push_str(&template.render(row).map_err(TemplateError::in_row)?);
                    out.push('\n');
                }
                Ok(out)
            }
            Format::Table(src) => {
                let template = Template::parse(src, true)?;
                let header_template = Template::parse(src, false)?;
                let header_row: Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect();
                let mut text = header_template.render(&Value::Object(header_row))?;
                text.push('\n');
                for row in rows {
                    text.push_str(&template.render(row).map_err(TemplateError::in_row)?);
                    text.push('\n');
                }
                Ok(table::align(&text))
            }
        }
    }
}

/// Renders one value with a template (the inspect commands' `--format`), newline-terminated.
pub fn render_one(src: &str, value: &Value) -> Result<String, TemplateError> {
    let src = src.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = Template::parse(&src, false)?.render(value)?;
    out.push('\n');
    Ok(out)
}

/// What the inspect commands print for the objects they found: one `--format` rendering per
/// object, or docker's indented JSON array of the daemon's answers (kept as sent, key order too).
pub fn inspect_output(raws: &[impl AsRef<[u8]>], template: Option<&str>) -> anyhow::Result<String> {
    match template.filter(|t| !t.is_empty()) {
        Some(template) => {
            let mut text = String::new();
            for raw in raws {
                let value: Value = serde_json::from_slice(raw.as_ref()).map_err(|e| {
                    anyhow::anyhow!("cannot decode the daemon's inspect answer: {e}")
                })?;
                text.push_str(&render_one(template, &value)?);
            }
            Ok(text)
        }
        None => {
            let mut joined = Vec::from(&b"["[..]);
            for (i, raw) in raws.iter().enumerate() {
                if i > 0 {
                    joined.push(b',');
                }
                joined.extend_from_slice(raw.as_ref());
            }
            joined.push(b']');
            Ok(format!("{}\n", indent_json(&joined)))
        }
    }
}

/// Re-indents JSON text with 4 spaces as Go's `json.Indent` does, keeping the original key
/// order and string escapes (docker's inspect output).
pub fn indent_json(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Skip whitespace to see whether the container is empty.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn format_kinds() {
        assert_eq!(
            Format::parse(None, "table {{.ID}}"),
            Format::Table("{{.ID}}".into())
        );
        assert_eq!(
            Format::parse(Some("table"), "table {{.ID}}"),
            Format::Table("{{.ID}}".into())
        );
        assert_eq!(
            Format::parse(Some("json"), "x"),
            Format::Raw("{{json .}}".into())
        );
        assert_eq!(
            Format::parse(Some(r"table {{.A}}\t{{.B}}"), "x"),
            Format::Table("{{.A}}\t{{.B}}".into())
        );
        assert_eq!(
            Format::parse(Some("{{.ID}}"), "x"),
            Format::Raw("{{.ID}}".into())
        );
        assert_eq!(
            Format::parse(Some("table{{.ID}}"), "x"),
            Format::Table("{{.ID}}".into())
        );
        // `-q` wins over `--format`, as in docker's list commands.
        assert_eq!(
            Format::for_list(true, "Name", Some("{{.ID}}"), "x"),
            Format::Raw("{{.Name}}".into())
        );
        assert_eq!(
            Format::for_list(false, "ID", None, "table {{.ID}}"),
            Format::Table("{{.ID}}".into())
        );
    }

    #[test]
    fn tables_have_headers_and_alignment() {
        let rows = vec![
            json!({"Repository": "busybox", "Size": "4.26MB"}),
            json!({"Repository": "alpine-long-name", "Size": "7.8MB"}),
        ];
        let format = Format::parse(Some(r"table {{.Repository}}\t{{.Size}}"), "");
        let out = format
            .render(&rows, &[("Repository", "REPOSITORY"), ("Size", "SIZE")])
            .unwrap();
        assert_eq!(
            out,
            "REPOSITORY         SIZE\nbusybox            4.26MB\nalpine-long-name   7.8MB\n"
        );
        let raw = Format::parse(Some("{{.Repository}}"), "")
            .render(&rows, &[])
            .unwrap();
        assert_eq!(raw, "busybox\nalpine-long-name\n");
    }

    #[test]
    fn indents_like_go() {
        let raw = br#"[{"Id":"sha256:x","RepoTags":["a:b"],"Config":{},"L":[],"S":"a,b:{c}"}]"#;
        assert_eq!(
            indent_json(raw),
            "[\n    {\n        \"Id\": \"sha256:x\",\n        \"RepoTags\": [\n            \"a:b\"\n        ],\n        \"Config\": {},\n        \"L\": [],\n        \"S\": \"a,b:{c}\"\n    }\n]"
        );
    }
}
