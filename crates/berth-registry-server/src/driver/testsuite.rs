//! One suite every [`StorageDriver`] runs (distribution's `testsuites`): the registry relies
//! on exactly these behaviours, whichever driver is configured.

use std::io::{Read, Write};

use super::StorageDriver;

/// Runs every check against a fresh, empty driver.
pub fn run(driver: &dyn StorageDriver) {
    put_get_replace(driver);
    reader_offsets(driver);
    writer_append_commit_cancel(driver);
    stat_list_walk(driver);
    move_and_delete(driver);
    missing_paths(driver);
    large_content(driver);
}

fn put_get_replace(d: &dyn StorageDriver) {
    d.put_content("/a/b/c", b"one").unwrap();
    assert_eq!(d.get_content("/a/b/c").unwrap(), b"one");
    d.put_content("/a/b/c", b"two!").unwrap();
    assert_eq!(d.get_content("/a/b/c").unwrap(), b"two!");
    assert_eq!(d.stat("/a/b/c").unwrap().size, 4);
    d.delete("/a").unwrap();
}

fn reader_offsets(d: &dyn StorageDriver) {
    d.put_content("/r/file", b"0123456789").unwrap();
    let mut s = String::new();
    d.reader("/r/file", 4)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "456789");
    let mut end = Vec::new();
    d.reader("/r/file", 10)
        .unwrap()
        .read_to_end(&mut end)
        .unwrap();
    assert!(end.is_empty());
    assert!(d.reader("/r/file", 11).is_err(), "offset past the end");
    d.delete("/r").unwrap();
}

fn writer_append_commit_cancel(d: &dyn StorageDriver) {
    let mut w = d.writer("/w/up", false).unwrap();
    w.write_all(b"hello ").unwrap();
    assert_eq!(w.size(), 6);
    // Dropped without commit (a connection lost): what was written is still there.
    drop(w);
    let mut w = d.writer("/w/up", true).unwrap();
    assert_eq!(w.size(), 6, "append starts at the end");
    w.write_all(b"world").unwrap();
    assert_eq!(w.size(), 11);
    w.commit().unwrap();
    assert_eq!(d.get_content("/w/up").unwrap(), b"hello world");
    // Not appending starts empty.
    let mut w = d.writer("/w/up", false).unwrap();
    w.write_all(b"x").unwrap();
    w.commit().unwrap();
    assert_eq!(d.get_content("/w/up").unwrap(), b"x");
    let mut w = d.writer("/w/gone", false).unwrap();
    w.write_all(b"abc").unwrap();
    w.cancel().unwrap();
    assert!(d.stat("/w/gone").unwrap_err().is_not_found());
    d.delete("/w").unwrap();
}

fn stat_list_walk(d: &dyn StorageDriver) {
    for p in ["/l/x/1", "/l/x/2", "/l/y", "/l/z/deep/3"] {
        d.put_content(p, p.as_bytes()).unwrap();
    }
    assert_eq!(d.list("/l").unwrap(), vec!["/l/x", "/l/y", "/l/z"]);
    assert_eq!(d.list("/l/").unwrap(), vec!["/l/x", "/l/y", "/l/z"]);
    assert!(d.stat("/l/x").unwrap().is_dir);
    assert!(!d.stat("/l/y").unwrap().is_dir);
    let walked: Vec<String> = d.walk("/l").unwrap().into_iter().map(|i| i.path).collect();
    assert_eq!(walked, vec!["/l/x/1", "/l/x/2", "/l/y", "/l/z/deep/3"]);
    d.delete("/l").unwrap();
}

fn move_and_delete(d: &dyn StorageDriver) {
    d.put_content("/m/src", b"data").unwrap();
    d.put_content("/m/dst/file", b"old").unwrap();
    d.move_path("/m/src", "/m/dst/file").unwrap();
    assert_eq!(d.get_content("/m/dst/file").unwrap(), b"data");
    assert!(d.stat("/m/src").unwrap_err().is_not_found());
    d.move_path("/m/dst/file", "/m/new/parent/file").unwrap();
    assert_eq!(d.get_content("/m/new/parent/file").unwrap(), b"data");
    d.delete("/m/new").unwrap();
    assert!(d.stat("/m/new/parent/file").unwrap_err().is_not_found());
    d.delete("/m").ok();
}

fn missing_paths(d: &dyn StorageDriver) {
    assert!(d.get_content("/nope").unwrap_err().is_not_found());
    assert!(d.stat("/nope").unwrap_err().is_not_found());
    assert!(d.list("/nope").unwrap_err().is_not_found());
    assert!(d.delete("/nope").unwrap_err().is_not_found());
    assert!(d.move_path("/nope", "/x").unwrap_err().is_not_found());
    assert!(d.walk("/nope").unwrap().is_empty());
}

fn large_content(d: &dyn StorageDriver) {
    // Several MiB through a writer in odd-sized pieces, read back at an odd offset.
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 7)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let mut w = d.writer("/big/blob", false).unwrap();
    for piece in data.chunks(65_537) {
        w.write_all(piece).unwrap();
    }
    w.commit().unwrap();
    let mut back = Vec::new();
    d.reader("/big/blob", 1_000_003)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data[1_000_003..]);
    d.delete("/big").unwrap();
}

#[test]
fn filesystem_driver_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    run(&super::FilesystemDriver::new(dir.path()).unwrap());
}

#[test]
fn inmemory_driver_passes_the_suite() {
    run(&super::InMemoryDriver::new());
}
