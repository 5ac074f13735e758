//! Berth's bridges still forward on a host where Docker's daemon set iptables' FORWARD policy
//! to DROP. Debian's dockerd runs inside the test's own "host" netns (so its iptables changes
//! stay there), on its own socket and data root, and is stopped by its PID.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_network::firewall::{BridgeRules, Firewall, Ruleset};
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

struct Dockerd {
    child: Child,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("droot"))
            .arg("--exec-root")
            .arg(dir.join("dexec"))
            .arg("--pidfile")
            .arg(dir.join("dpid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("d.sock").display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .unwrap();
        Dockerd { child }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn iptables_s() -> String {
    let out = Command::new("iptables")
        .args(["-w", "-S"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bridges_forward_beside_dockerd() {
    require_root!();
    if Command::new("dockerd").arg("--version").output().is_err() {
        eprintln!("skipped: dockerd is not installed");
        return;
    }
    in_fake_host(|scratch, _host| async move {
        // A new netns inherits the host's ip_forward; dockerd sets the DROP policy only when it
        // is the one turning forwarding on, as on a fresh host.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();
        let docker = Dockerd::start(&scratch.dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rules = iptables_s();
            if rules.contains("-P FORWARD DROP") && rules.contains("-N DOCKER-USER") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not set up iptables:\n{rules}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let s = &scratch.sfx;
        let (br, ext_br) = (format!("bta{s}"), format!("btx{s}"));
        bridge(&br, "10.76.1.1/24").await;
        bridge(&ext_br, "192.0.2.1/24").await;
        let c = container(&scratch, "c", &br, "10.76.1.2/24", Some("10.76.1.1")).await;
        let ext = container(&scratch, "ext", &ext_br, "192.0.2.2/24", None).await;
        let _srv = Server::start(&ext.path, "192.0.2.2:7000");

        let table = format!("berth_t{s}");
        let fw = Firewall::new(&table);
        let rs = Ruleset {
            bridges: vec![BridgeRules {
                device: br.clone(),
                subnets: vec!["10.76.1.0/24".parse().unwrap()],
                internal: false,
                masquerade: true,
                icc: true,
            }],
            ports: vec![],
        };
        fw.apply(&rs).unwrap();
        assert_eq!(
            fetch(&c.path, "192.0.2.2:7000").await.unwrap(),
            "peer=192.0.2.1"
        );
        let ours: Vec<String> = iptables_s()
            .lines()
            .filter(|l| l.contains(&format!("berth:{table}")))
            .map(str::to_string)
            .collect();
        assert_eq!(ours.len(), 2, "{ours:?}");
        assert!(
            ours.iter().all(|l| l.starts_with("-A DOCKER-USER")),
            "{ours:?}"
        );

        // Without those iptables rules Docker's DROP wins: they are what makes it work.
        for rule in &ours {
            let mut args = vec!["-w".to_string(), "-D".to_string()];
            args.extend(
                rule.split_whitespace()
                    .skip(1)
                    .map(|w| w.trim_matches('"').to_string()),
            );
            assert!(
                Command::new("iptables")
                    .args(&args)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        assert!(fetch(&c.path, "192.0.2.2:7000").await.is_err());
        // Applying again puts them back, once.
        fw.apply(&rs).unwrap();
        fw.apply(&rs).unwrap();
        assert_eq!(iptables_s().matches(&format!("berth:{table}")).count(), 2);
        assert_eq!(
            fetch(&c.path, "192.0.2.2:7000").await.unwrap(),
            "peer=192.0.2.1"
        );

        // A bridge that goes away takes its rules; remove() takes the rest; Docker's stay.
        fw.apply(&Ruleset::default()).unwrap();
        assert_eq!(iptables_s().matches(&format!("berth:{table}")).count(), 0);
        fw.apply(&rs).unwrap();
        fw.remove().unwrap();
        let after = iptables_s();
        assert!(!after.contains(&format!("berth:{table}")), "{after}");
        assert!(after.contains("-N DOCKER-USER") && after.contains("-P FORWARD DROP"));
        drop(docker);
    });
}

#[test]
fn bridges_forward_with_a_drop_policy_and_no_docker_chain() {
    require_root!();
    in_fake_host(|scratch, _host| async move {
        let s = &scratch.sfx;
        let (br, ext_br) = (format!("bta{s}"), format!("btx{s}"));
        bridge(&br, "10.76.2.1/24").await;
        bridge(&ext_br, "192.0.2.1/24").await;
        let c = container(&scratch, "c", &br, "10.76.2.2/24", Some("10.76.2.1")).await;
        let ext = container(&scratch, "ext", &ext_br, "192.0.2.2/24", None).await;
        let _srv = Server::start(&ext.path, "192.0.2.2:7000");
        // This netns's own iptables: a firewall with a DROP policy and no DOCKER-USER chain.
        assert!(
            Command::new("iptables")
                .args(["-w", "-P", "FORWARD", "DROP"])
                .status()
                .unwrap()
                .success()
        );
        let table = format!("berth_t{s}");
        let fw = Firewall::new(&table);
        fw.apply(&Ruleset {
            bridges: vec![BridgeRules {
                device: br.clone(),
                subnets: vec!["10.76.2.0/24".parse().unwrap()],
                internal: false,
                masquerade: true,
                icc: true,
            }],
            ports: vec![],
        })
        .unwrap();
        let rules = iptables_s();
        assert_eq!(
            rules
                .lines()
                .filter(|l| l.starts_with("-A FORWARD") && l.contains(&format!("berth:{table}")))
                .count(),
            2,
            "{rules}"
        );
        assert_eq!(
            fetch(&c.path, "192.0.2.2:7000").await.unwrap(),
            "peer=192.0.2.1"
        );
        fw.remove().unwrap();
        assert!(!iptables_s().contains(&format!("berth:{table}")));
        assert!(fetch(&c.path, "192.0.2.2:7000").await.is_err());
    });
}
