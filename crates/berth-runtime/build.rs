//! Builds `berth-init`, the container's pid 1 for `--init`, as a **statically linked**
//! executable: it runs inside arbitrary root filesystems that may have no (or another) libc.
//!
//! Cargo has no stable per-binary rustflags, and `-C target-feature=+crt-static` for the
//! whole workspace would make every binary static. Passing `-static` as a link argument is not
//! enough either: std's libc linkage is chosen by the `crt-static` feature of the final link,
//! so such a binary crashes at start. So this script compiles the one-file program
//! `src/init/main.rs` (std only, no crates) with the same `rustc` and target, with
//! `crt-static`, into `$OUT_DIR/berth-init`. The library embeds it
//! (`berth_runtime::init::BINARY`) and the daemon writes it out with
//! `berth_runtime::init::install`, so one daemon binary carries its init.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "src/init/main.rs";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("TARGET is set for build scripts");
    let dest = out.join("berth-init");
    let status = Command::new(&rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--crate-name",
            "berth_init",
        ])
        .args(["--target", &target])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "target-feature=+crt-static", "-C", "codegen-units=1"])
        .arg("-o")
        .arg(&dest)
        .arg(src)
        .status()
        .expect("run rustc for berth-init");
    assert!(status.success(), "building the static berth-init failed");

    // `berth-shim` (the crate's only binary) is linked as a fixed-address executable: a
    // position-independent one has its ~450 KiB of relocated read-only data (vtables, string
    // tables) rewritten by the dynamic loader at every start, private dirty memory in each of
    // the hundreds of shims a host runs. (A fully static shim saved another ~70 KiB of private
    // memory per shim but crashed in libbpf's cgroup v2 device filter setup; see
    // docs/architecture.md, "Shim footprint".)
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
