//! What the control plane remembers, under `<data-root>/network/`:
//! `networks/<id>.json` (one per network, with its pools and the IPAM cursor) and
//! `containers/<id>.json` (a container's network mode, requested endpoints and published
//! ports, and while it runs its netns and attached endpoints). Every file is written as temp
//! file + fsync + rename + directory fsync, so a crash leaves the old or the new version.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_api::models::container::{EndpointSettings, PortBinding};
use berth_api::vocab::NetworkMode;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Proto;
use crate::control_error::{ControlError, Result};
use crate::ipam::Pool;

/// A network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv4: bool,
    pub enable_ipv6: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub ipam_options: Option<BTreeMap<String, String>>,
    pub pools: Vec<Pool>,
    /// Whether the user gave the pools (`--subnet`); only then may endpoints ask for `--ip`.
    pub user_subnets: bool,
    /// The bridge device (bridge driver only).
    pub device: String,
    /// `bridge`, `host`, `none`: made by the daemon, never removed by users.
    pub predefined: bool,
}

impl NetworkRecord {
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
    /// Inter-container traffic allowed (`com.docker.network.bridge.enable_icc`, default true).
    pub fn icc(&self) -> bool {
        self.options
            .get("com.docker.network.bridge.enable_icc")
            .is_none_or(|v| berth_api::parse_bool(v))
    }
    pub fn masquerade(&self) -> bool {
        self.options
            .get("com.docker.network.bridge.enable_ip_masquerade")
            .is_none_or(|v| berth_api::parse_bool(v))
    }
    pub fn mtu(&self) -> Option<u32> {
        self.options
            .get("com.docker.network.driver.mtu")
            .and_then(|v| v.parse().ok())
            .filter(|m| *m > 0)
    }
    /// The default bridge's DNS rules apply (no embedded DNS, no aliases).
    pub fn is_default_bridge(&self) -> bool {
        self.predefined && self.is_bridge()
    }
    pub fn subnets(&self) -> Vec<IpNet> {
        self.pools.iter().map(|p| p.subnet).collect()
    }
}

/// A port to publish: `-p [ip:]host:container/proto` after range expansion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    #[serde(with = "proto_text")]
    pub proto: Proto,
    pub container_port: u16,
    pub host_ip: Option<IpAddr>,
    /// 0: pick one.
    pub host_port: u16,
    /// The end of a host port range (`8000-8010:80`); 0 or `host_port` for a single port.
    #[serde(default)]
    pub host_port_last: u16,
}

/// A container's endpoint on one network while it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub network_id: String,
    pub endpoint_id: String,
    pub ipv4: Option<IpNet>,
    pub ipv6: Option<IpNet>,
    pub mac: [u8; 6],
    pub host_if: String,
    pub container_if: String,
    pub gateway_v4: Option<IpAddr>,
    pub gateway_v6: Option<IpAddr>,
}

/// A published port as bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    #[serde(with = "proto_text")]
    pub proto: Proto,
    pub container_port: u16,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
}

/// What exists for a running container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Running {
    pub netns: PathBuf,
    pub attachments: Vec<Attachment>,
    pub published: Vec<Published>,
}

/// One requested endpoint: the network and the settings given at create or connect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Requested {
    pub network_id: String,
    pub settings: EndpointSettings,
}

/// A container, as the network side knows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerNet {
    pub id: String,
    pub name: String,
    /// `HostConfig.NetworkMode` as normalised at create (`bridge`, `host`, `none`,
    /// `container:<id>`, or a user network's name). Docker's string on disk.
    pub mode: NetworkMode,
    /// Endpoints in interface order (the first is the primary: its gateway is the default route).
    pub requested: Vec<Requested>,
    /// `PortBindings` as given (for inspect's `HostConfig`-style keys).
    pub port_bindings: BTreeMap<String, Option<Vec<PortBinding>>>,
    /// The ports to publish (bindings plus `-P`'s exposed ports).
    pub ports: Vec<PortSpec>,
    /// Exposed ports that are not published (shown in inspect's `Ports` as `null`).
    pub exposed: Vec<String>,
    /// `--dns`: where the embedded DNS server forwards names it does not know (the host's
    /// resolvers when empty).
    pub dns: Vec<String>,
    pub running: Option<Running>,
}

impl ContainerNet {
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// `Proto` as Docker spells it in records (`tcp`, `udp`).
mod proto_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Proto;

    pub fn serialize<S: Serializer>(p: &Proto, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Proto, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The directory layout and atomic file writes.
///
/// A container's record is in two parts: what lasts (mode, requested endpoints, ports) in the
/// data root, written durably and only when it changes, and its `running` part (netns,
/// attachments, published ports) in the exec root, a tmpfs: it changes at every start and
/// stop, and describes processes a reboot ends, so after one it is simply gone.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// `<exec-root>/network/containers`: the `running` parts.
    run: PathBuf,
    /// Per container: the lasting part as last written to disk.
    durable: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Containers whose lasting part is written without waiting for the disk (auto-removed
    /// ones: see [`Store::persist_container`]).
    ephemeral: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Store {
    pub fn open(data_root: &Path, exec_root: &Path) -> Result<Store> {
        let root = data_root.join("network");
        for d in ["networks", "containers"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| ControlError::io("create", &p, e))?;
        }
        let run = exec_root.join("network").join("containers");
        std::fs::create_dir_all(&run).map_err(|e| ControlError::io("create", &run, e))?;
        Ok(Store {
            root,
            run,
            durable: Arc::default(),
            ephemeral: Arc::default(),
        })
    }

    fn running_path(&self, id: &str) -> PathBuf {
        self.run.join(format!("{id}.json"))
    }

    fn path(&self, kind: &str, id: &str) -> PathBuf {
        self.root.join(kind).join(format!("{id}.json"))
    }

    fn load_all<T: DeserializeOwned>(&self, kind: &str) -> Vec<T> {
        let dir = self.root.join(kind);
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                // Temp files of a write the daemon did not finish.
                let _ = std::fs::remove_file(&p);
                continue;
            }
            match std::fs::read(&p).map(|b| serde_json::from_slice::<T>(&b)) {
                Ok(Ok(v)) => out.push(v),
                Ok(Err(e)) => {
                    tracing::warn!(path = %p.display(), error = %e, "skipping unreadable network record")
                }
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "skipping unreadable network record")
                }
            }
        }
        out
    }

    pub fn networks(&self) -> Vec<NetworkRecord> {
        self.load_all("networks")
    }

    pub fn containers(&self) -> Vec<ContainerNet> {
        let mut out: Vec<ContainerNet> = self.load_all("containers");
        let mut durable = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        for c in &mut out {
            if let Ok(lasting) = serde_json::to_vec(&ContainerNet {
                running: None,
                ..c.clone()
            }) {
                durable.insert(c.id.clone(), lasting);
            }
            let path = self.running_path(&c.id);
            match std::fs::read(&path).map(|b| serde_json::from_slice::<Running>(&b)) {
                Ok(Ok(r)) => c.running = Some(r),
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable running record");
                    c.running = None;
                }
                // Not running; or a record from before the split, with `running` inside.
                Err(_) => {}
            }
        }
        out
    }

    fn write<T: Serialize>(&self, kind: &str, id: &str, v: &T) -> Result<()> {
        let path = self.path(kind, id);
        let bytes =
            serde_json::to_vec(v).map_err(|e| ControlError::io("encode", &path, e.into()))?;
        if unchanged(&path, &bytes) {
            return Ok(());
        }
        write_atomic(&path, &bytes)
    }

    fn delete(&self, kind: &str, id: &str) -> Result<()> {
        let path = self.path(kind, id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ControlError::io("remove", &path, e)),
        }
    }

    pub fn save_network(&self, n: &NetworkRecord) -> Result<()> {
        self.write("networks", &n.id, n)
    }
    /// Save a network whose address allocations changed (an endpoint came or went): atomic,
    /// without waiting for the disk. The leases themselves are rebuilt from the running
    /// containers at start; a machine crash can only rewind the allocation cursor.
    pub fn save_network_allocations(&self, n: &NetworkRecord) -> Result<()> {
        let path = self.path("networks", &n.id);
        let bytes =
            serde_json::to_vec(n).map_err(|e| ControlError::io("encode", &path, e.into()))?;
        if unchanged(&path, &bytes) {
            return Ok(());
        }
        replace_atomic(&path, &bytes)
    }
    pub fn delete_network(&self, id: &str) -> Result<()> {
        self.delete("networks", id)
    }
    pub fn save_container(&self, c: &ContainerNet) -> Result<()> {
        let path = self.path("containers", &c.id);
        let lasting = serde_json::to_vec(&ContainerNet {
            running: None,
            ..c.clone()
        })
        .map_err(|e| ControlError::io("encode", &path, e.into()))?;
        {
            let mut durable = self.durable.lock().unwrap_or_else(|p| p.into_inner());
            if durable.get(&c.id) != Some(&lasting) {
                let ephemeral = self
                    .ephemeral
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&c.id);
                if ephemeral {
                    replace_atomic(&path, &lasting)?;
                } else {
                    write_atomic(&path, &lasting)?;
                }
                durable.insert(c.id.clone(), lasting);
            }
        }
        let run = self.running_path(&c.id);
        match &c.running {
            Some(r) => {
                let bytes = serde_json::to_vec(r)
                    .map_err(|e| ControlError::io("encode", &run, e.into()))?;
                replace_atomic(&run, &bytes)
            }
            None => match std::fs::remove_file(&run) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(ControlError::io("remove", &run, e))
                }
                _ => Ok(()),
            },
        }
    }
    /// From now on `id`'s lasting part is written without waiting for the disk: an
    /// auto-removed container's record only lives as long as its run, which a machine crash
    /// ends (and the daemon then removes it).
    pub fn set_ephemeral(&self, id: &str) {
        self.ephemeral
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
    }
    /// Makes `c`'s lasting part durable (an auto-removed container left created, not started)
    /// and writes it so from then on.
    pub fn persist_container(&self, c: &ContainerNet) -> Result<()> {
        let was = self
            .ephemeral
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&c.id);
        if was {
            self.durable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&c.id);
            self.save_container(c)?;
        }
        Ok(())
    }
    pub fn delete_container(&self, id: &str) -> Result<()> {
        self.ephemeral
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let _ = std::fs::remove_file(self.running_path(id));
        self.delete("containers", id)
    }
}

/// Whether `path` already holds exactly `bytes`: a record that did not change is not
/// rewritten (a daemon start on a full disk must write nothing).
fn unchanged(path: &Path, bytes: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|old| old == bytes)
}

/// Temp file, rename: readers see the old or the new record, without waiting for the disk.
/// A failed write (no space left) removes the temp file and leaves the old record.
fn replace_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let io = |op, e| ControlError::io(op, path, e);
    let done = std::fs::write(&tmp, bytes)
        .map_err(|e| io("write", e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io("rename", e)));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record")
    ))
}

/// Temp file, fsync, rename, fsync of the directory. A failed write (no space left)
/// removes the temp file and leaves the old record.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_path(path);
    let io = |op, e| ControlError::io(op, path, e);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
        f.write_all(bytes).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("fsync", e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| io("rename", e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_temp_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &dir.path().join("run")).unwrap();
        let n = NetworkRecord {
            id: "a".repeat(64),
            name: "appnet".into(),
            driver: "bridge".into(),
            pools: vec![Pool::new("10.1.0.0/24".parse().unwrap(), None, None, vec![]).unwrap()],
            ..Default::default()
        };
        s.save_network(&n).unwrap();
        std::fs::write(dir.path().join("network/networks/.x.json.tmp"), b"{").unwrap();
        let got = s.networks();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "appnet");
        assert_eq!(got[0].pools[0].gateway, Some("10.1.0.1".parse().unwrap()));
        assert!(!dir.path().join("network/networks/.x.json.tmp").exists());
        s.delete_network(&n.id).unwrap();
        assert!(s.networks().is_empty());
    }

    /// An auto-removed container's record is written at once but without waiting for the
    /// disk; making it durable writes it again (with the fsyncs).
    #[test]
    fn an_ephemeral_record_is_written_again_when_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &dir.path().join("run")).unwrap();
        let c = ContainerNet {
            id: "e".repeat(64),
            name: "brief".into(),
            mode: "none".into(),
            ..Default::default()
        };
        s.set_ephemeral(&c.id);
        s.save_container(&c).unwrap();
        let path = dir.path().join(format!("network/containers/{}.json", c.id));
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        s.save_container(&c).unwrap();
        let same = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        assert_eq!(ino, same, "an unchanged record was written again");
        s.persist_container(&c).unwrap();
        let persisted = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        assert_ne!(ino, persisted, "persisting did not write it");
        s.persist_container(&c).unwrap();
        let again = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        assert_eq!(persisted, again, "a durable record was persisted twice");
    }

    /// The mode is typed in memory and Docker's string on disk, so records written before
    /// it was typed read back the same.
    #[test]
    fn a_container_mode_is_stored_as_dockers_string() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &dir.path().join("run")).unwrap();
        for (i, mode) in ["bridge", "host", "none", "container:abc", "backend"]
            .into_iter()
            .enumerate()
        {
            let c = ContainerNet {
                id: i.to_string().repeat(64),
                mode: mode.into(),
                ..Default::default()
            };
            s.save_container(&c).unwrap();
            let path = dir.path().join(format!("network/containers/{}.json", c.id));
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.contains(&format!("\"mode\":\"{mode}\"")), "{text}");
        }
        let mut got: Vec<_> = s.containers().into_iter().map(|c| c.mode).collect();
        got.sort_by_key(|m| m.to_string());
        assert_eq!(got[2], NetworkMode::Container("abc".into()));
        assert_eq!(got[1], NetworkMode::Bridge);
    }

    /// The running part of a container's record lives in the exec root: the data root's file
    /// does not change at a start or stop, and after a reboot (an empty exec root) the
    /// container is simply not running.
    #[test]
    fn the_running_part_lives_in_the_exec_root() {
        let dir = tempfile::tempdir().unwrap();
        let run_root = dir.path().join("run");
        let s = Store::open(dir.path(), &run_root).unwrap();
        let mut c = ContainerNet {
            id: "c".repeat(64),
            name: "web".into(),
            mode: "bridge".into(),
            ..Default::default()
        };
        s.save_container(&c).unwrap();
        let data = dir.path().join(format!("network/containers/{}.json", c.id));
        let before = std::fs::metadata(&data).unwrap().modified().unwrap();
        c.running = Some(Running {
            netns: "/run/x".into(),
            attachments: Vec::new(),
            published: Vec::new(),
        });
        s.save_container(&c).unwrap();
        assert_eq!(
            std::fs::metadata(&data).unwrap().modified().unwrap(),
            before,
            "a start rewrote the lasting part"
        );
        let text = std::fs::read_to_string(&data).unwrap();
        assert!(!text.contains("/run/x"), "{text}");
        let reopened = Store::open(dir.path(), &run_root).unwrap();
        let got = reopened.containers();
        assert_eq!(got[0].running.as_ref().unwrap().netns, Path::new("/run/x"));
        // A reboot empties the exec root.
        std::fs::remove_dir_all(&run_root).unwrap();
        let rebooted = Store::open(dir.path(), &run_root).unwrap();
        assert!(rebooted.containers()[0].running.is_none());
        rebooted.delete_container(&c.id).unwrap();
        assert!(rebooted.containers().is_empty());
    }
}
