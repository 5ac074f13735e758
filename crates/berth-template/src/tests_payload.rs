//! Unit tests of what swarm's templated payloads use: named templates, Go's error positions,
//! `missingkey=error`, struct values and registered functions.

use serde_json::{Value, json};

use super::*;

/// A payload template as swarmkit makes one: named `expansion`, `missingkey=error`, no docker
/// CLI functions, with `funcs` registered.
fn payload(src: &str, funcs: &Funcs<'_>) -> Result<Template, TemplateError> {
    Template::parse_with(
        src,
        Options {
            name: "expansion".into(),
            missing_key_error: true,
            funcs: funcs.names(),
            ..Options::default()
        },
    )
}

fn context() -> Value {
    go_struct(
        "*template.PayloadContext",
        vec![
            (
                "Service",
                go_struct(
                    "struct { ID string; Name string; Labels map[string]string }",
                    vec![
                        ("ID", json!("svc1")),
                        ("Name", json!("web")),
                        ("Labels", json!({"tier": "front"})),
                    ],
                ),
            ),
            (
                "Task",
                go_struct("struct { ID string; Name string; Slot string }", {
                    vec![
                        ("ID", json!("t1")),
                        ("Name", json!("web.2.t1")),
                        ("Slot", json!("2")),
                    ]
                }),
            ),
        ],
    )
}

fn funcs() -> Funcs<'static> {
    let mut f = Funcs::new();
    f.add("env", |args| {
        let name = string_arg("env", args)?;
        Ok(Some(json!(if name == "MODE" { "prod" } else { "" })))
    });
    f.add("secret", |args| {
        let target = string_arg("secret", args)?;
        match target.as_str() {
            "pw" => Ok(Some(json!("hunter2"))),
            _ => Err(FuncError::Failed(format!(
                "secret target {target} not found"
            ))),
        }
    });
    f
}

fn expand(src: &str) -> Result<String, TemplateError> {
    let f = funcs();
    payload(src, &f)?.render_with(&context(), &f)
}

#[test]
fn fields_functions_and_labels_expand() {
    assert_eq!(
        expand("{{.Service.Name}}-{{.Task.Slot}} {{env \"MODE\"}} {{secret \"pw\"}} {{.Service.Labels.tier}}")
            .unwrap(),
        "web-2 prod hunter2 front"
    );
    assert_eq!(expand("{{env \"NOPE\"}}|").unwrap(), "|");
    assert_eq!(
        expand("{{range $k, $v := .Service.Labels}}{{$k}}={{$v}}{{end}}").unwrap(),
        "tier=front"
    );
    // Go prints structs as `{field values}` in declaration order.
    assert_eq!(expand("{{.Task}}").unwrap(), "{t1 web.2.t1 2}");
    assert_eq!(
        expand("{{.Service}}").unwrap(),
        "{svc1 web map[tier:front]}"
    );
    // Text without actions stays as it is.
    assert_eq!(expand("plain { text }").unwrap(), "plain { text }");
}

#[test]
fn unknown_fields_name_the_go_type() {
    assert_eq!(
        expand("{{.Foo}}").unwrap_err().to_string(),
        "template: expansion:1:2: executing \"expansion\" at <.Foo>: can't evaluate field Foo in type *template.PayloadContext"
    );
    assert_eq!(
        expand("a\nb {{ .Service.Nope }}").unwrap_err().to_string(),
        "template: expansion:2:13: executing \"expansion\" at <.Service.Nope>: can't evaluate field Nope in type struct { ID string; Name string; Labels map[string]string }"
    );
    // As dockerd 20.10 reported it: a chain of fields is at its second field.
    assert_eq!(
        expand("{{ .Service.Nope }}").unwrap_err().to_string(),
        "template: expansion:1:11: executing \"expansion\" at <.Service.Nope>: can't evaluate field Nope in type struct { ID string; Name string; Labels map[string]string }"
    );
    assert_eq!(
        expand("{{.Service.Labels.nope}}").unwrap_err().to_string(),
        "template: expansion:1:10: executing \"expansion\" at <.Service.Labels.nope>: map has no entry for key \"nope\""
    );
}

#[test]
fn function_errors_are_goes() {
    assert_eq!(
        expand("x {{secret \"nope\"}}").unwrap_err().to_string(),
        "template: expansion:1:4: executing \"expansion\" at <secret \"nope\">: error calling secret: secret target nope not found"
    );
    assert_eq!(
        expand("{{env 1}}").unwrap_err().to_string(),
        "template: expansion:1:2: executing \"expansion\" at <env 1>: wrong type for value; expected string; got int"
    );
    // docker CLI's functions are not there; Go's builtins are.
    assert_eq!(
        expand("{{json .}}").unwrap_err().to_string(),
        "template: expansion:1: function \"json\" not defined"
    );
    assert_eq!(expand("{{len .Service.Name}}").unwrap(), "3");
    assert_eq!(
        expand("{{nope}}").unwrap_err().to_string(),
        "template: expansion:1: function \"nope\" not defined"
    );
    assert_eq!(
        expand("a\n{{.Service.Name").unwrap_err().to_string(),
        "template: expansion:2: unclosed action"
    );
}

#[test]
fn registered_functions_override_builtins() {
    let mut f = Funcs::new();
    // swarmkit's `join`: the separator first, then the strings.
    f.add("join", |args| {
        let parts: Vec<String> = args.iter().map(print_top).collect();
        Ok(Some(json!(parts[1..].join(&parts[0]))))
    });
    let t = payload("{{join \",\" \"a\" \"b\"}}", &f).unwrap();
    assert_eq!(t.render_with(&json!({}), &f).unwrap(), "a,b");
}

#[test]
fn cli_errors_keep_their_prefix_and_gain_positions() {
    let t = Template::parse("{{.ID}} {{.Nope}}", true).unwrap();
    assert_eq!(
        t.render(&json!({"ID": "x"}))
            .unwrap_err()
            .in_row()
            .to_string(),
        "template parsing error: template: :1:10: executing \"\" at <.Nope>: can't evaluate field Nope"
    );
}

/// Configs reach 500 KB: a megabyte template of 20,000 actions expands whole, line for line.
#[test]
fn a_megabyte_payload_expands_whole() {
    let src: String = (0..20_000)
        .map(|i| format!("line {i} {{{{.Service.Name}}}} and some padding text\n"))
        .collect();
    assert!(src.len() > 1_000_000);
    let t = Template::parse_with(
        &src,
        Options {
            name: "expansion".into(),
            missing_key_error: true,
            ..Options::default()
        },
    )
    .unwrap();
    let data = go_struct(
        "T",
        vec![("Service", go_struct("S", vec![("Name", json!("web"))]))],
    );
    let out = t.render(&data).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 20_000);
    assert_eq!(lines[0], "line 0 web and some padding text");
    assert_eq!(lines[19_999], "line 19999 web and some padding text");
}
