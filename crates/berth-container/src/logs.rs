//! Reading a container's log in either on-disk format ([`LogFormat`]):
//!
//! - json-file (`<id>-json.log`): one JSON object per line,
//!   `{"log":"hello\n","stream":"stdout","time":"2024-...Z"}`, as Docker writes it;
//! - local (`local-logs/container.log`): length-framed protobuf entries
//!   ([`berth_runtime::shim::local_log`]), lines stored without their newline.
//!
//! Both are rotated by the shim (`<log>.1` is the newest rotated file, `<log>.N` the oldest);
//! [`LogReader`] reads the rotated files oldest first, then the live one, and when following
//! notices a rotation and reads what it has not seen of the rotated files before moving on.

use berth_api::vocab::LogDriver;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_runtime::shim::{RotatedMeta, gz_name, local_log};

use berth_api::stream::{StreamKind, encode_frame};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// `GET /containers/{id}/logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub until: Option<DateTime<Utc>>,
    pub timestamps: bool,
    /// Only the last N entries (`None`: all).
    pub tail: Option<usize>,
}

/// One log entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: DateTime<Utc>,
}

impl Entry {
    /// Whether the options select this entry (stream and time window).
    pub fn selected(&self, o: &LogOptions) -> bool {
        let stream_ok = match self.stream.as_str() {
            "stdout" => o.stdout,
            "stderr" => o.stderr,
            _ => false,
        };
        stream_ok && o.since.is_none_or(|s| self.time >= s) && o.until.is_none_or(|u| self.time < u)
    }

    /// Appends the entry as the client reads it: framed (`multiplexed`) or raw (TTY).
    pub fn encode(&self, o: &LogOptions, multiplexed: bool, out: &mut Vec<u8>) {
        let mut payload = Vec::with_capacity(self.log.len() + 32);
        if o.timestamps {
            payload.extend_from_slice(
                self.time
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            payload.push(b' ');
        }
        payload.extend_from_slice(self.log.as_bytes());
        if multiplexed {
            let kind = if self.stream == "stderr" {
                StreamKind::Stderr
            } else {
                StreamKind::Stdout
            };
            encode_frame(kind, &payload, out);
        } else {
            out.extend_from_slice(&payload);
        }
    }
}

/// A log's on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Docker's json-file.
    JsonFile,
    /// Docker's local driver.
    Local,
}

impl LogFormat {
    /// The format of a log driver's files (`None` for `none`, which keeps no log).
    pub fn for_driver(driver: LogDriver) -> Option<Self> {
        match driver {
            LogDriver::None => None,
            LogDriver::Local => Some(LogFormat::Local),
            LogDriver::JsonFile => Some(LogFormat::JsonFile),
        }
    }

    /// The format of a log file, from its name (`container.log` is local's).
    pub fn of_path(path: &Path) -> Self {
        if path.file_name().is_some_and(|n| n == "container.log") {
            LogFormat::Local
        } else {
            LogFormat::JsonFile
        }
    }

    /// The live log file of container `id` in its directory `dir`.
    pub fn path(self, dir: &Path, id: &str) -> PathBuf {
        match self {
            LogFormat::JsonFile => dir.join(format!("{id}-json.log")),
            LogFormat::Local => dir.join("local-logs").join("container.log"),
        }
    }

    /// Decodes the complete entries at the start of `buf`: the entries and the bytes they
    /// took (an entry still being written is left). Malformed entries are skipped.
    pub fn decode(self, buf: &[u8]) -> (Vec<Entry>, usize) {
        let mut entries = Vec::new();
        let mut pos = 0;
        match self {
            LogFormat::JsonFile => {
                while let Some(n) = buf[pos..].iter().position(|&b| b == b'\n') {
                    if let Ok(e) = serde_json::from_slice::<Entry>(&buf[pos..pos + n]) {
                        entries.push(e);
                    }
                    pos += n + 1;
                }
            }
            LogFormat::Local => loop {
                match local_log::read_frame(&buf[pos..]) {
                    Ok(Some((e, n))) => {
                        entries.push(Entry::from_local(e));
                        pos += n;
                    }
                    Ok(None) => break,
                    // A corrupt frame: nothing after it can be framed reliably.
                    Err(_) => {
                        pos = buf.len();
                        break;
                    }
                }
            },
        }
        (entries, pos)
    }
}

impl Entry {
    fn from_local(e: local_log::LogEntry) -> Self {
        let ends_line = e.ends_line();
        let mut log = String::from_utf8_lossy(&e.line).into_owned();
        if ends_line {
            log.push('\n');
        }
        Entry {
            log,
            stream: e.source,
            time: DateTime::from_timestamp_nanos(e.time_nano),
        }
    }
}

/// The file being read: held open, so a rotation (a rename) does not lose its end.
#[derive(Debug)]
struct Current {
    file: File,
    ino: u64,
    offset: u64,
}

/// Reads a log (json-file or local) and its rotated files, and keeps reading what is added.
#[derive(Debug)]
pub struct LogReader {
    format: LogFormat,
    path: PathBuf,
    cur: Option<Current>,
    /// Start with the rotated files (and the live file from its beginning).
    history: bool,
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Whether rotated file `n` exists, uncompressed or (`<log>.n.gz`) gzipped.
fn rotated_exists(path: &Path, n: u32) -> bool {
    let p = rotated(path, n);
    p.exists() || gz_name(&p).exists()
}

/// The inode of the file a gzipped rotated file was made from (kept in its gzip header).
fn gz_source_inode(gz: &Path) -> Option<u64> {
    let f = File::open(gz).ok()?;
    let mut d = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    if d.header().is_none() {
        let _ = d.read(&mut [0u8; 1]);
    }
    let extra = d.header()?.extra()?;
    serde_json::from_slice::<RotatedMeta>(extra)
        .ok()
        .map(|m| m.source_inode)
}

fn open_missing_ok(path: &Path) -> std::io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl LogReader {
    /// Reads the whole log, rotated files first; the format follows the file name.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        LogReader {
            format: LogFormat::of_path(&path),
            path,
            cur: None,
            history: true,
        }
    }

    /// Reads only what is written from now on.
    pub fn at_end(path: impl Into<PathBuf>) -> Self {
        let mut r = LogReader::new(path);
        r.history = false;
        if let Ok(Some(file)) = open_missing_ok(&r.path)
            && let Ok(m) = file.metadata()
        {
            r.cur = Some(Current {
                file,
                ino: m.ino(),
                offset: m.len(),
            });
        }
        r
    }

    /// The live log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Complete entries not read before, oldest first.
    pub fn read(&mut self) -> std::io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        if self.cur.is_none() {
            if self.history {
                let mut n = 0;
                while n < 100_000 && rotated_exists(&self.path, n + 1) {
                    n += 1;
                }
                for k in (1..=n).rev() {
                    self.read_rotated(k, &mut entries)?;
                }
            }
            if !self.open_live()? {
                return Ok(entries);
            }
        }
        self.read_current(&mut entries)?;
        // Rotated under us? The held file has its final content now (the writer moved on):
        // read its end, then any newer rotated files, then the new live file.
        let ino = self.cur.as_ref().map(|c| c.ino);
        let live = match std::fs::metadata(&self.path) {
            Ok(m) => m.ino(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(e),
        };
        if Some(live) != ino {
            self.read_current(&mut entries)?;
            // Which rotated file is the one we held: by inode, or for a gzipped one by the
            // source inode its header records.
            let mut k = 1;
            let mut found = None;
            while k < 100_000 {
                let plain = rotated(&self.path, k);
                let same = match std::fs::metadata(&plain) {
                    Ok(m) => Some(m.ino()) == ino,
                    Err(_) => {
                        let gz = gz_name(&plain);
                        if !gz.exists() {
                            break;
                        }
                        gz_source_inode(&gz) == ino
                    }
                };
                if same {
                    found = Some(k);
                    break;
                }
                k += 1;
            }
            if let Some(k) = found {
                for n in (1..k).rev() {
                    self.read_rotated(n, &mut entries)?;
                }
            }
            self.cur = None;
            if self.open_live()? {
                self.read_current(&mut entries)?;
            }
        }
        Ok(entries)
    }

    fn open_live(&mut self) -> std::io::Result<bool> {
        let Some(file) = open_missing_ok(&self.path)? else {
            return Ok(false);
        };
        let ino = file.metadata()?.ino();
        self.cur = Some(Current {
            file,
            ino,
            offset: 0,
        });
        Ok(true)
    }

    fn read_current(&mut self, entries: &mut Vec<Entry>) -> std::io::Result<()> {
        let Some(c) = self.cur.as_mut() else {
            return Ok(());
        };
        if c.file.metadata()?.len() < c.offset {
            // Truncated (json-file with max-file=1 rotates in place).
            c.offset = 0;
        }
        c.file.seek(SeekFrom::Start(c.offset))?;
        let mut buf = Vec::new();
        (&c.file).read_to_end(&mut buf)?;
        let (mut new, used) = self.format.decode(&buf);
        c.offset += used as u64;
        entries.append(&mut new);
        Ok(())
    }

    /// Reads rotated file `n`: `<log>.n`, or `<log>.n.gz` once the shim compressed it (the
    /// shim renames the `.gz` into place before removing the plain file, so one is there).
    fn read_rotated(&self, n: u32, entries: &mut Vec<Entry>) -> std::io::Result<()> {
        let plain = rotated(&self.path, n);
        let mut buf = Vec::new();
        if let Some(mut f) = open_missing_ok(&plain)? {
            f.read_to_end(&mut buf)?;
        } else if let Some(f) = open_missing_ok(&gz_name(&plain))? {
            flate2::read::GzDecoder::new(std::io::BufReader::new(f))
                .read_to_end(&mut buf)
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}.gz: {e}", plain.display()))
                })?;
        } else {
            return Ok(());
        }
        entries.append(&mut self.format.decode(&buf).0);
        Ok(())
    }
}

/// Reads the complete entries of the json-file log `path` from `offset`; returns them and the
/// offset after the last complete line (a partly written last line is left for the next read).
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<Entry>, u64)> {
    let Some(mut f) = open_missing_ok(path)? else {
        return Ok((Vec::new(), offset));
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let (entries, used) = LogFormat::JsonFile.decode(&buf);
    Ok((entries, offset + used as u64))
}

/// Keeps the last `tail` selected entries.
pub fn select(entries: Vec<Entry>, o: &LogOptions) -> Vec<Entry> {
    let mut selected: Vec<Entry> = entries.into_iter().filter(|e| e.selected(o)).collect();
    if let Some(n) = o.tail
        && selected.len() > n
    {
        selected.drain(..selected.len() - n);
    }
    selected
}

/// Parses Docker's `since`/`until` values: unix seconds with an optional fraction
/// (`1700000000.123456789`), an RFC 3339 time, or a Go duration before now (`10m`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Some((secs, frac)) = t.split_once('.')
        && let (Ok(s), Ok(_)) = (secs.parse::<i64>(), frac.parse::<u64>())
    {
        let digits = format!("{frac:0<9}");
        let nanos: u32 = digits[..9].parse().ok()?;
        return DateTime::from_timestamp(s, nanos);
    }
    if let Ok(s) = t.parse::<i64>() {
        return DateTime::from_timestamp(s, 0);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    berth_api::duration::parse_go_duration(t).map(|n| now - chrono::Duration::nanoseconds(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_selects_and_encodes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x-json.log");
        std::fs::write(
            &p,
            concat!(
                r#"{"log":"a\n","stream":"stdout","time":"2024-01-01T00:00:01.5Z"}"#,
                "\n",
                r#"{"log":"b\n","stream":"stderr","time":"2024-01-01T00:00:02Z"}"#,
                "\n",
                r#"{"log":"c\n","stream":"stdout","time":"2024-01-01T00:00:03Z"}"#,
                "\n",
                r#"{"log":"partial"#
            ),
        )
        .unwrap();
        let (entries, off) = read_from(&p, 0).unwrap();
        assert_eq!(entries.len(), 3);
        let (more, off2) = read_from(&p, off).unwrap();
        assert!(more.is_empty());
        assert_eq!(off, off2);
        let o = LogOptions {
            stdout: true,
            tail: Some(1),
            ..Default::default()
        };
        let sel = select(entries.clone(), &o);
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].log, "c\n");
        let mut out = Vec::new();
        sel[0].encode(&o, true, &mut out);
        assert_eq!(out, b"\x01\0\0\0\0\0\0\x02c\n");
        let both = LogOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            since: parse_time("1704067202", Utc::now()),
            ..Default::default()
        };
        let sel = select(entries, &both);
        assert_eq!(sel.len(), 2);
        let mut raw = Vec::new();
        sel[0].encode(&both, false, &mut raw);
        assert_eq!(raw, b"2024-01-01T00:00:02.000000000Z b\n");
    }

    fn local_frame(out: &mut Vec<u8>, line: &str, secs: i64) {
        local_log::LogEntry {
            source: "stdout".into(),
            time_nano: secs * 1_000_000_000,
            line: line.as_bytes().to_vec(),
            ..Default::default()
        }
        .write_frame(out);
    }

    fn logs(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.log.as_str()).collect()
    }

    #[test]
    fn local_format_reads_with_partials_and_incomplete_frames() {
        let mut buf = Vec::new();
        local_frame(&mut buf, "a", 1);
        for (i, piece) in ["xx", "yy"].iter().enumerate() {
            local_log::LogEntry {
                source: "stderr".into(),
                time_nano: 2_000_000_000,
                line: piece.as_bytes().to_vec(),
                partial: true,
                partial_meta: Some(local_log::PartialMeta {
                    last: i == 1,
                    id: "p".into(),
                    ordinal: i as i32 + 1,
                }),
            }
            .write_frame(&mut buf);
        }
        let whole = buf.len();
        local_frame(&mut buf, "half", 3);
        buf.truncate(buf.len() - 3);
        let (entries, used) = LogFormat::Local.decode(&buf);
        assert_eq!(used, whole);
        assert_eq!(logs(&entries), ["a\n", "xx", "yy\n"]);
        assert_eq!(entries[1].stream, "stderr");
        assert_eq!(entries[0].time.timestamp(), 1);
        let o = LogOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: Some(1),
            ..Default::default()
        };
        let mut out = Vec::new();
        for e in select(entries, &o) {
            e.encode(&o, false, &mut out);
        }
        assert_eq!(out, b"1970-01-01T00:00:02.000000000Z yy\n");
    }

    /// Rotates as the shim does; with `compress`, `<log>.1` is then gzipped as the shim's
    /// compressor does it.
    fn rotate(path: &Path, max_file: u32, compress: bool) {
        let name = |i| {
            if compress {
                gz_name(&rotated(path, i))
            } else {
                rotated(path, i)
            }
        };
        for i in (1..max_file - 1).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::rename(path, rotated(path, 1)).unwrap();
        if compress {
            berth_runtime::shim::compress_file(&rotated(path, 1)).unwrap();
        }
    }

    #[test]
    fn reader_reads_rotated_files_in_order_and_follows_rotations() {
        for (format, compress) in [
            (LogFormat::JsonFile, false),
            (LogFormat::Local, false),
            (LogFormat::JsonFile, true),
            (LogFormat::Local, true),
        ] {
            let rotate = |p: &Path, n| rotate(p, n, compress);
            let d = tempfile::tempdir().unwrap();
            let path = format.path(d.path(), "c");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            assert_eq!(LogFormat::of_path(&path), format);
            let append = |line: &str| {
                let mut b = Vec::new();
                match format {
                    LogFormat::JsonFile => {
                        b.extend_from_slice(
                            serde_json::json!({"log": format!("{line}\n"), "stream": "stdout",
                                "time": "2024-01-01T00:00:00Z"})
                            .to_string()
                            .as_bytes(),
                        );
                        b.push(b'\n');
                    }
                    LogFormat::Local => local_frame(&mut b, line, 1_704_067_200),
                }
                use std::io::Write;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap()
                    .write_all(&b)
                    .unwrap();
            };
            append("1");
            append("2");
            rotate(&path, 3);
            append("3");
            rotate(&path, 3);
            append("4");
            let mut r = LogReader::new(&path);
            assert_eq!(logs(&r.read().unwrap()), ["1\n", "2\n", "3\n", "4\n"]);
            assert!(r.read().unwrap().is_empty());
            // Following: written, then rotated twice, before the next read.
            let mut late = LogReader::at_end(&path);
            append("5");
            rotate(&path, 3);
            append("6");
            rotate(&path, 3);
            append("7");
            assert_eq!(logs(&r.read().unwrap()), ["5\n", "6\n", "7\n"]);
            assert_eq!(logs(&late.read().unwrap()), ["5\n", "6\n", "7\n"]);
            append("8");
            assert_eq!(logs(&r.read().unwrap()), ["8\n"]);
            let all = LogReader::new(&path).read().unwrap();
            assert_eq!(logs(&all), ["4\n", "5\n", "6\n", "7\n", "8\n"]);
            let tail = select(
                all,
                &LogOptions {
                    stdout: true,
                    tail: Some(2),
                    ..Default::default()
                },
            );
            assert_eq!(logs(&tail), ["7\n", "8\n"]);
        }
    }

    #[test]
    fn times() {
        let now = Utc::now();
        assert_eq!(
            parse_time("1700000000.5", now)
                .unwrap()
                .timestamp_subsec_millis(),
            500
        );
        assert_eq!(
            parse_time("1700000000", now).unwrap().timestamp(),
            1_700_000_000
        );
        assert!(parse_time("10m", now).unwrap() < now);
        assert!(parse_time("", now).is_none());
    }
}
