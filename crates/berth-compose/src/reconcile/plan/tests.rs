//! Golden tests of the convergence rules, and `apply` against a recording fake engine.

use std::cell::RefCell;

use berth_api::models::{
    ContainerCreateRequest, EndpointSettings, NetworkCreateRequest, VolumeCreateOptions,
};

use super::*;
use crate::reconcile::apply::{ApplyOptions, apply};
use crate::reconcile::engine::{ContainerStatus, Engine, EngineResult};

const APP: &str = r#"
name: app
services:
  web:
    image: nginx
    ports: ["8080:80"]
    depends_on:
      db: {condition: service_healthy}
  db:
    image: postgres
    volumes: ["data:/var/lib/postgresql/data"]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
  worker:
    image: busybox
    scale: 2
    networks: [back]
networks:
  back: {}
volumes:
  data: {}
"#;

fn project(text: &str) -> Project {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
    crate::loader::load(&crate::LoadOptions {
        working_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

/// What the daemon would hold after `project` was brought up.
fn observed_after_up(p: &Project) -> Observed {
    let mut o = Observed::default();
    for s in p.services.values() {
        for n in 1..=s.replicas() {
            o.containers.push(ObservedContainer {
                id: format!("id-{}-{n}", s.name),
                name: labels::container_name(&p.name, s, n),
                service: s.name.clone(),
                number: n,
                config_hash: labels::config_hash(s),
                state: "running".into(),
                ..Default::default()
            });
        }
    }
    for n in p.networks.values() {
        o.networks.insert(
            n.name.clone(),
            [(labels::PROJECT.to_string(), p.name.clone())].into(),
        );
    }
    for v in p.volumes.values() {
        o.volumes.insert(v.name.clone());
    }
    o
}

fn lines(actions: &[Action]) -> Vec<String> {
    actions.iter().map(|a| a.to_string()).collect()
}

#[test]
fn first_up_creates_everything_in_dependency_order() {
    let p = project(APP);
    let got = lines(&plan(&p, &Observed::default(), &UpOptions::default()).unwrap());
    assert_eq!(
        got,
        [
            "create network back",
            "create network default",
            "create volume data",
            "create app-db-1",
            "create app-web-1",
            "create app-worker-1",
            "create app-worker-2",
        ]
    );
}

#[test]
fn unchanged_up_changes_nothing() {
    let p = project(APP);
    let o = observed_after_up(&p);
    assert!(plan(&p, &o, &UpOptions::default()).unwrap().is_empty());
}

#[test]
fn only_the_changed_service_is_recreated() {
    let before = project(APP);
    let o = observed_after_up(&before);
    let after = project(&APP.replace("image: nginx", "image: nginx:1.27"));
    assert_eq!(
        lines(&plan(&after, &o, &UpOptions::default()).unwrap()),
        ["recreate app-web-1"]
    );
    let keep = UpOptions {
        no_recreate: true,
        ..Default::default()
    };
    assert!(plan(&after, &o, &keep).unwrap().is_empty());
    let force = UpOptions {
        force_recreate: true,
        services: vec!["db".into()],
        ..Default::default()
    };
    assert_eq!(
        lines(&plan(&before, &o, &force).unwrap()),
        ["recreate app-db-1"]
    );
}

#[test]
fn a_rebuilt_image_recreates_only_its_service() {
    let p = project(APP);
    let mut o = observed_after_up(&p);
    for c in &mut o.containers {
        c.labels
            .insert(labels::IMAGE.into(), format!("sha256:{}", c.service));
    }
    // The same id as the containers were made from: nothing to do.
    let same = UpOptions {
        image_ids: [("db".to_string(), "sha256:db".to_string())].into(),
        ..Default::default()
    };
    assert!(plan(&p, &o, &same).unwrap().is_empty());
    let rebuilt = UpOptions {
        image_ids: [("db".to_string(), "sha256:new".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(
        lines(&plan(&p, &o, &rebuilt).unwrap()),
        ["recreate app-db-1"]
    );
}

#[test]
fn scaling_adds_and_removes_the_highest_numbers() {
    let p = project(APP);
    let o = observed_after_up(&p);
    let up = |n| UpOptions {
        scale: [("worker".to_string(), n)].into(),
        ..Default::default()
    };
    assert_eq!(
        lines(&plan(&p, &o, &up(3)).unwrap()),
        ["create app-worker-3"]
    );
    assert_eq!(
        lines(&plan(&p, &o, &up(1)).unwrap()),
        ["remove app-worker-2"]
    );
    assert_eq!(
        lines(&plan(&p, &o, &up(0)).unwrap()),
        ["remove app-worker-2", "remove app-worker-1"]
    );
}

#[test]
fn stopped_containers_are_started_and_orphans_removed_on_request() {
    let p = project(APP);
    let mut o = observed_after_up(&p);
    o.containers[0].state = "exited".into();
    o.containers.push(ObservedContainer {
        id: "old".into(),
        name: "app-gone-1".into(),
        service: "gone".into(),
        number: 1,
        ..Default::default()
    });
    assert_eq!(
        lines(&plan(&p, &o, &UpOptions::default()).unwrap()),
        ["start app-db-1"]
    );
    assert_eq!(orphans(&p, &o).len(), 1);
    let rm = UpOptions {
        remove_orphans: true,
        ..Default::default()
    };
    assert_eq!(
        lines(&plan(&p, &o, &rm).unwrap()),
        ["remove app-gone-1", "start app-db-1"]
    );
}

#[test]
fn selected_services_bring_their_dependencies_unless_no_deps() {
    let p = project(APP);
    let web = UpOptions {
        services: vec!["web".into()],
        ..Default::default()
    };
    assert_eq!(
        lines(&plan(&p, &Observed::default(), &web).unwrap()),
        [
            "create network default",
            "create volume data",
            "create app-db-1",
            "create app-web-1"
        ]
    );
    let alone = UpOptions {
        no_deps: true,
        ..web
    };
    assert_eq!(
        lines(&plan(&p, &Observed::default(), &alone).unwrap()),
        ["create network default", "create app-web-1"]
    );
}

#[test]
fn a_missing_external_network_is_refused_before_anything_is_made() {
    let p = project(
        "services:\n  a:\n    image: x\n    networks: [ext]\nnetworks:\n  ext:\n    external: true\n",
    );
    assert_eq!(
        plan(&p, &Observed::default(), &UpOptions::default())
            .unwrap_err()
            .to_string(),
        "network ext declared as external, but could not be found"
    );
}

/// Records calls; every container is healthy at once (or unhealthy, with `sick`).
#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<String>>,
    sick: bool,
}

impl Engine for Fake {
    async fn observe(&self, _: &str) -> EngineResult<Observed> {
        Ok(Observed::default())
    }
    async fn create_network(&self, r: &NetworkCreateRequest) -> EngineResult<()> {
        self.calls.borrow_mut().push(format!("network {}", r.name));
        Ok(())
    }
    async fn create_volume(&self, r: &VolumeCreateOptions) -> EngineResult<()> {
        self.calls.borrow_mut().push(format!("volume {}", r.name));
        Ok(())
    }
    async fn create_container(
        &self,
        name: &str,
        r: &ContainerCreateRequest,
    ) -> EngineResult<String> {
        let labels = r.config.labels.clone().unwrap_or_default();
        assert_eq!(labels[labels::PROJECT], "app");
        assert_eq!(labels[labels::ONEOFF], "False");
        assert_eq!(labels[labels::IMAGE], "sha256:img");
        self.calls.borrow_mut().push(format!("create {name}"));
        Ok(format!("id-{name}"))
    }
    async fn connect(&self, net: &str, c: &str, _: &EndpointSettings) -> EngineResult<()> {
        self.calls.borrow_mut().push(format!("connect {c} {net}"));
        Ok(())
    }
    async fn start(&self, id: &str) -> EngineResult<()> {
        self.calls.borrow_mut().push(format!("start {id}"));
        Ok(())
    }
    async fn stop(&self, id: &str, _: Option<i64>) -> EngineResult<()> {
        self.calls.borrow_mut().push(format!("stop {id}"));
        Ok(())
    }
    async fn remove(&self, id: &str, _: bool) -> EngineResult<()> {
        self.calls.borrow_mut().push(format!("remove {id}"));
        Ok(())
    }
    async fn rename(&self, id: &str, name: &str) -> EngineResult<()> {
        self.calls.borrow_mut().push(format!("rename {id} {name}"));
        Ok(())
    }
    async fn anonymous_volumes(&self, _: &str) -> EngineResult<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    async fn status(&self, id: &str) -> EngineResult<ContainerStatus> {
        self.calls.borrow_mut().push(format!("status {id}"));
        Ok(ContainerStatus {
            status: "running".into(),
            health: Some(if self.sick { "unhealthy" } else { "healthy" }.into()),
            exit_code: 0,
        })
    }
    async fn image_id(&self, _: &str) -> EngineResult<Option<String>> {
        Ok(Some("sha256:img".into()))
    }
    async fn pull(&self, _: &str) -> EngineResult<()> {
        unreachable!("images are present")
    }
}

#[test]
fn apply_walks_the_graph_and_waits_for_health() {
    let p = project(APP);
    let actions = plan(&p, &Observed::default(), &UpOptions::default()).unwrap();
    let fake = Fake::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = ApplyOptions {
        services: p.services.keys().cloned().collect(),
        ..Default::default()
    };
    let result = rt
        .block_on(apply(
            &p,
            &Observed::default(),
            &actions,
            &fake,
            &options,
            &|_: &str, _: &str, _: &str| {},
        ))
        .unwrap();
    assert_eq!(result["worker"].len(), 2);
    let calls = fake.calls.borrow();
    let at = |s: &str| {
        calls
            .iter()
            .position(|c| c == s)
            .unwrap_or_else(|| panic!("no {s} in {calls:?}"))
    };
    assert!(at("network app_default") < at("create app-db-1"));
    assert!(at("volume app_data") < at("create app-db-1"));
    // web waits for db to be healthy before it is created.
    assert!(at("start id-app-db-1") < at("status id-app-db-1"));
    assert!(at("status id-app-db-1") < at("create app-web-1"));
}

#[test]
fn an_unhealthy_dependency_stops_the_walk_before_its_dependents() {
    let p = project(APP);
    let actions = plan(&p, &Observed::default(), &UpOptions::default()).unwrap();
    let fake = Fake {
        sick: true,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = ApplyOptions {
        services: p.services.keys().cloned().collect(),
        ..Default::default()
    };
    let e = rt
        .block_on(apply(
            &p,
            &Observed::default(),
            &actions,
            &fake,
            &options,
            &|_: &str, _: &str, _: &str| {},
        ))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "dependency failed to start: container app-db-1 is unhealthy"
    );
    assert!(!fake.calls.borrow().iter().any(|c| c == "create app-web-1"));
}

#[test]
fn dependents_with_restart_true_are_restarted_when_their_dependency_is_recreated() {
    let text = APP.replace(
        "db: {condition: service_healthy}",
        "db: {condition: service_healthy, restart: true}",
    );
    let before = project(&text);
    let o = observed_after_up(&before);
    let after = project(&text.replace("image: postgres", "image: postgres:17"));
    assert_eq!(
        lines(&plan(&after, &o, &UpOptions::default()).unwrap()),
        ["recreate app-db-1", "restart app-web-1"]
    );
}

/// A recreated replica is made beside the old one under a temporary name, then the old one is
/// stopped and removed and the new one renamed and started, as Compose v2 does.
#[test]
fn a_replacement_is_created_before_the_old_container_goes() {
    let before = project(APP);
    let o = observed_after_up(&before);
    let after = project(&APP.replace("image: nginx", "image: nginx:1.27"));
    let actions = plan(&after, &o, &UpOptions::default()).unwrap();
    let fake = Fake::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = ApplyOptions {
        services: after.services.keys().cloned().collect(),
        ..Default::default()
    };
    rt.block_on(apply(
        &after,
        &o,
        &actions,
        &fake,
        &options,
        &|_: &str, _: &str, _: &str| {},
    ))
    .unwrap();
    let calls = fake.calls.borrow();
    let web: Vec<&str> = calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.contains("web"))
        .collect();
    assert_eq!(
        web,
        [
            "create id-web-1_app-web-1",
            "stop id-web-1",
            "remove id-web-1",
            "rename id-id-web-1_app-web-1 app-web-1",
            "start id-id-web-1_app-web-1",
        ]
    );
}
