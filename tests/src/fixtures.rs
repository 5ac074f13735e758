//! Test images built locally: a busybox image from Debian's `busybox-static` (`/bin/busybox`) and
//! small extra layers, packed as docker-archive or OCI-layout tars exactly as `docker save` and
//! other tools write them. Output is deterministic, so the same spec always has the same id.

use std::io::Write;

use sha2::{Digest as _, Sha256};

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked in the test image's /bin.
const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "echo",
    "cat",
    "ls",
    "true",
    "false",
    "id",
    "ps",
    "sleep",
    "env",
    "hostname",
    "mkdir",
    "rm",
    "touch",
    "wc",
    "grep",
    "head",
    "tail",
    "uname",
    "ping",
    "wget",
    "nc",
    "df",
    "mount",
    "top",
    "stat",
    "date",
    "kill",
    "chmod",
    "chown",
    "ln",
    "pwd",
    "test",
    "printf",
    "seq",
    "tr",
    "sort",
    "dd",
    "cp",
    "mv",
    "find",
    "xargs",
    "sed",
    "awk",
    "yes",
    "whoami",
    "ip",
    "ifconfig",
    "nslookup",
    "httpd",
    "du",
    "readlink",
    "realpath",
    "basename",
    "dirname",
    "md5sum",
    "sha256sum",
    "stty",
    "tty",
    "reset",
    "umount",
    "init",
    "vi",
    "less",
    "more",
    "tee",
    "wait",
];

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What goes into a layer tar.
pub enum Entry<'a> {
    File {
        path: &'a str,
        data: &'a [u8],
        mode: u32,
    },
    Dir {
        path: &'a str,
        mode: u32,
    },
    Symlink {
        path: &'a str,
        target: &'a str,
    },
}

/// An uncompressed layer tar with fixed mtimes and root ownership.
pub fn layer_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::File { path, data, mode } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, path, *data)
                    .expect("append file");
            }
            Entry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder
                    .append_data(&mut header, path, std::io::empty())
                    .expect("append dir");
            }
            Entry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, path, target)
                    .expect("append symlink");
            }
        }
    }
    builder.into_inner().expect("finish layer tar")
}

/// The base layer: busybox with its applets, a passwd/group, and the usual directories.
pub fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("{BUSYBOX} is needed for test images (apt-get install busybox-static): {e}")
    });
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\nwww:x:33:33:www:/var/www:/bin/false\n";
    let group = b"root:x:0:\nnogroup:x:65534:\nwww:x:33:\n";
    let mut entries = vec![
        Entry::Dir {
            path: "bin/",
            mode: 0o755,
        },
        Entry::File {
            path: "bin/busybox",
            data: &busybox,
            mode: 0o755,
        },
    ];
    let links: Vec<String> = APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    for link in &links {
        entries.push(Entry::Symlink {
            path: link,
            target: "busybox",
        });
    }
    for dir in [
        "dev/", "etc/", "home/", "proc/", "root/", "sys/", "usr/", "var/", "var/www/",
    ] {
        entries.push(Entry::Dir {
            path: dir,
            mode: 0o755,
        });
    }
    entries.push(Entry::Dir {
        path: "tmp/",
        mode: 0o1777,
    });
    entries.push(Entry::Symlink {
        path: "usr/bin",
        target: "../bin",
    });
    entries.push(Entry::File {
        path: "etc/passwd",
        data: passwd,
        mode: 0o644,
    });
    entries.push(Entry::File {
        path: "etc/group",
        data: group,
        mode: 0o644,
    });
    layer_tar(&entries)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip finish")
}

/// An image to pack: its layers (uncompressed tars) and the config fields tests care about.
#[derive(Clone)]
pub struct ImageSpec {
    pub tags: Vec<String>,
    pub layers: Vec<Vec<u8>>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub created: String,
    /// Store layers gzip-compressed in the archive (as registries and `docker save` of pulled images do).
    pub gzip_layers: bool,
    /// The config's `architecture` and `variant`.
    pub architecture: String,
    pub variant: Option<String>,
}

impl ImageSpec {
    /// The busybox image, tagged as given (no tag when `None`).
    pub fn busybox(tag: Option<&str>) -> ImageSpec {
        ImageSpec {
            tags: tag.map(|t| vec![t.to_string()]).unwrap_or_default(),
            layers: vec![busybox_layer()],
            cmd: vec!["sh".into()],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            labels: Vec::new(),
            created: "2026-11-01T10:00:00.000000000Z".into(),
            gzip_layers: false,
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// The platform the config declares (`linux/<architecture>[/<variant>]`).
    pub fn platform(mut self, architecture: &str, variant: Option<&str>) -> Self {
        self.architecture = architecture.into();
        self.variant = variant.map(Into::into);
        self
    }

    pub fn tag(mut self, tag: &str) -> Self {
        self.tags.push(tag.to_string());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Adds a layer holding the given files (mode 0644).
    pub fn file_layer(mut self, files: &[(&str, &[u8])]) -> Self {
        let entries: Vec<Entry<'_>> = files
            .iter()
            .map(|(path, data)| Entry::File {
                path,
                data,
                mode: 0o644,
            })
            .collect();
        self.layers.push(layer_tar(&entries));
        self
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.layers
            .iter()
            .map(|l| format!("sha256:{}", sha256_hex(l)))
            .collect()
    }

    /// The image config JSON; its sha256 is the image id.
    pub fn config_json(&self) -> Vec<u8> {
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let history: Vec<serde_json::Value> = (0..self.layers.len())
            .map(|i| {
                serde_json::json!({
                    "created": self.created,
                    "created_by": format!("/bin/sh -c #(nop) ADD layer {i}"),
                })
            })
            .collect();
        let mut config = serde_json::json!({
            "architecture": self.architecture,
            "os": "linux",
            "created": self.created,
            "config": {
                "Cmd": self.cmd,
                "Env": self.env,
                "Labels": if labels.is_empty() { serde_json::Value::Null } else { labels.into() },
            },
            "rootfs": { "type": "layers", "diff_ids": self.diff_ids() },
            "history": history,
        });
        if let Some(variant) = &self.variant {
            config["variant"] = variant.clone().into();
        }
        serde_json::to_vec(&config).expect("config json")
    }

    /// `sha256:<hex>` of the config: the id Docker and Berth give this image.
    pub fn id(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.config_json()))
    }

    fn layer_blob(&self, layer: &[u8]) -> Vec<u8> {
        if self.gzip_layers {
            gzip(layer)
        } else {
            layer.to_vec()
        }
    }

    /// A docker-archive tar as classic `docker save` writes it (`manifest.json`, `<id>.json`,
    /// `<n>/layer.tar`).
    pub fn docker_archive(&self) -> Vec<u8> {
        let config = self.config_json();
        let config_name = format!("{}.json", sha256_hex(&config));
        let mut files: Vec<(String, Vec<u8>)> = vec![(config_name.clone(), config)];
        let mut layer_paths = Vec::new();
        for layer in &self.layers {
            let blob = self.layer_blob(layer);
            let path = format!("{}/layer.tar", sha256_hex(&blob));
            if !layer_paths.contains(&path) {
                files.push((path.clone(), blob));
            }
            layer_paths.push(path);
        }
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": self.tags,
            "Layers": layer_paths,
        }]);
        files.push((
            "manifest.json".into(),
            serde_json::to_vec(&manifest).expect("manifest"),
        ));
        pack(&files)
    }

    /// An OCI image-layout tar (`oci-layout`, `index.json`, `blobs/sha256/...`), tagged through
    /// the `org.opencontainers.image.ref.name` annotation with the first tag's full name.
    pub fn oci_archive(&self) -> Vec<u8> {
        let config = self.config_json();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut layer_descriptors = Vec::new();
        for layer in &self.layers {
            let blob = self.layer_blob(layer);
            let media_type = if self.gzip_layers {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            layer_descriptors.push(serde_json::json!({
                "mediaType": media_type,
                "digest": format!("sha256:{}", sha256_hex(&blob)),
                "size": blob.len(),
            }));
            files.push((format!("blobs/sha256/{}", sha256_hex(&blob)), blob));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{}", sha256_hex(&config)),
                "size": config.len(),
            },
            "layers": layer_descriptors,
        }))
        .expect("manifest");
        let mut descriptor = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&manifest)),
            "size": manifest.len(),
        });
        if let Some(tag) = self.tags.first() {
            descriptor["annotations"] = serde_json::json!({
                "io.containerd.image.name": full_name(tag),
                "org.opencontainers.image.ref.name": tag.rsplit(':').next().unwrap_or("latest"),
            });
        }
        files.push((format!("blobs/sha256/{}", sha256_hex(&config)), config));
        files.push((format!("blobs/sha256/{}", sha256_hex(&manifest)), manifest));
        files.push((
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ));
        let index = serde_json::json!({ "schemaVersion": 2, "manifests": [descriptor] });
        files.push((
            "index.json".into(),
            serde_json::to_vec(&index).expect("index"),
        ));
        pack(&files)
    }
}

/// `busybox:latest` → `docker.io/library/busybox:latest` (enough for test names).
fn full_name(tag: &str) -> String {
    let first = tag.split('/').next().unwrap_or_default();
    if !tag.contains('/') {
        format!("docker.io/library/{tag}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        tag.to_string()
    } else {
        format!("docker.io/{tag}")
    }
}

/// The docker-archive of a busybox image tagged `tag`.
pub fn busybox_archive(tag: &str) -> Vec<u8> {
    ImageSpec::busybox(Some(tag)).docker_archive()
}

/// Packs files into a tar (directories implied), as an archive writer would.
pub fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, data.as_slice())
            .expect("append");
    }
    builder.into_inner().expect("finish tar")
}

/// Replaces a shared system file (/etc/subuid...) in one step: the text goes to a temporary
/// file beside it, which is renamed over it, so a daemon reading the file meanwhile sees the
/// old or the new content, never the empty file a truncating write shows for a moment.
pub fn replace_file(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.berth-test-{}", std::process::id());
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
