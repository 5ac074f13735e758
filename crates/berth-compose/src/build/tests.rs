//! The `build:` section's mapping onto `POST /build`, against the spec's forms.

use std::collections::BTreeMap;

use super::*;

fn project(text: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
    let p = crate::loader::load(&crate::LoadOptions {
        working_dir: dir.path().to_path_buf(),
        environment: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
    .unwrap();
    (dir, p)
}

fn request(p: &Project, service: &str, flags: &BuildFlags) -> BuildRequest {
    build_request(p, &p.services[service], flags).unwrap()
}

#[test]
fn short_form_names_the_image_project_service() {
    let (dir, p) = project("name: app\nservices:\n  api:\n    build: ./api\n", &[]);
    let r = request(&p, "api", &BuildFlags::default());
    assert_eq!(r.image, "app-api");
    assert_eq!(r.options.tags, vec!["app-api".to_string()]);
    let root = dir.path().join("api");
    assert_eq!(
        r.context,
        BuildContext::Dir {
            root: root.clone(),
            dockerfile: Dockerfile::Path(root.join("Dockerfile")),
        }
    );
    // What Docker Compose's classic builder labels its images with.
    assert_eq!(r.options.labels.len(), 1);
    assert_eq!(
        r.options.labels["com.docker.compose.image.builder"],
        "classic"
    );
    assert!(r.options.remove);
}

#[test]
fn long_form_maps_every_field() {
    let text = r#"
name: app
services:
  api:
    image: reg.example/api:1
    build:
      context: .
      dockerfile: docker/Dockerfile.dev
      args:
        - PLAIN=1
        - FROM_ENV
        - UNSET
        - INTERP=${TAG:-dflt}
      target: test
      labels: {a: b}
      cache_from: [x:1]
      network: host
      shm_size: 64m
      extra_hosts: ["h1=10.0.0.1", "h2:10.0.0.2"]
      tags: ["api:extra"]
      no_cache: true
      pull: "true"
      platforms: [linux/amd64]
"#;
    let (dir, p) = project(text, &[("FROM_ENV", "env-value")]);
    let r = request(&p, "api", &BuildFlags::default());
    assert_eq!(r.image, "reg.example/api:1");
    assert_eq!(r.options.tags, vec!["api:extra", "reg.example/api:1"]);
    let want: BTreeMap<String, Option<String>> = [
        ("PLAIN", Some("1")),
        ("FROM_ENV", Some("env-value")),
        ("UNSET", None),
        ("INTERP", Some("dflt")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
    .collect();
    assert_eq!(r.options.build_args, want);
    assert_eq!(r.options.target, "test");
    assert_eq!(r.options.labels["a"], "b");
    assert_eq!(r.options.cache_from, vec!["x:1"]);
    assert_eq!(r.options.network_mode, "host");
    assert_eq!(r.options.shm_size, 64 * 1024 * 1024);
    assert_eq!(r.options.extra_hosts, vec!["h1:10.0.0.1", "h2:10.0.0.2"]);
    assert!(r.options.no_cache && r.options.pull);
    assert_eq!(r.options.platform, "linux/amd64");
    let BuildContext::Dir { dockerfile, .. } = &r.context else {
        panic!("{:?}", r.context)
    };
    assert_eq!(
        dockerfile,
        &Dockerfile::Path(dir.path().join("docker/Dockerfile.dev"))
    );
}

#[test]
fn flags_override_the_file() {
    let text = "name: app\nservices:\n  api:\n    build:\n      context: .\n      args: {V: file, W: keep}\n";
    let (_dir, p) = project(text, &[("X", "from-env")]);
    let flags = BuildFlags {
        no_cache: true,
        pull: true,
        quiet: true,
        build_args: vec!["V=flag".into(), "X".into(), "NOT_SET".into()],
        ssh: Vec::new(),
    };
    let r = request(&p, "api", &flags);
    assert_eq!(r.options.build_args["V"].as_deref(), Some("flag"));
    assert_eq!(r.options.build_args["W"].as_deref(), Some("keep"));
    assert_eq!(r.options.build_args["X"].as_deref(), Some("from-env"));
    assert!(!r.options.build_args.contains_key("NOT_SET"));
    assert!(r.options.no_cache && r.options.pull && r.options.quiet);
}

#[test]
fn inline_dockerfile_and_remote_context() {
    let text = r#"
name: app
services:
  inline:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        RUN true
  remote:
    build: https://127.0.0.1:9/ctx.tar
"#;
    let (_dir, p) = project(text, &[]);
    let r = request(&p, "inline", &BuildFlags::default());
    let BuildContext::Dir { dockerfile, .. } = &r.context else {
        panic!("{:?}", r.context)
    };
    assert_eq!(
        dockerfile,
        &Dockerfile::Inline("FROM busybox\nRUN true\n".into())
    );
    let r = request(&p, "remote", &BuildFlags::default());
    assert_eq!(
        r.context,
        BuildContext::Remote("https://127.0.0.1:9/ctx.tar".into())
    );
    assert_eq!(r.options.remote, "https://127.0.0.1:9/ctx.tar");
}

#[test]
fn extra_hosts_map_form() {
    let text = "name: app\nservices:\n  api:\n    build:\n      context: .\n      extra_hosts: {h: 10.0.0.9}\n";
    let (_dir, p) = project(text, &[]);
    let r = request(&p, "api", &BuildFlags::default());
    assert_eq!(r.options.extra_hosts, vec!["h:10.0.0.9"]);
}

#[test]
fn a_label_without_a_value_is_empty() {
    let text = "name: app\nservices:\n  api:\n    build:\n      context: .\n      labels: [flag, k=v]\n    labels: [other]\n";
    let (_dir, p) = project(text, &[]);
    let r = request(&p, "api", &BuildFlags::default());
    assert_eq!(r.options.labels["flag"], "");
    assert_eq!(r.options.labels["k"], "v");
    assert_eq!(p.services["api"].config.labels["other"], "");
}
