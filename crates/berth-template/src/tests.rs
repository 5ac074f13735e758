//! Unit tests of the Go-template engine.

use serde_json::json;

use super::*;

fn render(src: &str, data: Value) -> String {
    Template::parse(src, false).unwrap().render(&data).unwrap()
}

#[test]
fn fields_and_text() {
    let data = json!({"Repository": "busybox", "Tag": "latest", "Config": {"Cmd": ["sh", "-c"]}});
    assert_eq!(
        render("{{.Repository}}:{{.Tag}}", data.clone()),
        "busybox:latest"
    );
    assert_eq!(render("{{.Config.Cmd}}", data.clone()), "[sh -c]");
    assert_eq!(render("{{.Missing}}", data.clone()), "<no value>");
    assert_eq!(
        render("{{ .Config.Nope.Deeper }}", data.clone()),
        "<no value>"
    );
    assert_eq!(render("{{.Config}}", data), "map[Cmd:[sh -c]]");
}

#[test]
fn strict_rows_reject_unknown_fields() {
    let t = Template::parse("{{.Nope}}", true).unwrap();
    let err = t.render(&json!({"ID": "x"})).unwrap_err().in_row();
    assert!(
        err.to_string()
            .starts_with("template parsing error: template: :1:2: executing")
    );
    assert!(
        err.to_string().contains("can't evaluate field Nope"),
        "{err}"
    );
}

#[test]
fn json_function_escapes_like_go() {
    let data = json!({"b": "<none>", "a": 1});
    assert_eq!(
        render("{{json .}}", data.clone()),
        r#"{"a":1,"b":"\u003cnone\u003e"}"#
    );
    assert_eq!(render("{{json .b}}", data), r#""\u003cnone\u003e""#);
    assert_eq!(render("{{json .x}}", json!({})), "null");
}

#[test]
fn conditionals() {
    let data = json!({"A": true, "B": "", "N": 0, "L": []});
    assert_eq!(render("{{if .A}}yes{{else}}no{{end}}", data.clone()), "yes");
    assert_eq!(
        render(
            "{{if .B}}yes{{else if .A}}elif{{else}}no{{end}}",
            data.clone()
        ),
        "elif"
    );
    assert_eq!(
        render("{{if .N}}y{{end}}{{if .L}}y{{end}}", data.clone()),
        ""
    );
    assert_eq!(
        render("{{if and .A (not .B)}}ok{{end}}", data.clone()),
        "ok"
    );
    assert_eq!(
        render("{{if or .B .N}}y{{else}}n{{end}}", data.clone()),
        "n"
    );
    assert_eq!(render("{{with .A}}{{.}}{{end}}", data.clone()), "true");
    assert_eq!(render("{{with .B}}x{{else}}empty{{end}}", data), "empty");
}

#[test]
fn comparisons() {
    let data = json!({"S": "running", "N": 3});
    assert_eq!(
        render(r#"{{if eq .S "running"}}up{{end}}"#, data.clone()),
        "up"
    );
    assert_eq!(
        render(r#"{{if eq .S "a" "running"}}up{{end}}"#, data.clone()),
        "up"
    );
    assert_eq!(render(r#"{{if ne .S "x"}}ne{{end}}"#, data.clone()), "ne");
    assert_eq!(
        render(
            "{{if gt .N 2}}gt{{end}}{{if lt .N 2}}lt{{end}}",
            data.clone()
        ),
        "gt"
    );
    assert_eq!(
        render("{{if ge .N 3}}ge{{end}}{{if le .N 3}}le{{end}}", data),
        "gele"
    );
}

#[test]
fn range_and_variables() {
    let data = json!({"Tags": ["a:1", "b:2"], "Labels": {"z": "1", "a": "2"}});
    assert_eq!(
        render("{{range .Tags}}[{{.}}]{{end}}", data.clone()),
        "[a:1][b:2]"
    );
    assert_eq!(
        render("{{range.Tags}}[{{.}}]{{end}}", data.clone()),
        "[a:1][b:2]"
    );
    assert_eq!(
        render("{{if.Tags}}y{{else if.None}}n{{end}}", data.clone()),
        "y"
    );
    assert_eq!(
        render(
            "{{range $i, $t := .Tags}}{{$i}}={{$t}} {{end}}",
            data.clone()
        ),
        "0=a:1 1=b:2 "
    );
    assert_eq!(
        render(
            "{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}",
            data.clone()
        ),
        "a=2;z=1;"
    );
    assert_eq!(
        render("{{range .None}}x{{else}}none{{end}}", data.clone()),
        "none"
    );
    assert_eq!(render("{{$x := .Tags}}{{index $x 1}}", data.clone()), "b:2");
    assert_eq!(render("{{range .Tags}}{{$.Labels.a}}{{end}}", data), "22");
}

#[test]
fn index_and_len() {
    let data = json!({"Config": {"Labels": {"com.x": "v"}}, "L": [1, 2, 3]});
    assert_eq!(
        render(r#"{{index .Config.Labels "com.x"}}"#, data.clone()),
        "v"
    );
    assert_eq!(
        render(r#"{{index .Config.Labels "nope"}}"#, data.clone()),
        "<no value>"
    );
    assert_eq!(render("{{index .L 2}} {{len .L}}", data.clone()), "3 3");
    assert!(
        Template::parse("{{index .L 9}}", false)
            .unwrap()
            .render(&data)
            .is_err()
    );
}

#[test]
fn docker_string_functions() {
    let data = json!({"Args": ["a", "b"], "S": "Hello World", "P": "a,b,c"});
    assert_eq!(render(r#"{{join .Args ","}}"#, data.clone()), "a,b");
    assert_eq!(
        render("{{lower .S}} {{upper .S}}", data.clone()),
        "hello world HELLO WORLD"
    );
    assert_eq!(
        render(r#"{{title "hello wide world"}}"#, data.clone()),
        "Hello Wide World"
    );
    assert_eq!(render(r#"{{split .P ","}}"#, data.clone()), "[a b c]");
    assert_eq!(render("{{truncate .S 5}}", data.clone()), "Hello");
    assert_eq!(render("{{truncate .S 50}}", data.clone()), "Hello World");
    assert_eq!(render("{{pad .S 1 2}}|", data.clone()), " Hello World  |");
    assert_eq!(render("{{println .S}}", data.clone()), "Hello World\n");
    assert_eq!(
        render(r#"{{.S | lower | upper}}"#, data.clone()),
        "HELLO WORLD"
    );
    assert_eq!(
        render(r#"{{printf "%-6s|%d" "ab" 3}}"#, data.clone()),
        "ab    |3"
    );
    assert_eq!(render(r#"{{print "a" 1 2 "b"}}"#, data), "a1 2b");
}

#[test]
fn trimming_comments_and_literals() {
    let data = json!({"A": "x"});
    assert_eq!(render("a  {{- .A -}}  b", data.clone()), "axb");
    assert_eq!(render("a{{/* note */}}b", data.clone()), "ab");
    assert_eq!(render("{{`raw\\t`}}", data.clone()), "raw\\t");
    assert_eq!(render("{{\"q\\tq\"}}", data), "q\tq");
}

#[test]
fn parenthesized_pipelines() {
    let data = json!({"M": {"k": {"Inner": "deep"}}, "S": "a:b"});
    assert_eq!(render(r#"{{(index .M "k").Inner}}"#, data.clone()), "deep");
    assert_eq!(render(r#"{{index (split .S ":") 1}}"#, data), "b");
}

#[test]
fn go_printing_of_values() {
    assert_eq!(print_value(&json!(4261376)), "4261376");
    assert_eq!(print_value(&json!(1.5)), "1.5");
    assert_eq!(go_float(4261376.5), "4.2613765e+06");
    assert_eq!(go_float(123456.5), "123456.5");
    assert_eq!(print_value(&json!([])), "[]");
    assert_eq!(print_value(&json!({})), "map[]");
    assert_eq!(
        print_value(&json!([null, {"a": [1]}])),
        "[<nil> map[a:[1]]]"
    );
    assert_eq!(print_top(&Some(Value::Null)), "<no value>");
}

#[test]
fn parse_errors_are_reported() {
    for bad in [
        "{{json.}}",
        "{{.A",
        "{{if .A}}x",
        "{{end}}",
        "{{nofunc .A}}",
        "{{else}}",
        "{{\"x}}",
    ] {
        assert!(Template::parse(bad, false).is_err(), "{bad}");
    }
    let err = Template::parse("{{nofunc .A}}", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template parsing error: template: :1: function \"nofunc\" not defined"
    );
}
