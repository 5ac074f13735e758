//! How the daemon uses glibc's allocator: few arenas, and freed memory handed back.
//!
//! A daemon's allocations come in bursts (1,000 swarm tasks starting, a Raft snapshot of
//! megabytes, a large image list) and then go quiet. glibc returns only the free top of its
//! heaps by itself; free pages between live allocations stay resident until `malloc_trim`
//! walks the arenas and releases them. On a manager with 1,000 tasks that was about 10 MiB of
//! its RSS (bench/swarm.sh, measured with a `malloc_trim` called from gdb).

use std::time::Duration;

/// How often freed memory is handed back. A trim walks the free lists of both arenas: well
/// under a millisecond for a daemon's heap.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// glibc gives each thread that allocates under contention an arena of its own (up to 8 per
/// core), and freed memory stays in them: with hundreds of blocking threads starting swarm
/// tasks, a manager with 1,000 tasks held ~40 MiB more RSS than with 2 arenas
/// (bench/swarm.sh). Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; nothing else runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands freed memory back to the kernel now.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it takes the arenas' locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims every [`TRIM_EVERY`] for as long as the runtime runs.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Off the async workers: it holds each arena's lock while it walks it.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}
