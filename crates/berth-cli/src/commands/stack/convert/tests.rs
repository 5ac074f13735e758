//! The conversion against what the docker CLI's stack makes of the same file.

use super::*;

fn load(text: &str) -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
    std::fs::write(dir.path().join("token.txt"), "s3cret").unwrap();
    let p = berth_compose::load(&berth_compose::LoadOptions {
        working_dir: dir.path().to_path_buf(),
        project_name: Some("shop".into()),
        ..Default::default()
    })
    .unwrap();
    (dir, p)
}

#[test]
fn deploy_section_becomes_the_service_spec() {
    let (_dir, p) = load(
        r#"
services:
  web:
    image: nginx:1
    command: ["nginx", "-g", "daemon off;"]
    environment: {B: "2", A: "1"}
    labels: {tier: front}
    ports: ["8080:80"]
    networks: [front]
    secrets: [token]
    restart: on-failure:3
    deploy:
      mode: replicated
      replicas: 3
      labels: {owner: team}
      endpoint_mode: dnsrr
      resources:
        limits: {cpus: "0.5", memory: 64m, pids: 100}
        reservations: {cpus: "0.25", memory: 16m}
      placement:
        constraints: [node.role==manager]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      update_config: {parallelism: 2, delay: 10s, order: start-first}
      rollback_config: {monitor: 1m}
  agent:
    image: busybox
    deploy: {mode: global}
networks:
  front: {attachable: true}
secrets:
  token: {file: ./token.txt}
"#,
    );
    let s = convert("shop", &p).unwrap();
    assert_eq!(
        s.networks.keys().collect::<Vec<_>>(),
        ["shop_default", "shop_front"]
    );
    assert_eq!(s.networks["shop_front"]["Driver"], "overlay");
    assert_eq!(s.networks["shop_front"]["Attachable"], true);
    assert_eq!(s.networks["shop_front"]["Labels"][NAMESPACE], "shop");
    assert_eq!(s.secrets[0].name, "shop_token");
    assert_eq!(s.secrets[0].data, b"s3cret");

    let web = &s.services["web"];
    assert_eq!(web["Name"], "shop_web");
    assert_eq!(web["Labels"][NAMESPACE], "shop");
    assert_eq!(web["Labels"][IMAGE], "nginx:1");
    assert_eq!(web["Labels"]["owner"], "team");
    assert_eq!(web["Mode"], json!({"Replicated": {"Replicas": 3}}));
    let cs = &web["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Args"], json!(["nginx", "-g", "daemon off;"]));
    assert_eq!(cs["Env"], json!(["A=1", "B=2"]));
    assert_eq!(cs["Labels"]["tier"], "front");
    assert_eq!(cs["Labels"][NAMESPACE], "shop");
    assert_eq!(cs["Secrets"][0]["SecretName"], "shop_token");
    assert_eq!(cs["Secrets"][0]["File"]["Name"], "token");
    let task = &web["TaskTemplate"];
    assert_eq!(
        task["Networks"],
        json!([{"Target": "shop_front", "Aliases": ["web"]}])
    );
    assert_eq!(task["Resources"]["Limits"]["NanoCPUs"], 500_000_000);
    assert_eq!(task["Resources"]["Limits"]["MemoryBytes"], 64 << 20);
    assert_eq!(task["Resources"]["Limits"]["Pids"], 100);
    assert_eq!(task["Resources"]["Reservations"]["NanoCPUs"], 250_000_000);
    assert_eq!(
        task["RestartPolicy"],
        json!({"Condition": "on-failure", "MaxAttempts": 3})
    );
    assert_eq!(
        task["Placement"]["Constraints"],
        json!(["node.role==manager"])
    );
    assert_eq!(
        task["Placement"]["Preferences"],
        json!([{"Spread": {"SpreadDescriptor": "node.labels.zone"}}])
    );
    assert_eq!(task["Placement"]["MaxReplicas"], 2);
    assert_eq!(web["EndpointSpec"]["Mode"], "dnsrr");
    assert_eq!(
        web["EndpointSpec"]["Ports"],
        json!([{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}])
    );
    assert_eq!(
        web["UpdateConfig"],
        json!({"Parallelism": 2, "Delay": 10_000_000_000i64, "Order": "start-first"})
    );
    assert_eq!(
        web["RollbackConfig"],
        json!({"Parallelism": 1, "Monitor": 60_000_000_000i64})
    );
    assert_eq!(s.services["agent"]["Mode"], json!({"Global": {}}));
}

#[test]
fn cpus_parse_exactly() {
    assert_eq!(nano_cpus(Some(&json!("0.1"))).unwrap(), Some(100_000_000));
    assert_eq!(nano_cpus(Some(&json!(2))).unwrap(), Some(2_000_000_000));
    assert!(nano_cpus(Some(&json!("x"))).is_err());
}
