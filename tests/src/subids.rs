//! The subordinate id files (/etc/subuid, /etc/subgid) that the tests with throw-away users
//! (user namespace remapping, rootless) add ranges to and remove them from.

use std::sync::{Mutex, MutexGuard};

const FILES: [&str; 2] = ["/etc/subuid", "/etc/subgid"];

static EDITS: Mutex<()> = Mutex::new(());

/// Serializes this process's edits of the files, and whatever must not run while they
/// change (a daemon that adds its own range). Hold it around `add_range`/`remove_ranges`
/// and the `useradd`/`userdel` that go with them.
pub fn lock() -> MutexGuard<'static, ()> {
    EDITS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives `name` the ids `base..base+count` in both files.
pub fn add_range(name: &str, base: u32, count: u32) {
    for file in FILES {
        let mut text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{name}:{base}:{count}\n"));
        crate::fixtures::replace_file(file, &text).expect("write subordinate ids");
    }
}

/// Removes every range of `name` from both files (best effort: it runs on drop).
pub fn remove_ranges(name: &str) {
    let prefix = format!("{name}:");
    for file in FILES {
        if let Ok(text) = std::fs::read_to_string(file) {
            let kept: String = text
                .lines()
                .filter(|l| !l.starts_with(&prefix))
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = crate::fixtures::replace_file(file, &kept);
        }
    }
}
