//! Templated payloads against a store holding a service, a node, secrets, configs and a task.

use base64::Engine as _;
use serde_json::json;

use super::*;
use crate::agent::TaskFile;
use crate::types::{Meta, Node, Object, Secret, Service};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn state() -> (State, Task) {
    let mut state = State::default();
    state.put_object(Object::Service(Service {
        meta: Meta::new("svc1".into()),
        spec: json!({"Name": "web", "Labels": {"tier": "front"}}),
        ..Default::default()
    }));
    state.put_object(Object::Node(Node {
        meta: Meta::new("node1".into()),
        description: json!({"Hostname": "host-a", "Platform": {"Architecture": "x86_64", "OS": "linux"}}),
        ..Default::default()
    }));
    state.put_object(Object::Secret(Secret {
        meta: Meta::new("sec1".into()),
        spec: json!({"Name": "pw", "Data": b64("hunter2")}),
    }));
    state.put_object(Object::Secret(Secret {
        meta: Meta::new("sec2".into()),
        spec: json!({"Name": "tpl", "Data": b64("pw={{secret \"pw\"}}"), "Templating": {"Name": "golang"}}),
    }));
    state.put_object(Object::Config(Secret {
        meta: Meta::new("cfg1".into()),
        spec: json!({"Name": "conf", "Data": b64("{{.Service.Name}}.{{.Task.Slot}}@{{.Node.Hostname}} {{env \"MODE\"}} {{config \"/plain\"}} {{.Node.Platform.OS}}/{{.Node.Platform.Architecture}} {{.Task.Name}}"), "Templating": {"Name": "golang"}}),
    }));
    state.put_object(Object::Config(Secret {
        meta: Meta::new("cfg2".into()),
        spec: json!({"Name": "plain", "Data": b64("{{not a template}}")}),
    }));
    let task = Task {
        meta: Meta::new("task1".into()),
        spec: json!({"ContainerSpec": {
            "Image": "busybox",
            "Env": ["MODE=prod", "X=1"],
            "Secrets": [
                {"SecretID": "sec1", "SecretName": "pw", "File": {"Name": "pw"}},
                {"SecretID": "sec2", "SecretName": "tpl", "File": {"Name": "tpl"}},
            ],
            "Configs": [
                {"ConfigID": "cfg1", "ConfigName": "conf", "File": {"Name": "/conf"}},
                {"ConfigID": "cfg2", "ConfigName": "plain", "File": {"Name": "/plain"}},
            ],
        }})
        .into(),
        service_id: "svc1".into(),
        slot: 3,
        node_id: "node1".into(),
        ..Default::default()
    };
    (state, task)
}

fn files(state: &State, task: &Task) -> Vec<TaskFile> {
    let refs: Vec<_> = references(&task.spec["ContainerSpec"]).collect();
    refs.iter()
        .map(|(config, id, target)| TaskFile {
            target: target.to_string(),
            data: secret_bytes(&stored(state, *config, id).unwrap().spec),
            uid: 0,
            gid: 0,
            mode: 0o444,
        })
        .collect()
}

#[test]
fn templated_payloads_expand_and_others_stay_verbatim() {
    let (state, task) = state();
    let mut files = files(&state, &task);
    expand_files(&state, &task, &mut files).unwrap();
    let text: Vec<String> = files
        .iter()
        .map(|f| String::from_utf8(f.data.clone()).unwrap())
        .collect();
    assert_eq!(
        text,
        [
            "hunter2",
            "pw=hunter2",
            "web.3@host-a prod {{not a template}} linux/x86_64 web.3.task1",
            "{{not a template}}",
        ]
    );
}

#[test]
fn errors_are_dockerds() {
    let (mut state, task) = state();
    let set = |state: &mut State, data: &str, templating: Value| {
        state.put_object(Object::Config(Secret {
            meta: Meta::new("cfg1".into()),
            spec: json!({"Name": "conf", "Data": b64(data), "Templating": templating}),
        }));
    };
    let err = |state: &State| {
        let mut files = files(state, &task);
        expand_files(state, &task, &mut files).unwrap_err()
    };
    set(&mut state, "{{.Foo}}", json!({"Name": "golang"}));
    assert_eq!(
        err(&state),
        "starting container failed: unable to get config from config store: failed to expand templated config cfg1: template: expansion:1:2: executing \"expansion\" at <.Foo>: can't evaluate field Foo in type *template.PayloadContext"
    );
    set(&mut state, "{{secret \"nope\"}}", json!({"Name": "golang"}));
    assert_eq!(
        err(&state),
        "starting container failed: unable to get config from config store: failed to expand templated config cfg1: template: expansion:1:2: executing \"expansion\" at <secret \"nope\">: error calling secret: secret target nope not found"
    );
    set(&mut state, "{{.Service.Name", json!({"Name": "golang"}));
    assert_eq!(
        err(&state),
        "starting container failed: unable to get config from config store: failed to expand templated config cfg1: template: expansion:1: unclosed action"
    );
    set(&mut state, "x", json!({"Name": "jinja"}));
    assert_eq!(
        err(&state),
        "starting container failed: unable to get config from config store: failed to expand templated config cfg1: unrecognized template type"
    );
}

#[test]
fn global_tasks_slot_is_the_node_and_join_is_swarmkits() {
    let (state, mut task) = state();
    task.slot = 0;
    let out = expand(
        &state,
        &task,
        &json!({"Name": "golang"}),
        b"{{.Task.Slot}} {{join \"-\" \"a\" \"b\"}} {{.Service.Labels.tier}}",
    )
    .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "node1 a-b front");
}
