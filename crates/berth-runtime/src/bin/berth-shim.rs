//! `berth-shim <bundle-dir>`: the per-container supervisor. Started by the daemon through
//! `berth_runtime::Shim::spawn`; see `berth_runtime::shim`.

fn main() {
    std::process::exit(berth_runtime::shim::server::main());
}
