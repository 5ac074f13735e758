//! The loader through its public entry point, on files in a temporary project directory.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn project_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("My_App.")
        .tempdir()
        .unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn options(dir: &Path) -> LoadOptions {
    LoadOptions {
        working_dir: dir.to_path_buf(),
        environment: BTreeMap::new(),
        ..Default::default()
    }
}

fn load_in(files: &[(&str, &str)]) -> Result<Project, LoadError> {
    let dir = project_dir(files);
    load(&options(dir.path()))
}

#[test]
fn loads_the_spec_example_with_defaults() {
    let p = load_in(&[(
        "compose.yaml",
        r#"
services:
  frontend:
    image: example/webapp
    ports:
      - "443:8043"
    networks:
      - front-tier
      - back-tier
    configs:
      - httpd-config
    secrets:
      - server-certificate
  backend:
    image: example/database
    volumes:
      - db-data:/etc/data
    networks:
      - back-tier
volumes:
  db-data:
    driver: flocker
    driver_opts:
      size: "10GiB"
configs:
  httpd-config:
    external: true
secrets:
  server-certificate:
    external: true
networks:
  front-tier: {}
  back-tier: {}
"#,
    )])
    .unwrap();
    assert!(p.name.starts_with("my_app"), "{}", p.name);
    assert_eq!(p.services.len(), 2);
    let fe = &p.services["frontend"].config;
    assert_eq!(fe.ports[0].target, 8043);
    assert_eq!(fe.ports[0].published.as_deref(), Some("443"));
    assert_eq!(p.volumes["db-data"].name, format!("{}_db-data", p.name));
    assert_eq!(
        p.configs["httpd-config"].name.as_deref(),
        Some("httpd-config")
    );
    assert!(!p.networks.contains_key("default"));
}

#[test]
fn default_network_merge_of_files_and_project_name() {
    let dir = project_dir(&[
        (
            "compose.yaml",
            "name: shop\nservices:\n  web:\n    image: nginx\n    environment: [A=1, B=2]\n    command: echo hi\n",
        ),
        (
            "compose.prod.yaml",
            "services:\n  web:\n    image: nginx:1.27\n    environment:\n      B: 3\n  db:\n    image: postgres\n",
        ),
    ]);
    let mut o = options(dir.path());
    o.files = vec!["compose.yaml".into(), "compose.prod.yaml".into()];
    let p = load(&o).unwrap();
    assert_eq!(p.name, "shop");
    let web = &p.services["web"].config;
    assert_eq!(web.image.as_deref(), Some("nginx:1.27"));
    assert_eq!(web.environment["A"].as_deref(), Some("1"));
    assert_eq!(web.environment["B"].as_deref(), Some("3"));
    assert_eq!(
        web.command,
        Some(vec!["echo".to_string(), "hi".to_string()])
    );
    assert!(web.networks.contains_key("default"));
    assert_eq!(p.networks["default"].name, "shop_default");
    assert_eq!(p.config_files.len(), 2);
    o.project_name = Some("other".into());
    assert_eq!(load(&o).unwrap().name, "other");
    o.project_name = Some("Bad Name".into());
    assert!(load(&o).is_err());
}

#[test]
fn interpolation_reads_dot_env_and_the_shell_wins() {
    let dir = project_dir(&[
        (".env", "TAG=1.0\nPORT=8080\n"),
        (
            "compose.yaml",
            "services:\n  web:\n    image: \"nginx:${TAG}\"\n    ports: [\"${PORT:-80}:80\"]\n    environment:\n      HOME_DIR: $$HOME\n",
        ),
    ]);
    let mut o = options(dir.path());
    o.environment.insert("TAG".into(), "2.0".into());
    let p = load(&o).unwrap();
    let web = &p.services["web"].config;
    assert_eq!(web.image.as_deref(), Some("nginx:2.0"));
    assert_eq!(web.ports[0].published.as_deref(), Some("8080"));
    assert_eq!(web.environment["HOME_DIR"].as_deref(), Some("$HOME"));
}

#[test]
fn anchors_merge_keys_extends_and_profiles() {
    let dir = project_dir(&[
        (
            "base.yaml",
            "services:\n  common:\n    image: busybox\n    volumes: [\"./data:/data\"]\n",
        ),
        (
            "compose.yaml",
            r#"
x-common: &common
  restart: always
  labels: {team: a}
services:
  web:
    <<: *common
    extends: {file: base.yaml, service: common}
    command: ["sleep", "1"]
  debug:
    image: busybox
    profiles: [debug]
"#,
        ),
    ]);
    let p = load(&options(dir.path())).unwrap();
    let web = &p.services["web"].config;
    assert_eq!(web.restart.as_deref(), Some("always"));
    assert_eq!(web.labels["team"], "a");
    assert_eq!(web.image.as_deref(), Some("busybox"));
    assert_eq!(
        web.volumes[0].source.as_deref(),
        Some(dir.path().join("data").to_str().unwrap())
    );
    assert!(!p.services.contains_key("debug"));
    assert!(p.disabled.contains_key("debug"));
    let mut o = options(dir.path());
    o.profiles = vec!["debug".into()];
    assert!(load(&o).unwrap().services.contains_key("debug"));
    let mut o = options(dir.path());
    o.environment
        .insert("COMPOSE_PROFILES".into(), "debug".into());
    assert!(load(&o).unwrap().services.contains_key("debug"));
}

#[test]
fn finds_the_file_upwards_and_honours_compose_file() {
    let dir = project_dir(&[
        ("docker-compose.yml", "services:\n  a:\n    image: x\n"),
        ("other.yaml", "services:\n  b:\n    image: y\n"),
        ("sub/deeper/keep", ""),
    ]);
    let mut o = options(&dir.path().join("sub/deeper"));
    let p = load(&o).unwrap();
    assert!(p.services.contains_key("a"));
    assert_eq!(p.working_dir, dir.path());
    o.working_dir = dir.path().to_path_buf();
    o.environment
        .insert("COMPOSE_FILE".into(), "other.yaml".into());
    assert!(load(&o).unwrap().services.contains_key("b"));
}

#[test]
fn include_adds_the_other_projects_resources() {
    let p = load_in(&[
        ("lib/compose.yaml", "services:\n  cache:\n    image: redis\n    env_file: vars.env\n"),
        ("lib/vars.env", "MODE=lib\n"),
        ("compose.yaml", "include: [lib/compose.yaml]\nservices:\n  web:\n    image: x\n    depends_on: [cache]\n"),
    ])
    .unwrap();
    assert_eq!(
        p.services["cache"].config.environment["MODE"].as_deref(),
        Some("lib")
    );
    assert_eq!(
        p.services["web"].config.depends_on["cache"].condition,
        "service_started"
    );
}

fn error_of(text: &str) -> String {
    load_in(&[("compose.yaml", text)]).unwrap_err().to_string()
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let e = error_of("services:\n  web:\n    image: x\n   bad: [\n");
    assert!(e.contains("line") && e.contains("column"), "{e}");
    let e = error_of("services:\n  web:\n    image: x\n    foo: 1\n");
    assert!(
        e.ends_with("services.web Additional property foo is not allowed"),
        "{e}"
    );
    let e = error_of("services:\n  web:\n    image: [x]\n");
    assert!(e.contains("services.web.image must be a string"), "{e}");
    let e = error_of(
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
    );
    assert!(e.starts_with("dependency cycle detected: "), "{e}");
    let e = error_of("services:\n  web:\n    image: \"${NOPE:?NOPE must be set}\"\n");
    assert!(
        e.contains("required variable NOPE is missing a value: NOPE must be set"),
        "{e}"
    );
    let e = error_of("services:\n  web:\n    image: x\n    env_file: missing.env\n");
    assert!(e.contains("missing.env not found"), "{e}");
    let e = error_of("services:\n  web:\n    image: x\n    networks: [front]\n");
    assert_eq!(
        e,
        "service \"web\" refers to undefined network front: invalid compose project"
    );
    let e = error_of("services:\n  web:\n    image: x\n    volumes: [\"data:/d\"]\n");
    assert_eq!(
        e,
        "service \"web\" refers to undefined volume data: invalid compose project"
    );
    let e = error_of("services:\n  web:\n    image: x\n    container_name: one\n    scale: 2\n");
    assert!(e.contains("container name must be unique"), "{e}");
    let e = error_of("services:\n  web:\n    image: x\n    depends_on: [db]\n");
    assert!(e.contains("depends on undefined service \"db\""), "{e}");
    let e = error_of("services:\n  web:\n    command: x\n");
    assert!(e.contains("neither an image nor a build context"), "{e}");
    let e = error_of("services:\n  web:\n    image: x\n    ports: [\"a:b\"]\n");
    assert!(e.contains("invalid port"), "{e}");
    let dir = project_dir(&[]);
    assert_eq!(
        load(&options(dir.path())).unwrap_err().to_string(),
        "no configuration file provided: not found"
    );
}

#[test]
fn project_names_are_normalised_as_compose_does() {
    assert_eq!(normalize_project_name("My_App.v2"), "my_appv2");
    assert_eq!(normalize_project_name("_-web"), "web");
}

#[test]
fn reset_and_override_tags_in_an_override_file() {
    let dir = project_dir(&[
        (
            "compose.yaml",
            "services:\n  web:\n    image: x\n    ports: [\"80:80\"]\n    environment: {A: \"1\", B: \"2\"}\n",
        ),
        (
            "compose.override.yaml",
            "services:\n  web:\n    ports: !reset []\n    environment: !override {C: \"3\"}\n",
        ),
    ]);
    // Found beside compose.yaml without -f, as Compose does.
    let p = load(&options(dir.path())).unwrap();
    assert_eq!(p.config_files.len(), 2);
    let web = &p.services["web"].config;
    assert!(web.ports.is_empty());
    assert_eq!(web.environment.len(), 1);
    assert_eq!(web.environment["C"].as_deref(), Some("3"));
}

#[test]
fn stdin_project_directory_and_compose_project_name() {
    let dir = project_dir(&[(
        "proj/.env",
        "COMPOSE_PROJECT_NAME=from-dotenv\nIMG=alpine\n",
    )]);
    let mut o = options(dir.path());
    o.files = vec!["-".into()];
    o.stdin = Some("services:\n  a:\n    image: ${IMG}\n".into());
    o.project_directory = Some("proj".into());
    let p = load(&o).unwrap();
    assert_eq!(p.name, "from-dotenv");
    assert_eq!(p.working_dir, dir.path().join("proj"));
    assert_eq!(p.services["a"].config.image.as_deref(), Some("alpine"));
    assert!(p.config_files.is_empty());
    o.environment
        .insert("COMPOSE_PROJECT_NAME".into(), "from-shell".into());
    assert_eq!(load(&o).unwrap().name, "from-shell");
}

#[test]
fn interpolated_numbers_and_booleans_are_cast_as_compose_does() {
    let dir = project_dir(&[(
        "compose.yaml",
        "services:\n  web:\n    image: \"${TAG}\"\n    scale: ${N}\n    privileged: ${PRIV}\n    ports:\n      - target: ${PORT}\n        published: \"8080\"\n",
    )]);
    let mut o = options(dir.path());
    for (k, v) in [("TAG", "123"), ("N", "2"), ("PRIV", "true"), ("PORT", "80")] {
        o.environment.insert(k.into(), v.into());
    }
    let p = load(&o).unwrap();
    let web = &p.services["web"];
    assert_eq!(web.config.image.as_deref(), Some("123"));
    assert_eq!(web.replicas(), 2);
    assert!(web.config.privileged);
    assert_eq!(web.config.ports[0].target, 80);
}

/// Integers the schema also takes as strings load as integers, and hash as Compose does.
#[test]
fn integer_fields_given_as_strings() {
    let p = load_in(&[(
        "compose.yaml",
        "services:\n  a:\n    image: busybox\n    cpu_shares: \"512\"\n    pids_limit: \"100\"\n",
    )])
    .unwrap();
    let a = &p.services["a"];
    assert_eq!(a.config.cpu_shares, Some(512));
    assert_eq!(a.config.pids_limit, Some(100));
    assert_eq!(a.hash_view["cpu_shares"], serde_json::json!(512));
}
