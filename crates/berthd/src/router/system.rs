//! `/_ping`, `/version`, `/info`, `/system/df`.

use std::collections::{BTreeMap, HashSet};

use axum::extract::{Extension, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use berth_api::models::system::{
    ComponentVersion, IndexInfo, Platform, RegistryServiceConfig, Runtime,
};
use berth_api::models::{DiskUsage, SystemInfo, SystemVersion};
use berth_api::{MAX_API_VERSION, MIN_API_VERSION};
use chrono::{SecondsFormat, Utc};

use super::images::summary;
use super::{RequestVersion, Result, join_error, ok_json};
use crate::state::AppState;
use crate::sysinfo;

const RUSTC_VERSION: &str = env!("BERTH_RUSTC_VERSION");

pub async fn ping(State(state): State<AppState>) -> Response {
    // dockerd's `Cluster.Status()`: the local node state, with the role when active
    // (`active/manager`, `active/worker`); a manager waiting for its unlock key is `locked`.
    let swarm = if state.swarm.handle().await.is_some() {
        "active/manager"
    } else if state.swarm.locked().await.is_some() {
        "locked"
    } else if state.swarm.worker_info().await.is_some() {
        "active/worker"
    } else {
        "inactive"
    };
    let mut response =
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("cache-control", "no-cache, no-store, must-revalidate"),
        ("pragma", "no-cache"),
        ("builder-version", ""),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers.insert(
        HeaderName::from_static("swarm"),
        HeaderValue::from_static(swarm),
    );
    response
}

pub async fn version() -> Response {
    let kernel = sysinfo::kernel_version();
    let mut details = BTreeMap::new();
    for (k, v) in [
        ("ApiVersion", MAX_API_VERSION.to_string()),
        ("Arch", sysinfo::go_arch().to_string()),
        ("BuildTime", String::new()),
        ("Experimental", "false".to_string()),
        ("GitCommit", String::new()),
        ("GoVersion", RUSTC_VERSION.to_string()),
        ("KernelVersion", kernel.clone()),
        ("MinAPIVersion", MIN_API_VERSION.to_string()),
        ("Os", "linux".to_string()),
    ] {
        details.insert(k.to_string(), v);
    }
    ok_json(&SystemVersion {
        platform: Platform {
            name: "Berth Engine".into(),
        },
        components: vec![ComponentVersion {
            name: "Engine".into(),
            version: crate::VERSION.into(),
            details,
        }],
        version: crate::VERSION.into(),
        api_version: MAX_API_VERSION.to_string(),
        min_api_version: MIN_API_VERSION.to_string(),
        git_commit: String::new(),
        go_version: RUSTC_VERSION.into(),
        os: "linux".into(),
        arch: sysinfo::go_arch().into(),
        kernel_version: kernel,
        experimental: false,
        build_time: String::new(),
    })
}

pub async fn info(State(state): State<AppState>) -> Result<Response> {
    let store = state.images.clone();
    let images = tokio::task::spawn_blocking(move || store.images().len())
        .await
        .map_err(join_error)?;
    let (containers, running, paused, stopped) = state.containers.counts();
    let (os, os_version) = sysinfo::operating_system();
    let registry = &state.config.registry;
    let mut index_configs = BTreeMap::new();
    index_configs.insert(
        "docker.io".to_string(),
        IndexInfo {
            name: "docker.io".into(),
            mirrors: registry.mirrors.clone(),
            secure: true,
            official: true,
        },
    );
    // Insecure registries named in the configuration (loopback ones are the CIDRs below),
    // and registries with mirrors of their own.
    // A CIDR entry is listed with the CIDRs, as dockerd lists it.
    let (cidrs, names): (Vec<&String>, Vec<&String>) = registry
        .insecure_registries
        .iter()
        .partition(|name| name.parse::<ipnet::IpNet>().is_ok());
    for name in names {
        index_configs.insert(
            name.clone(),
            IndexInfo {
                name: name.clone(),
                mirrors: Vec::new(),
                secure: false,
                official: false,
            },
        );
    }
    for (name, mirrors) in &registry.mirrors_per_registry {
        let options = registry.remote_options();
        let entry = index_configs
            .entry(name.clone())
            .or_insert_with(|| IndexInfo {
                name: name.clone(),
                mirrors: Vec::new(),
                secure: berth_registry::client::is_secure(name, &options),
                official: name == "docker.io",
            });
        entry.mirrors = mirrors.clone();
    }
    let mut runtimes = BTreeMap::new();
    runtimes.insert(
        "berth".to_string(),
        Runtime {
            path: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "berthd".into()),
            runtime_args: None,
        },
    );
    for (name, rt) in &state.config.runtimes {
        runtimes.insert(
            name.clone(),
            Runtime {
                path: rt.path.display().to_string(),
                runtime_args: (!rt.runtime_args.is_empty()).then(|| rt.runtime_args.clone()),
            },
        );
    }
    // dockerd's rootless mode lists itself and says when limits cannot be set.
    let rootless = crate::rootless::is_child();
    let cgroup_root = std::path::Path::new("/sys/fs/cgroup");
    let no_cgroups = berth_container::validate::cgroup_limits_unavailable(cgroup_root);
    // Per controller: a rootless daemon's delegated cgroup may lack some.
    let has = |c: &str| berth_runtime::cgroups::controller_available(cgroup_root, c);
    let info = SystemInfo {
        id: state.id.clone(),
        containers,
        containers_running: running,
        containers_paused: paused,
        containers_stopped: stopped,
        images: images as i64,
        driver: "overlayfs".into(),
        driver_status: vec![["driver-type".into(), "berth overlay".into()]],
        docker_root_dir: state.config.data_root.display().to_string(),
        plugins: berth_api::models::system::PluginsInfo {
            volume: vec!["local".into()],
            network: vec!["bridge".into(), "host".into(), "none".into()],
            authorization: None,
            log: vec!["json-file".into()],
        },
        memory_limit: has("memory"),
        swap_limit: false,
        cpu_cfs_period: has("cpu"),
        cpu_cfs_quota: has("cpu"),
        cpu_shares: has("cpu"),
        cpu_set: has("cpuset"),
        pids_limit: has("pids"),
        oom_kill_disable: false,
        ipv4_forwarding: sysinfo::ipv4_forwarding(),
        debug: state.config.debug,
        nfd: sysinfo::open_fds(),
        ngoroutines: 0,
        system_time: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        logging_driver: "json-file".into(),
        cgroup_driver: if no_cgroups { "none" } else { "cgroupfs" }.into(),
        cgroup_version: sysinfo::cgroup_version().into(),
        nevents_listener: state.events.listeners() as i64,
        kernel_version: sysinfo::kernel_version(),
        operating_system: os,
        os_version,
        os_type: "linux".into(),
        architecture: std::env::consts::ARCH.into(),
        ncpu: sysinfo::ncpu(),
        mem_total: sysinfo::mem_total(),
        index_server_address: "https://index.docker.io/v1/".into(),
        registry_config: RegistryServiceConfig {
            insecure_registry_cidrs: ["::1/128", "127.0.0.0/8"]
                .into_iter()
                .map(str::to_string)
                .chain(cidrs.into_iter().cloned())
                .collect(),
            index_configs,
            mirrors: registry.mirrors.clone(),
        },
        name: sysinfo::hostname(),
        labels: state.config.labels.clone(),
        server_version: crate::VERSION.into(),
        runtimes,
        default_runtime: state.config.default_runtime.clone(),
        swarm: super::swarm::info_section(&state).await,
        live_restore_enabled: true,
        isolation: String::new(),
        init_binary: String::new(),
        // dockerd lists `name=userns` when containers are remapped.
        security_options: std::iter::once("name=seccomp,profile=builtin".to_string())
            .chain(state.config.remap.map(|_| "name=userns".to_string()))
            .chain(rootless.then(|| "name=rootless".to_string()))
            .collect(),
        warnings: crate::rootless::info_warnings(rootless, no_cgroups, &has),
        ..Default::default()
    };
    Ok(ok_json(&info))
}

pub async fn disk_usage(
    State(state): State<AppState>,
    Extension(RequestVersion(version)): Extension<RequestVersion>,
) -> Result<Response> {
    let st = state.clone();
    let usage = tokio::task::spawn_blocking(move || {
        let images = st.images.images();
        let shared = st.images.shared_sizes();
        let mut seen = HashSet::new();
        let mut layers_size: u64 = 0;
        for image in &images {
            for layer in &image.layers {
                if seen.insert(layer.chain_id.clone()) {
                    layers_size += layer.size;
                }
            }
        }
        let rows = images
            .iter()
            .map(|image| {
                let mut row = summary(image, &image.repo_tags);
                row.shared_size = shared.get(&image.id).map_or(0, |s| *s as i64);
                row.containers = st.containers.count_using(&image.id);
                if !version.at_least(1, 44) {
                    row.virtual_size = Some(row.size);
                }
                row
            })
            .collect();
        DiskUsage {
            layers_size: layers_size as i64,
            images: rows,
            containers: st
                .ctrs
                .list(true, None, berth_container::ListFilter::default())
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    c.size_rw = Some(st.ctrs.size_rw(&c.id) as i64);
                    c.size_root_fs = Some(st.ctrs.size_root_fs(&c.id) as i64);
                    serde_json::to_value(c).unwrap_or_default()
                })
                .collect(),
            volumes: st
                .ctrs
                .volume_usage()
                .into_iter()
                .map(|v| serde_json::to_value(v).unwrap_or_default())
                .collect(),
            build_cache: super::build_cache_usage(&st),
        }
    })
    .await
    .map_err(join_error)?;
    Ok(ok_json(&usage))
}
