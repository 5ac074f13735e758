//! Named network namespaces: made, entered, removed; the caller's thread never moves.

mod common;

use berth_network::netns;
use common::*;

fn own_netns() -> std::path::PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").unwrap()
}

#[test]
fn create_enter_remove() {
    require_root!();
    let scratch = Scratch::new();
    let path = scratch.dir.join("n");
    let before = own_netns();
    netns::create(&path).unwrap();
    // A second namespace on the same path is refused, and the first stays usable.
    assert!(netns::create(&path).is_err());

    let inside = netns::run_in(&path, own_netns).unwrap();
    assert_ne!(inside, before);
    assert_eq!(netns::run_in(&path, own_netns).unwrap(), inside);
    assert_eq!(own_netns(), before);
    // lo is up inside (its flags in hex: IFF_UP is bit 0).
    let flags = netns::run_in(&path, || {
        let out = std::process::Command::new("ip")
            .args(["-o", "link", "show", "lo"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    })
    .unwrap();
    assert!(flags.contains("UP"), "{flags}");

    netns::remove(&path).unwrap();
    assert!(!path.exists());
    netns::remove(&path).unwrap();
    assert!(netns::run_in(&path, || ()).is_err());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(scratch.dir.to_str().unwrap()));
}
