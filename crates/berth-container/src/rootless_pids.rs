//! The processes of a container without a cgroup of its own (a rootless daemon's): those in
//! the pid namespace of its init process.

/// Host pids of the processes in `init`'s pid namespace (none when `init` is gone).
pub fn in_pid_namespace_of(init: i64) -> Vec<i32> {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(target) = ns(&init.to_string()) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| ns(&pid.to_string()).as_ref() == Some(&target))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_this_process_in_its_own_namespace() {
        let me = std::process::id() as i32;
        assert!(super::in_pid_namespace_of(me.into()).contains(&me));
        assert!(super::in_pid_namespace_of(i64::from(i32::MAX)).is_empty());
    }
}
