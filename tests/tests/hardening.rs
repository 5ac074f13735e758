//! What already holds and must stay (issue 12): `cp`/archive/mount escapes are blocked, the
//! defaults are dockerd's or stricter, SIGKILLs of berthd lose nothing acknowledged and leave
//! no orphan, and many containers under many concurrent clients see no error. Needs root.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_e2e::api::parse_response;
use berth_e2e::containers::{create, daemon_with_busybox, start, until};
use berth_e2e::fixtures::{Entry, layer_tar};
use berth_e2e::{ApiResponse, Daemon, ImageSpec, require_root};
use serde_json::{Value, json};

const SECRET: &str = "HOST-SECRET-a9f3";

/// One request on a fresh connection; `None` when the daemon is unreachable or the answer is
/// cut off (the SIGKILL and load tests expect that, unlike [`berth_e2e::RawApi`], which panics).
fn try_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Option<ApiResponse> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if body.first() == Some(&b'{') {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    if !raw[..end].starts_with(b"HTTP/1.1 ") {
        return None;
    }
    Some(parse_response(&raw, method == "HEAD"))
}

fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

/// Appends an entry with its name written raw into the header (the `tar` crate refuses `..`
/// and absolute names through its checked setters, which is what an attacker would not use).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    name: &str,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// The host side of the escape tests: a directory with a secret that nothing may read, and
/// whose listing nothing may change; no mount may appear on it.
struct HostBait {
    dir: PathBuf,
}

impl HostBait {
    fn new(d: &Daemon) -> HostBait {
        let dir = d.dir().join("host-bait");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), SECRET).unwrap();
        HostBait { dir }
    }

    fn path(&self) -> String {
        self.dir.display().to_string()
    }

    /// `../..`-style path from anywhere to the bait (enough `..` to reach `/` from any depth).
    fn climbing(&self) -> String {
        format!(
            "{}{}",
            "../".repeat(12),
            self.path().trim_start_matches('/')
        )
    }

    fn assert_untouched(&self, what: &str, seen: &str) {
        assert!(
            !seen.contains(SECRET),
            "{what}: the host's secret was read: {seen}"
        );
        let names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["secret".to_string()],
            "{what}: the host dir was written"
        );
        assert_eq!(
            std::fs::read_to_string(self.dir.join("secret")).unwrap(),
            SECRET,
            "{what}: the host's secret was overwritten"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&self.path()),
            "{what}: something was mounted on the host dir: {mounts}"
        );
        for name in ["w-dotdot", "w-abs", "w-link", "w-hard", "escaped"] {
            assert!(
                !Path::new("/").join(name).exists(),
                "{what}: /{name} written"
            );
        }
    }
}

/// An attempt, as an attacker would make it: what it is, and the action (returning what the
/// attacker got back: a body, command output).
type Attempt<'a> = (&'a str, Box<dyn Fn() -> String + 'a>);

#[test]
fn cp_archive_and_mount_escapes_are_blocked() {
    require_root!();
    let d = daemon_with_busybox();
    let bait = HostBait::new(&d);
    let host = bait.path();
    let up = bait.climbing();

    // An image whose tree holds symlinks that lead out when followed on the host.
    let mut spec = ImageSpec::busybox(Some("trap:latest"));
    spec.layers.push(layer_tar(&[
        Entry::Symlink {
            path: "abslink",
            target: &host,
        },
        Entry::Symlink {
            path: "uplink",
            target: &up,
        },
        Entry::Symlink {
            path: "rootlink",
            target: "/",
        },
        Entry::Dir {
            path: "mnt",
            mode: 0o755,
        },
        Entry::Symlink {
            path: "mnt/out",
            target: &host,
        },
    ]));
    let r = d
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    assert_eq!(r.status, 200, "{}", r.text());

    // The container keeps swapping /race between a directory and a link to the host dir,
    // so that a check-then-use on the host side would follow the link.
    let race = format!(
        "i=0; while [ $i -lt 200000 ]; do mkdir /race 2>/dev/null; rm -rf /race; \
         ln -s {host} /race; rm -f /race; i=$((i+1)); done"
    );
    let id = create(
        &d,
        Some("trap"),
        json!({"Image": "trap", "Cmd": ["sh", "-c", race]}),
    );
    start(&d, &id);
    let api = d.api();
    let get = |path: String| {
        let r = api.get(&format!("/containers/{id}/archive?path={path}"));
        format!("{} {}", r.status, r.text())
    };
    let put = |path: String, tar: Vec<u8>| {
        let r = api.request(
            "PUT",
            &format!("/containers/{id}/archive?path={path}"),
            &[("Content-Type", "application/x-tar")],
            Some(&tar),
        );
        format!("{} {}", r.status, r.text())
    };
    let file = |name: &str| tar_of(|b| raw_entry(b, tar::EntryType::Regular, name, "", b"evil"));
    let docker = |args: &[&str]| {
        d.docker(args)
            .map(|o| format!("{} {}", o.stdout, o.stderr))
            .unwrap_or_default()
    };
    let berth = |args: &[&str]| {
        let o = d.berth(args);
        format!("{} {}", o.stdout, o.stderr)
    };
    let volume_src = d.dir().join("volume-src");
    std::fs::create_dir_all(&volume_src).unwrap();
    let src = volume_src.display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        let o = d.berth(&all);
        format!("{} {}", o.stdout, o.stderr)
    };

    let attempts: Vec<Attempt<'_>> = vec![
        // Reads through the archive API.
        (
            "GET through a symlink to /",
            Box::new(|| get(format!("/rootlink{host}/secret"))),
        ),
        (
            "GET through a ../.. symlink",
            Box::new(|| get("/uplink/secret".into())),
        ),
        (
            "GET through an absolute host symlink",
            Box::new(|| get("/abslink/secret".into())),
        ),
        (
            "GET of an absolute host symlink with /.",
            Box::new(|| get("/abslink/.".into())),
        ),
        (
            "GET of a path with .. components",
            Box::new(|| get(format!("/etc/../../../..{host}/secret"))),
        ),
        (
            "HEAD stat through a link",
            Box::new(|| {
                let r = api.request(
                    "HEAD",
                    &format!("/containers/{id}/archive?path=/abslink/secret"),
                    &[],
                    None,
                );
                format!(
                    "{} {:?}",
                    r.status,
                    r.header("X-Docker-Container-Path-Stat")
                )
            }),
        ),
        // Writes through the archive API.
        (
            "PUT of a ../ entry",
            Box::new(|| put("/tmp".into(), file(&format!("{up}/w-dotdot")))),
        ),
        (
            "PUT of an absolute entry",
            Box::new(|| put("/tmp".into(), file(&format!("{host}/w-abs")))),
        ),
        (
            "PUT of a symlink entry, then a file through it",
            Box::new(|| {
                put(
                    "/tmp".into(),
                    tar_of(|b| {
                        raw_entry(b, tar::EntryType::Symlink, "lnk", &host, b"");
                        raw_entry(b, tar::EntryType::Regular, "lnk/w-link", "", b"evil");
                    }),
                )
            }),
        ),
        (
            "PUT of a hard link to a host file",
            Box::new(|| {
                let out = put(
                    "/tmp".into(),
                    tar_of(|b| {
                        raw_entry(
                            b,
                            tar::EntryType::Link,
                            "w-hard",
                            &format!("{host}/secret"),
                            b"",
                        );
                        raw_entry(
                            b,
                            tar::EntryType::Link,
                            "w-hard2",
                            &format!("{up}/secret"),
                            b"",
                        );
                    }),
                );
                format!(
                    "{out} {} {}",
                    get("/tmp/w-hard".into()),
                    get("/tmp/w-hard2".into())
                )
            }),
        ),
        (
            "PUT into a symlink to the host",
            Box::new(|| put("/abslink".into(), file("escaped"))),
        ),
        (
            "PUT into a dir under a symlink",
            Box::new(|| put("/mnt/out".into(), file("escaped"))),
        ),
        (
            "PUT to a path with .. components",
            Box::new(|| put(format!("/../../../..{host}"), file("escaped"))),
        ),
        (
            "PUT/GET racing a swapped symlink",
            Box::new(|| {
                let mut seen = String::new();
                for _ in 0..150 {
                    seen.push_str(&put("/race".into(), file("escaped")));
                    seen.push_str(&get("/race/secret".into()));
                }
                seen
            }),
        ),
        // The CLIs.
        (
            "berth cp out through a link",
            Box::new(|| berth(&["cp", "trap:/abslink/secret", "-"])),
        ),
        (
            "berth cp into a link",
            Box::new(|| {
                let f = d.dir().join("escaped");
                std::fs::write(&f, "evil").unwrap();
                berth(&["cp", f.to_str().unwrap(), "trap:/uplink/"])
            }),
        ),
        (
            "docker cp out through ../..",
            Box::new(|| docker(&["cp", "trap:/uplink/secret", "-"])),
        ),
        (
            "docker cp into a link to the host",
            Box::new(|| {
                let f = d.dir().join("escaped");
                std::fs::write(&f, "evil").unwrap();
                docker(&["cp", f.to_str().unwrap(), "trap:/abslink/escaped"])
            }),
        ),
        // Mount targets that are symlinks in the image: the mount lands inside the rootfs.
        (
            "-v onto an absolute symlink",
            Box::new(|| {
                run(&[
                    "-v",
                    &format!("{src}:/abslink"),
                    "trap",
                    "sh",
                    "-c",
                    "touch /abslink/escaped; ls /abslink",
                ])
            }),
        ),
        (
            "--mount onto a ../.. symlink",
            Box::new(|| {
                run(&[
                    "--mount",
                    &format!("type=bind,src={src},dst=/uplink"),
                    "trap",
                    "sh",
                    "-c",
                    "touch /uplink/escaped",
                ])
            }),
        ),
        (
            "--mount under a symlinked dir",
            Box::new(|| {
                run(&[
                    "--mount",
                    &format!("type=bind,src={src},dst=/mnt/out/sub"),
                    "trap",
                    "true",
                ])
            }),
        ),
        (
            "--tmpfs onto a symlink",
            Box::new(|| run(&["--tmpfs", "/abslink", "trap", "ls", "/abslink"])),
        ),
        (
            "volume onto a symlink",
            Box::new(|| run(&["-v", "trapvol:/rootlink/escaped", "trap", "true"])),
        ),
    ];
    let mut report = Vec::new();
    for (what, attempt) in &attempts {
        let seen = attempt();
        bait.assert_untouched(what, &seen);
        report.push(format!(
            "{what}: {}",
            seen.chars().take(300).collect::<String>()
        ));
    }
    eprintln!("{}", report.join("\n"));
    // A mount that succeeded landed in the container: its writes went to the bind source.
    assert!(
        !std::fs::read_dir(&volume_src)
            .unwrap()
            .flatten()
            .any(|e| e.file_name() == "secret"),
        "the host dir's content appeared in the bind source"
    );
    assert!(attempts.len() >= 16);
}

#[test]
fn volume_subpaths_stay_inside_the_volume() {
    require_root!();
    let d = daemon_with_busybox();
    let bait = HostBait::new(&d);
    let host = bait.path();
    // A container plants links inside the volume; later mounts use them as subpaths.
    d.berth(&["volume", "create", "subv"]).success();
    let plant = format!(
        "ln -s {host} /v/abs; ln -s {} /v/up; mkdir /v/ok; ln -s /ok /v/inside",
        bait.climbing()
    );
    d.berth(&[
        "run", "--rm", "-v", "subv:/v", "busybox", "sh", "-c", &plant,
    ])
    .success();
    for sub in ["abs", "up", "../../..", "/etc"] {
        let o = d.berth(&[
            "run",
            "--rm",
            "--mount",
            &format!("type=volume,src=subv,dst=/data,volume-subpath={sub}"),
            "busybox",
            "sh",
            "-c",
            "cat /data/secret; touch /data/escaped",
        ]);
        bait.assert_untouched(
            &format!("subpath {sub}"),
            &format!("{} {}", o.stdout, o.stderr),
        );
    }
    // A plain subpath, and a link resolved inside the volume, still work.
    for sub in ["ok", "inside"] {
        let o = d
            .berth(&[
                "run",
                "--rm",
                "--mount",
                &format!("type=volume,src=subv,dst=/data,volume-subpath={sub}"),
                "busybox",
                "sh",
                "-c",
                "echo hi > /data/f && cat /data/f",
            ])
            .success();
        assert_eq!(o.stdout, "hi\n");
    }
}

/// What the client got an answer for before the kill.
#[derive(Default)]
struct Acked {
    /// id → started (true once `start` answered 204).
    live: BTreeMap<String, bool>,
    removed: BTreeSet<String>,
    /// `rm -f` sent, no answer yet: the container may be anywhere between running and gone.
    removing: BTreeSet<String>,
}

/// Ids of containers named in command lines and mount points below the test's directory
/// (shims name their container; rootfs and bundle mounts carry its id).
fn ids_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|t| t.len() == 64)
        .map(str::to_string)
        .collect()
}

fn processes_mentioning(dir: &Path, except: u32) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == except {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&needle) {
            out.push((pid, cmd));
        }
    }
    out
}

fn mounts_below(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn sixty_sigkills_lose_nothing_acknowledged_and_leave_no_orphan() {
    require_root!();
    let mut d = daemon_with_busybox();
    let socket = d.socket();
    for round in 0..60u32 {
        let acked = Arc::new(Mutex::new(Acked::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let (acked, stop, socket) = (acked.clone(), stop.clone(), socket.clone());
            std::thread::spawn(move || {
                let body = json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}).to_string();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let name = format!("k{round}-{i}");
                    let path = format!("/containers/create?name={name}");
                    let Some(r) = try_request(&socket, "POST", &path, Some(body.as_bytes())) else {
                        continue;
                    };
                    if r.status != 201 {
                        continue;
                    }
                    let id = r.json()["Id"].as_str().unwrap().to_string();
                    acked.lock().unwrap().live.insert(id.clone(), false);
                    let path = format!("/containers/{id}/start");
                    if try_request(&socket, "POST", &path, None).is_some_and(|r| r.status == 204) {
                        acked.lock().unwrap().live.insert(id.clone(), true);
                    }
                    if i % 3 == 0 {
                        acked.lock().unwrap().removing.insert(id.clone());
                        let path = format!("/containers/{id}?force=1");
                        if try_request(&socket, "DELETE", &path, None)
                            .is_some_and(|r| r.status == 204)
                        {
                            let mut a = acked.lock().unwrap();
                            a.live.remove(&id);
                            a.removed.insert(id);
                        }
                    }
                }
            })
        };
        // Kill at a different point of the client's cycle every round.
        std::thread::sleep(Duration::from_millis(150 + u64::from(round * 37 % 600)));
        d.kill_hard();
        stop.store(true, Ordering::SeqCst);
        client.join().expect("client thread");
        d.start_again();

        let api = d.api();
        let acked = acked.lock().unwrap();
        for (id, started) in &acked.live {
            if acked.removing.contains(id) {
                continue;
            }
            let r = api.get(&format!("/containers/{id}/json"));
            assert_eq!(
                r.status,
                200,
                "round {round}: acknowledged {id} lost: {}",
                r.text()
            );
            if *started {
                let state = r.json()["State"]["Status"].as_str().unwrap().to_string();
                assert_eq!(state, "running", "round {round}: started {id} is {state}");
            }
        }
        for id in &acked.removed {
            let r = api.get(&format!("/containers/{id}/json"));
            assert_eq!(r.status, 404, "round {round}: removed {id} is back");
        }
        // Nothing half-made: every listed container inspects, and its files are there.
        let listed: BTreeSet<String> = api
            .get("/containers/json?all=1")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Id"].as_str().unwrap().to_string())
            .collect();
        for id in &listed {
            let r = api.get(&format!("/containers/{id}/json"));
            assert_eq!(r.status, 200, "round {round}: listed {id} does not inspect");
            assert!(
                d.data_root().join("containers").join(id).is_dir(),
                "round {round}: listed {id} has no directory"
            );
        }
        // No orphans: every process and mount of ours belongs to a listed container.
        let daemon_pid = d.pid().unwrap();
        // A shim the killed daemon had started ahead of its bundle sees its gate close and
        // exits on its own: give those a moment before calling them orphans.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && processes_mentioning(d.dir(), daemon_pid)
                .iter()
                .any(|(_, c)| ids_in(c).iter().any(|id| !listed.contains(id)))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for (pid, cmd) in processes_mentioning(d.dir(), daemon_pid) {
            for id in ids_in(&cmd) {
                assert!(
                    listed.contains(&id),
                    "round {round}: process {pid} of unlisted {id}: {cmd}\nfds: {:?} wchan {:?}\nexec dir: {:?}\n{}",
                    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|r| r
                        .flatten()
                        .map(|e| std::fs::read_link(e.path()))
                        .collect::<Vec<_>>()),
                    std::fs::read_to_string(format!("/proc/{pid}/wchan")),
                    std::fs::read_dir(d.run_dir(&id))
                        .map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
                    d.log()
                        .lines()
                        .filter(|l| l.contains(&id[..12]))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
        for m in mounts_below(&d.data_root())
            .into_iter()
            .chain(mounts_below(&d.exec_root()))
        {
            for id in ids_in(&m) {
                assert!(listed.contains(&id), "round {round}: stray mount {m}");
            }
        }
        let container_mounts = mounts_below(d.dir())
            .iter()
            .filter(|m| !ids_in(m).is_empty())
            .count();
        // Start each round from a clean slate (and check removal after a crash works).
        for id in &listed {
            let r = api.delete(&format!("/containers/{id}?force=1"));
            assert_eq!(r.status, 204, "round {round}: rm {id}: {}", r.text());
        }
        // Removed, they leave no mount behind (deleted in the background: give it time).
        until(&format!("round {round}: containers' mounts gone"), || {
            mounts_below(&d.data_root())
                .iter()
                .chain(mounts_below(&d.exec_root()).iter())
                .all(|m| ids_in(m).is_empty())
        });
        eprintln!(
            "round {round}: {} acknowledged, {} removed, {} listed, {container_mounts} mounts",
            acked.live.len(),
            acked.removed.len(),
            listed.len()
        );
    }
    // After all that, no shim or mount of a container remains.
    assert!(
        processes_mentioning(d.dir(), d.pid().unwrap())
            .iter()
            .all(|(_, c)| ids_in(c).is_empty()),
        "shims left behind"
    );
}

/// One client operation: the request and the statuses that count as success.
fn load_op(socket: &Path, n: u64, ids: &[String]) -> Result<(), String> {
    let id = &ids[(n as usize * 7919) % ids.len()];
    let expect = |r: Option<ApiResponse>, ok: &[u16], what: &str| match r {
        Some(r) if ok.contains(&r.status) => Ok(r),
        Some(r) => Err(format!("{what}: {} {}", r.status, r.text())),
        None => Err(format!("{what}: no answer")),
    };
    match n % 7 {
        0 => expect(
            try_request(socket, "GET", "/containers/json", None),
            &[200],
            "ps",
        )
        .map(drop),
        1 => expect(
            try_request(socket, "GET", &format!("/containers/{id}/json"), None),
            &[200],
            "inspect",
        )
        .map(drop),
        2 => expect(
            try_request(
                socket,
                "GET",
                &format!("/containers/{id}/logs?stdout=1&stderr=1&tail=5"),
                None,
            ),
            &[200],
            "logs",
        )
        .map(drop),
        3 => {
            let body = json!({"Cmd": ["echo", "hi"], "AttachStdout": true, "AttachStderr": true})
                .to_string();
            let r = expect(
                try_request(
                    socket,
                    "POST",
                    &format!("/containers/{id}/exec"),
                    Some(body.as_bytes()),
                ),
                &[201],
                "exec create",
            )?;
            let exec = r.json()["Id"].as_str().unwrap_or_default().to_string();
            let body = json!({"Detach": false, "Tty": false}).to_string();
            let r = expect(
                try_request(
                    socket,
                    "POST",
                    &format!("/exec/{exec}/start"),
                    Some(body.as_bytes()),
                ),
                &[200],
                "exec start",
            )?;
            let (out, err) = berth_e2e::containers::demux(&r.body);
            if out != "hi\n" {
                let inspect = try_request(socket, "GET", &format!("/exec/{exec}/json"), None)
                    .map(|r| r.text())
                    .unwrap_or_default();
                return Err(format!(
                    "exec output {out:?}, stderr {err:?}, {} bytes, exec {inspect}",
                    r.body.len()
                ));
            }
            Ok(())
        }
        4 => expect(
            try_request(socket, "GET", &format!("/containers/{id}/top"), None),
            &[200],
            "top",
        )
        .map(drop),
        5 => expect(
            try_request(
                socket,
                "GET",
                &format!("/containers/{id}/stats?stream=false"),
                None,
            ),
            &[200],
            "stats",
        )
        .map(drop),
        _ => {
            let body = json!({"Image": "busybox", "Cmd": ["true"]}).to_string();
            let r = expect(
                try_request(socket, "POST", "/containers/create", Some(body.as_bytes())),
                &[201],
                "create",
            )?;
            let new = r.json()["Id"].as_str().unwrap_or_default().to_string();
            expect(
                try_request(
                    socket,
                    "DELETE",
                    &format!("/containers/{new}?force=1"),
                    None,
                ),
                &[204],
                "rm",
            )
            .map(drop)
        }
    }
}

/// Runs `f` over `items` on `threads` threads.
fn parallel<T: Sync>(items: &[T], threads: usize, f: impl Fn(&T) + Sync) {
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                    let Some(item) = items.get(i) else { break };
                    f(item);
                }
            });
        }
    });
}

#[test]
fn two_hundred_containers_and_fifty_clients_see_no_error() {
    require_root!();
    let d = daemon_with_busybox();
    let secs: u64 = std::env::var("BERTH_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let socket = d.socket();
    let ids = Mutex::new(Vec::new());
    let slots: Vec<u32> = (0..200).collect();
    parallel(&slots, 8, |i| {
        // The test daemon's default bridge is a /26: the first 40 get an address on it, the
        // others no network.
        let net = if *i < 40 { "default" } else { "none" };
        let body = json!({
            "Image": "busybox",
            "Cmd": ["sh", "-c", "echo up; exec sleep 100000"],
            "HostConfig": {"NetworkMode": net},
        });
        let id = create(&d, Some(&format!("load{i}")), body);
        start(&d, &id);
        ids.lock().unwrap().push(id);
    });
    let ids = ids.into_inner().unwrap();
    assert_eq!(ids.len(), 200);

    let done = AtomicU64::new(0);
    let errors = Mutex::new(Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let clients: Vec<u64> = (0..50).collect();
    parallel(&clients, 50, |c| {
        let mut n = *c;
        while Instant::now() < deadline {
            if let Err(e) = load_op(&socket, n, &ids) {
                errors.lock().unwrap().push(e);
            }
            done.fetch_add(1, Ordering::SeqCst);
            n += 1;
        }
    });
    let errors = errors.into_inner().unwrap();
    eprintln!(
        "load: {} requests by 50 clients on 200 containers in {secs} s, {} errors",
        done.load(Ordering::SeqCst),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "errors under load: {:?}",
        &errors[..errors.len().min(20)]
    );
    assert_eq!(d.api().get("/_ping").status, 200);
    let running = d.api().get("/containers/json").json();
    assert_eq!(
        running.as_array().unwrap().len(),
        200,
        "containers died under load"
    );
    parallel(&ids, 8, |id| {
        let r = d.api().delete(&format!("/containers/{id}?force=1"));
        assert_eq!(r.status, 204, "{}", r.text());
    });
    let left: Value = d.api().get("/containers/json?all=1").json();
    assert_eq!(left, json!([]));
}

/// What `a_default_container_is_confined` (container_faults.rs) leaves out of dockerd's
/// defaults (moby oci/defaults.go, profiles/seccomp/default.json): seccomp in filter mode,
/// masked and read-only /proc paths, no-new-privileges off unless asked, only the default
/// devices, and the device cgroup refusing a node made with CAP_MKNOD.
#[test]
fn defaults_are_dockerds_or_stricter() {
    require_root!();
    let d = daemon_with_busybox();
    let script = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; \
         for f in /proc/kcore /proc/keys /proc/latency_stats /proc/timer_list /proc/timer_stats \
                  /proc/sched_debug; do \
           [ -e $f ] && echo masked-file $f $(cat $f 2>/dev/null | wc -c); done; \
         for p in /proc/acpi /proc/scsi /sys/firmware /sys/devices/virtual/powercap; do \
           [ -e $p ] && echo masked-dir $p $(ls -A $p 2>/dev/null | wc -l); done; \
         for p in /proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger; do \
           [ -e $p ] && echo ro $p $(grep \" $p \" /proc/mounts | cut -d' ' -f4 | cut -d, -f1); done; \
         echo c > /proc/sysrq-trigger 2>/dev/null && echo sysrq-written; \
         echo devices: $(ls /dev | sort | tr '\\n' ' '); \
         mknod /tmp/blk b 7 0 && echo mknod-ok; head -c1 /tmp/blk >/dev/null 2>&1 && echo blk-opened; \
         mknod /tmp/mem c 1 1 && head -c1 /tmp/mem >/dev/null 2>&1 && echo mem-opened; \
         echo done";
    let out = d
        .berth(&["run", "--rm", "busybox", "sh", "-c", script])
        .success()
        .stdout;
    assert!(out.contains("Seccomp:\t2"), "no seccomp filter: {out}");
    assert!(
        out.contains("NoNewPrivs:\t0"),
        "dockerd leaves no-new-privileges off: {out}"
    );
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first().copied() {
            Some("masked-file") | Some("masked-dir") => {
                assert_eq!(f.get(2).copied(), Some("0"), "not masked: {line}\n{out}")
            }
            Some("ro") => assert_eq!(
                f.get(2).copied(),
                Some("ro"),
                "not read-only: {line}\n{out}"
            ),
            _ => {}
        }
    }
    assert!(out.contains("ro /proc/sys ro"), "{out}");
    assert!(!out.contains("sysrq-written"), "{out}");
    let devices: BTreeSet<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("devices: "))
        .unwrap()
        .split_whitespace()
        .collect();
    let allowed: BTreeSet<&str> = [
        "console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
        "stderr", "stdin", "stdout", "tty", "urandom", "zero",
    ]
    .into();
    assert!(
        devices.is_subset(&allowed),
        "devices beyond dockerd's defaults: {:?}",
        devices.difference(&allowed).collect::<Vec<_>>()
    );
    // dockerd keeps CAP_MKNOD, but the device cgroup refuses to open what it makes.
    assert!(!out.contains("blk-opened"), "{out}");
    assert!(!out.contains("mem-opened"), "{out}");
    assert!(out.contains("done"), "{out}");

    let out = d
        .berth(&[
            "run",
            "--rm",
            "--security-opt",
            "no-new-privileges",
            "busybox",
            "grep",
            "NoNewPrivs",
            "/proc/self/status",
        ])
        .success()
        .stdout;
    assert_eq!(out, "NoNewPrivs:\t1\n");
    // Seccomp off only when asked.
    let out = d
        .berth(&[
            "run",
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            "busybox",
            "grep",
            "Seccomp:",
            "/proc/self/status",
        ])
        .success()
        .stdout;
    assert_eq!(out, "Seccomp:\t0\n");
}

/// The seccomp filter a default container gets allows nothing unconditionally that moby's
/// default profile (`profiles/seccomp/default.json`, resolved for the default capabilities on
/// this architecture) does not, and refuses what it keeps for capabilities a default
/// container lacks.
#[test]
fn default_seccomp_allows_no_more_than_dockerds() {
    require_root!();
    let d = daemon_with_busybox();
    let id = create(
        &d,
        None,
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &id);
    let config = d.run_dir(&id).join("config.json");
    let spec: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let seccomp = &spec["linux"]["seccomp"];
    assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO", "{seccomp}");
    let unconditional = |v: &Value| {
        v["action"] == "SCMP_ACT_ALLOW" && v["args"].as_array().is_none_or(|a| a.is_empty())
    };
    let names = |v: &Value| -> Vec<String> {
        v["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    let ours: BTreeSet<String> = seccomp["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| unconditional(s))
        .flat_map(names)
        .collect();

    // Moby's default profile, byte for byte the one berth embeds.
    let moby: Value = serde_json::from_str(include_str!(
        "../../crates/berth-runtime/profiles/seccomp-default.json"
    ))
    .unwrap();
    let default_caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let listed = |v: &Value, key: &str, want: &dyn Fn(&str) -> bool| {
        v[key]
            .as_array()
            .map(|a| a.iter().any(|x| want(x.as_str().unwrap_or_default())))
    };
    let applies = |s: &Value| {
        let inc = &s["includes"];
        let exc = &s["excludes"];
        let caps_ok = inc["caps"].as_array().is_none_or(|a| {
            a.iter()
                .all(|c| default_caps.contains(&c.as_str().unwrap()))
        });
        let arch_ok = listed(inc, "arches", &|a| a == arch).unwrap_or(true);
        let excluded = listed(exc, "caps", &|c| default_caps.contains(&c)).unwrap_or(false)
            || listed(exc, "arches", &|a| a == arch).unwrap_or(false);
        caps_ok && arch_ok && !excluded
    };
    let dockers: BTreeSet<String> = moby["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| unconditional(s) && applies(s))
        .flat_map(names)
        .collect();
    let extra: Vec<&String> = ours.difference(&dockers).collect();
    assert!(
        extra.is_empty(),
        "allowed beyond dockerd's default: {extra:?}"
    );
    for kept in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "pivot_root",
        "bpf",
        "kexec_load",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "reboot",
        "swapon",
        "acct",
        "settimeofday",
    ] {
        assert!(!ours.contains(kept), "{kept} allowed unconditionally");
    }
    eprintln!(
        "seccomp: {} syscalls allowed unconditionally, dockerd {}",
        ours.len(),
        dockers.len()
    );
    // Nor is the whole profile a no-op: the ordinary calls are there.
    assert!(ours.contains("read") && ours.contains("execve"), "{ours:?}");
}
