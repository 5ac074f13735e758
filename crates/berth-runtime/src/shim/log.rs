//! Docker's json-file log format: one `{"log":"…","stream":"stdout","time":"…"}` object per
//! line, `time` in RFC 3339 with nanoseconds (UTC). Output is split at newlines; a line longer
//! than 16 KiB is written in pieces without the trailing newline, as Docker does.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::config::LogConfig;
use crate::error::RuntimeError;

use super::local_log;

const MAX_LINE: usize = 16 * 1024;

/// How a piece of output handed to a driver ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceEnd {
    /// The line ended here (its newline removed).
    Newline,
    /// A 16 KiB piece of a longer line; more of the line follows.
    More,
    /// What remained when the stream ended: a line without its newline.
    Eof,
}

/// The one line splitter of both drivers, Docker's log copier (moby `daemon/logger/copier.go`):
/// each complete line of `buf` goes to `emit` without its newline; a line with no newline
/// within 16 KiB goes out as 16 KiB pieces as soon as they are full. Returns how many bytes
/// were consumed; the caller keeps the rest for the next write (or [`PieceEnd::Eof`]).
fn split_lines(buf: &[u8], mut emit: impl FnMut(&[u8], PieceEnd)) -> usize {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        let window = &rest[..rest.len().min(MAX_LINE)];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                emit(&rest[..i], PieceEnd::Newline);
                start += i + 1;
            }
            None if window.len() == MAX_LINE => {
                emit(window, PieceEnd::More);
                start += MAX_LINE;
            }
            None => return start,
        }
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: &'a str,
    time: String,
}

/// Where a container's output goes besides attached clients (Docker's log drivers).
pub trait LogDriver {
    /// Add output of `stream`.
    fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()>;
    /// Write what remains of a stream (a last line without newline).
    fn flush_stream(&mut self, stream: Stream) -> std::io::Result<()>;
}

/// The `none` driver: output is dropped (attach still sees it).
#[derive(Debug, Default)]
pub struct NoLog;

impl LogDriver for NoLog {
    fn write(&mut self, _: Stream, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn flush_stream(&mut self, _: Stream) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends a container's output to its json-file log, rotating it as Docker does: once the
/// file holds `max_size` bytes or more, `<log>.<n-1>` is dropped, `<log>.<i>` becomes
/// `<log>.<i+1>`, `<log>` becomes `<log>.1` and a new `<log>` starts (with `max_file == 1`
/// the file is truncated instead).
#[derive(Debug)]
pub struct JsonLogWriter {
    out: RotatingFile,
    pending: [Vec<u8>; 2],
}

/// A log file rotated as Docker rotates json-file and local logs.
#[derive(Debug)]
struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_file: u32,
    /// Rotated files are gzipped (`<log>.1.gz`, ...), as Docker's `compress` option does.
    compress: bool,
    /// The newest rotated file being compressed beside the container's output.
    compressing: Option<Compressing>,
}

/// A forked child gzipping one rotated file: `done` reads end-of-file once it has exited.
///
/// A child process rather than a thread: the shim forks helpers and must stay
/// single-threaded for that, and the compressor's buffers never become the shim's heap.
#[derive(Debug)]
struct Compressing {
    done: std::os::fd::OwnedFd,
}

impl Compressing {
    /// Starts gzipping `src` into `<src>.gz` (see [`compress_file`]).
    fn spawn(src: PathBuf) -> std::io::Result<Compressing> {
        let (done, tell) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        // SAFETY: the shim is single-threaded; the child only compresses one file and
        // leaves with `_exit`, running no destructor or exit handler of the shim's.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(done);
                close_inherited(tell.as_raw_fd());
                let code = match compress_file(&src) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("berth-shim: compress {}: {e}", src.display());
                        1
                    }
                };
                drop(tell);
                // SAFETY: ends the child without running the shim's exit handlers or destructors.
                unsafe { nix::libc::_exit(code) }
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => {
                // The shim's reaper collects the child (it ignores pids it does not know).
                drop(tell);
                Ok(Compressing { done })
            }
            Err(e) => Err(std::io::Error::from(e)),
        }
    }

    /// Waits until the child has finished (its end of the pipe closed).
    fn wait(self) {
        let mut b = [0u8; 1];
        loop {
            match rustix::io::read(&self.done, &mut b) {
                Ok(0) => return,
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// In the compressor child: closes what it inherited from the shim (but stdio and `keep`),
/// so that it holds no copy of a container's stdin pipe or of a client's connection, whose
/// closing the other side would otherwise see only when the child exits.
fn close_inherited(keep: std::os::fd::RawFd) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        // SAFETY: this runs in the single-threaded compressor child, which from here on uses
        // only stdio, `keep` and the files `compress_file` opens later. The other descriptors
        // belong to shim objects whose destructors never run in the child (it leaves with
        // `_exit`), so none is closed twice or used after this close.
        unsafe { nix::libc::close(fd) };
    }
}

/// The name of a rotated file once compressed: `<file>.gz`.
pub fn gz_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}

/// What a compressed rotated file's gzip header carries in its extra field (JSON): the inode
/// of the file it was made from, so that a reader following the log can tell which rotated
/// file holds the rest of the file it was reading.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RotatedMeta {
    /// Inode of the uncompressed rotated file.
    #[serde(rename = "sourceInode", default)]
    pub source_inode: u64,
}

/// Gzips `src` into `<src>.gz`: written to a temp file, fsynced, renamed, and only then is
/// `src` removed, so that at every moment one complete copy exists under one of the names.
pub fn compress_file(src: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut input = File::open(src)?;
    let meta = RotatedMeta {
        source_inode: input.metadata()?.ino(),
    };
    let dst = gz_name(src);
    let mut tmp = dst.clone().into_os_string();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let out = File::create(&tmp)?;
        let mut gz = flate2::GzBuilder::new()
            .extra(serde_json::to_vec(&meta).unwrap_or_default())
            .write(std::io::BufWriter::new(out), flate2::Compression::default());
        std::io::copy(&mut input, &mut gz)?;
        let out = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        std::fs::rename(&tmp, &dst)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res?;
    std::fs::remove_file(src)
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout (and the pty's output)
    Stdout = 0,
    /// stderr
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl RotatingFile {
    fn open(path: &Path, max_size: Option<u64>, max_file: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_file: max_file.max(1),
            compress: false,
            compressing: None,
        })
    }

    /// Turns compression of rotated files on; a newest rotated file a previous shim left
    /// uncompressed (it ended mid-compression) is compressed now.
    fn set_compress(&mut self, on: bool) {
        self.compress = on;
        if on && self.max_file > 1 && self.rotated(1).exists() {
            self.compressing = Compressing::spawn(self.rotated(1)).ok();
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// A rotated file under its final name (`.gz` appended when compressing).
    fn rotated_final(&self, n: u32) -> PathBuf {
        if self.compress {
            gz_name(&self.rotated(n))
        } else {
            self.rotated(n)
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.max_file > 1 {
            // Names move only once the previous rotated file is complete under its `.gz`
            // name; this waits only when output outruns gzip.
            if let Some(c) = self.compressing.take() {
                c.wait();
            }
            // The child failed (or could not be forked): compress here rather than let the
            // rename below replace the plain file.
            if self.compress
                && self.rotated(1).exists()
                && let Err(e) = compress_file(&self.rotated(1))
            {
                eprintln!("berth-shim: compress rotated log: {e}");
            }
            let _ = std::fs::remove_file(self.rotated_final(self.max_file - 1));
            for i in (1..self.max_file - 1).rev() {
                let _ = std::fs::rename(self.rotated_final(i), self.rotated_final(i + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            if self.compress {
                match Compressing::spawn(self.rotated(1)) {
                    Ok(c) => self.compressing = Some(c),
                    // Left uncompressed: readers take `<log>.1` as well.
                    Err(e) => eprintln!("berth-shim: cannot compress rotated log: {e}"),
                }
            }
        } else {
            self.file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }

    /// Appends one encoded entry, rotating first if the file is full.
    fn append(&mut self, entry: &[u8]) -> std::io::Result<()> {
        if self.max_size.is_some_and(|m| self.size >= m) {
            self.rotate()?;
        }
        self.file.write_all(entry)?;
        self.size += entry.len() as u64;
        Ok(())
    }
}

impl JsonLogWriter {
    /// Open (append, create) the log at `path`, without rotation.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::with_rotation(path, None, 1)
    }

    /// Open (append, create) the log at `path`; rotate at `max_size` bytes keeping at most
    /// `max_file` files (the live one included).
    pub fn with_rotation(
        path: &Path,
        max_size: Option<u64>,
        max_file: u32,
    ) -> std::io::Result<Self> {
        Ok(JsonLogWriter {
            out: RotatingFile::open(path, max_size, max_file)?,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// One json-file entry; only a complete line keeps its newline in `log`, as in Docker.
    fn emit(&mut self, stream: Stream, chunk: &[u8], end: PieceEnd) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(chunk.len() + 80);
        encode(&mut out, stream, chunk, end == PieceEnd::Newline);
        self.out.append(&out)
    }
}

impl LogDriver for JsonLogWriter {
    fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.pending[stream as usize]);
        buf.extend_from_slice(data);
        let mut res = Ok(());
        let used = split_lines(&buf, |piece, end| {
            let written = self.emit(stream, piece, end);
            if res.is_ok() {
                res = written;
            }
        });
        buf.drain(..used);
        self.pending[stream as usize] = buf;
        res
    }

    fn flush_stream(&mut self, stream: Stream) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.pending[stream as usize]);
        if rest.is_empty() {
            return Ok(());
        }
        self.emit(stream, &rest, PieceEnd::Eof)
    }
}

/// Docker's `local` driver: entries framed as in [`local_log`](super::local_log), in
/// `local-logs/container.log`, rotated like json-file. Lines are stored without their
/// newline; a line over 16 KiB becomes partial entries sharing an id, the piece ending the
/// line marked `last`. An unterminated last line (at exit) is a partial entry without `last`.
#[derive(Debug)]
pub struct LocalLogWriter {
    out: RotatingFile,
    pending: [Vec<u8>; 2],
    /// The current long line of each stream: its id and the last ordinal written.
    partial: [Option<(String, i32)>; 2],
    seq: u64,
}

impl LocalLogWriter {
    /// Open (append, create) `path` (its directory is created), rotating at `max_size` bytes
    /// and keeping at most `max_file` files.
    pub fn with_rotation(
        path: &Path,
        max_size: Option<u64>,
        max_file: u32,
    ) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(LocalLogWriter {
            out: RotatingFile::open(path, max_size, max_file)?,
            pending: [Vec::new(), Vec::new()],
            partial: [None, None],
            seq: 0,
        })
    }

    fn emit(&mut self, stream: Stream, line: &[u8], end: PieceEnd) -> std::io::Result<()> {
        let now = Utc::now();
        let slot = &mut self.partial[stream as usize];
        let meta = if end == PieceEnd::Newline && slot.is_none() {
            None
        } else {
            let (id, ord) = slot.get_or_insert_with(|| {
                self.seq += 1;
                (
                    format!(
                        "{:016x}{:08x}{:08x}",
                        now.timestamp_nanos_opt().unwrap_or_default(),
                        std::process::id(),
                        self.seq
                    ),
                    0,
                )
            });
            *ord += 1;
            let meta = local_log::PartialMeta {
                last: end == PieceEnd::Newline,
                id: id.clone(),
                ordinal: *ord,
            };
            if end != PieceEnd::More {
                *slot = None;
            }
            Some(meta)
        };
        let entry = local_log::LogEntry {
            source: stream.name().to_string(),
            time_nano: now.timestamp_nanos_opt().unwrap_or_default(),
            line: line.to_vec(),
            partial: meta.is_some(),
            partial_meta: meta,
        };
        let mut out = Vec::with_capacity(line.len() + 64);
        entry.write_frame(&mut out);
        self.out.append(&out)
    }
}

impl LogDriver for LocalLogWriter {
    fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.pending[stream as usize]);
        buf.extend_from_slice(data);
        let mut res = Ok(());
        let used = split_lines(&buf, |piece, end| {
            let written = self.emit(stream, piece, end);
            if res.is_ok() {
                res = written;
            }
        });
        buf.drain(..used);
        self.pending[stream as usize] = buf;
        res
    }

    fn flush_stream(&mut self, stream: Stream) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.pending[stream as usize]);
        if rest.is_empty() {
            // A long line whose last piece was full and then the stream ended: its pieces are
            // all written, none marked last (as Docker leaves it); the next line starts anew.
            self.partial[stream as usize] = None;
            return Ok(());
        }
        self.emit(stream, &rest, PieceEnd::Eof)
    }
}

/// A log driver from Docker's `LogConfig`, checked before the container starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "driver", rename_all = "kebab-case")]
pub enum LogDriverConfig {
    /// `json-file`, with rotation when `max_size` is set.
    JsonFile {
        /// `max-size` in bytes.
        #[serde(default)]
        max_size: Option<u64>,
        /// `max-file` (at least 1).
        #[serde(default = "one")]
        max_file: u32,
        /// `compress`: gzip rotated files (Docker's json-file default: no).
        #[serde(default)]
        compress: bool,
    },
    /// `none`
    None,
    /// `local` (Docker's defaults: 20 MiB files, 5 of them, rotated files gzipped).
    Local {
        /// `max-size` in bytes (`None`: unlimited).
        max_size: Option<u64>,
        /// `max-file` (at least 1).
        max_file: u32,
        /// `compress`: gzip rotated files (Docker's local default: yes).
        #[serde(default)]
        compress: bool,
    },
}

/// Docker's `local` defaults.
pub const LOCAL_DEFAULT_MAX_SIZE: u64 = 20 << 20;
/// Docker's `local` defaults.
pub const LOCAL_DEFAULT_MAX_FILE: u32 = 5;

fn one() -> u32 {
    1
}

impl Default for LogDriverConfig {
    fn default() -> Self {
        LogDriverConfig::JsonFile {
            max_size: None,
            max_file: 1,
            compress: false,
        }
    }
}

/// `max-size` of json-file and local: a size like `10m`, in decimal units as Docker's drivers
/// read it (go-units `FromHumanSize`: `10m` is 10,000,000 bytes). Negative sizes, `-1`
/// included, are refused, as by Docker. `0` is refused by json-file (Docker: "max-size must be
/// a positive number"); for local it means no rotation (Docker would rotate before every entry).
fn max_size_opt(v: &str, driver: &str) -> Result<Option<u64>, RuntimeError> {
    let n = berth_api::units::from_human_size(v).map_err(|e| {
        RuntimeError::InvalidConfig(format!("invalid value for log opt max-size: {v:?}: {e}"))
    })?;
    if n == 0 && driver == "json-file" {
        return Err(RuntimeError::InvalidConfig(
            "max-size must be a positive number".into(),
        ));
    }
    Ok(u64::try_from(n).ok().filter(|n| *n > 0))
}

/// `compress` of json-file and local: a Go boolean, as Docker parses it.
fn compress_opt(v: &str) -> Result<bool, RuntimeError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(RuntimeError::InvalidConfig(format!(
            "invalid value for log opt compress: {v:?}"
        ))),
    }
}

/// `max-file` of json-file and local: how many files to keep, at least 1.
fn max_file_opt(v: &str) -> Result<u32, RuntimeError> {
    v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        RuntimeError::InvalidConfig(format!("max-file cannot be less than 1 (got {v:?})"))
    })
}

/// Docker's checks of the options every driver but `none` takes, whatever the driver
/// (`ValidateLogOpts`): `mode` and `max-buffer-size`. Berth's drivers never block the
/// container on a slow disk the way Docker's blocking mode can, so both are accepted and
/// otherwise ignored.
fn check_builtin_opts(opts: &BTreeMap<String, String>) -> Result<(), RuntimeError> {
    let mode = opts.get("mode").map(String::as_str).unwrap_or("");
    if !matches!(mode, "" | "blocking" | "non-blocking") {
        return Err(RuntimeError::InvalidConfig(format!(
            "logger: logging mode not supported: {mode}"
        )));
    }
    if let Some(v) = opts.get("max-buffer-size") {
        if mode != "non-blocking" {
            return Err(RuntimeError::InvalidConfig(
                "logger: max-buffer-size option is only supported with 'mode=non-blocking'".into(),
            ));
        }
        if berth_api::units::ram_in_bytes(v).map_or(true, |n| n < 0) {
            return Err(RuntimeError::InvalidConfig(format!(
                "error parsing option max-buffer-size: invalid size: '{v}'"
            )));
        }
    }
    Ok(())
}

impl LogDriverConfig {
    /// Parse Docker's driver name and options. Other drivers are
    /// [`RuntimeError::LogDriverNotSupported`]; bad options are [`RuntimeError::InvalidConfig`].
    pub fn from_docker(cfg: &LogConfig) -> Result<Self, RuntimeError> {
        let invalid = |m: String| RuntimeError::InvalidConfig(m);
        match cfg.driver.as_str() {
            // Docker validates nothing of `none`'s options.
            "none" => return Ok(LogDriverConfig::None),
            "" | "json-file" | "local" => check_builtin_opts(&cfg.opts)?,
            _ => {}
        }
        match cfg.driver.as_str() {
            "" | "json-file" => {
                let mut max_size = None;
                let mut max_file = 1;
                let mut compress = false;
                for (k, v) in &cfg.opts {
                    match k.as_str() {
                        "max-size" => max_size = max_size_opt(v, "json-file")?,
                        "max-file" => max_file = max_file_opt(v)?,
                        "compress" => compress = compress_opt(v)?,
                        "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {}
                        "mode" | "max-buffer-size" => {}
                        other => {
                            return Err(invalid(format!(
                                "unknown log opt '{other}' for json-file log driver"
                            )));
                        }
                    }
                }
                // Docker accepts max-file without max-size: the log is then never rotated.
                Ok(LogDriverConfig::JsonFile {
                    max_size,
                    max_file,
                    compress,
                })
            }
            "local" => {
                let mut max_size = Some(LOCAL_DEFAULT_MAX_SIZE);
                let mut max_file = LOCAL_DEFAULT_MAX_FILE;
                let mut compress = true;
                for (k, v) in &cfg.opts {
                    match k.as_str() {
                        "max-size" => max_size = max_size_opt(v, "local")?,
                        "max-file" => max_file = max_file_opt(v)?,
                        "compress" => compress = compress_opt(v)?,
                        "mode" | "max-buffer-size" => {}
                        other => {
                            return Err(invalid(format!(
                                "unknown log opt '{other}' for local log driver"
                            )));
                        }
                    }
                }
                Ok(LogDriverConfig::Local {
                    max_size,
                    max_file,
                    compress,
                })
            }
            "none" => Ok(LogDriverConfig::None),
            other => Err(RuntimeError::LogDriverNotSupported {
                driver: other.to_string(),
            }),
        }
    }

    /// Open the driver; `path` is its log file ([`LogDriverConfig::file_name`]).
    pub fn open(&self, path: &Path) -> std::io::Result<Box<dyn LogDriver>> {
        Ok(match self {
            LogDriverConfig::JsonFile {
                max_size,
                max_file,
                compress,
            } => {
                let mut w = JsonLogWriter::with_rotation(path, *max_size, *max_file)?;
                w.out.set_compress(*compress);
                Box::new(w)
            }
            LogDriverConfig::None => Box::new(NoLog),
            LogDriverConfig::Local {
                max_size,
                max_file,
                compress,
            } => {
                let mut w = LocalLogWriter::with_rotation(path, *max_size, *max_file)?;
                w.out.set_compress(*compress);
                Box::new(w)
            }
        })
    }
}

impl LogDriverConfig {
    /// The log file inside a container's directory: `<id>-json.log`, or
    /// `local-logs/container.log` for `local` (rotated files get `.1`, `.2`, ... appended).
    pub fn file_name(&self, id: &str) -> PathBuf {
        match self {
            LogDriverConfig::Local { .. } => Path::new("local-logs").join("container.log"),
            _ => PathBuf::from(format!("{id}-json.log")),
        }
    }
}

fn encode(out: &mut Vec<u8>, stream: Stream, chunk: &[u8], newline: bool) {
    let mut text = String::from_utf8_lossy(chunk);
    if newline {
        text.to_mut().push('\n');
    }
    let entry = Entry {
        log: &text,
        stream: stream.name(),
        time: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
    };
    serde_json::to_writer(&mut *out, &entry).expect("log entry serializes");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_keeping_max_file_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut w = JsonLogWriter::with_rotation(&p, Some(200), 3).unwrap();
        for i in 0..100 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["c-json.log", "c-json.log.1", "c-json.log.2"]);
        for n in &names {
            let len = std::fs::metadata(dir.path().join(n)).unwrap().len();
            assert!(len < 200 + 100, "{n}: {len}");
        }
        let last = std::fs::read_to_string(&p).unwrap();
        assert!(last.contains("line 99"), "{last}");
        let older = std::fs::read_to_string(dir.path().join("c-json.log.2")).unwrap();
        let newer = std::fs::read_to_string(dir.path().join("c-json.log.1")).unwrap();
        let first_num = |t: &str| -> u32 {
            let v: serde_json::Value = serde_json::from_str(t.lines().next().unwrap()).unwrap();
            v["log"].as_str().unwrap()[5..].trim().parse().unwrap()
        };
        assert!(first_num(&older) < first_num(&newer));
        assert!(first_num(&newer) < first_num(&last));
    }

    #[test]
    fn long_lines_are_split_as_partial_messages() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = JsonLogWriter::open(&p).unwrap();
        let line = "x".repeat(MAX_LINE * 2 + 10) + "\n";
        w.write(Stream::Stdout, &line.as_bytes()[..100]).unwrap();
        w.write(Stream::Stdout, &line.as_bytes()[100..]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let logs: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["log"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(logs.len(), 3);
        assert_eq!(logs[0].len(), MAX_LINE);
        assert!(!logs[0].ends_with('\n') && !logs[1].ends_with('\n'));
        assert_eq!(logs[2], "x".repeat(10) + "\n");
    }

    #[test]
    fn docker_log_options() {
        let cfg = |d: &str, o: &[(&str, &str)]| LogConfig {
            driver: d.into(),
            opts: o
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert_eq!(
            LogDriverConfig::from_docker(&cfg(
                "json-file",
                &[("max-size", "10m"), ("max-file", "3")]
            ))
            .unwrap(),
            LogDriverConfig::JsonFile {
                max_size: Some(10_000_000),
                max_file: 3,
                compress: false,
            }
        );
        assert_eq!(
            LogDriverConfig::from_docker(&cfg("", &[])).unwrap(),
            LogDriverConfig::default()
        );
        assert_eq!(
            LogDriverConfig::from_docker(&cfg("none", &[])).unwrap(),
            LogDriverConfig::None
        );
        assert_eq!(
            LogDriverConfig::from_docker(&cfg("local", &[])).unwrap(),
            LogDriverConfig::Local {
                max_size: Some(20 << 20),
                max_file: 5,
                compress: true,
            }
        );
        assert_eq!(
            LogDriverConfig::from_docker(&cfg(
                "local",
                &[("max-size", "1k"), ("max-file", "2"), ("compress", "false")]
            ))
            .unwrap(),
            LogDriverConfig::Local {
                max_size: Some(1000),
                max_file: 2,
                compress: false,
            }
        );
        assert!(matches!(
            LogDriverConfig::from_docker(&cfg(
                "json-file",
                &[("max-size", "1k"), ("max-file", "2"), ("compress", "true")]
            )),
            Ok(LogDriverConfig::JsonFile { compress: true, .. })
        ));
        assert!(matches!(
            LogDriverConfig::from_docker(&cfg("local", &[("compress", "maybe")])),
            Err(RuntimeError::InvalidConfig(_))
        ));
        assert!(matches!(
            LogDriverConfig::from_docker(&cfg("local", &[("labels", "a")])),
            Err(RuntimeError::InvalidConfig(_))
        ));
        assert!(matches!(
            LogDriverConfig::from_docker(&cfg("gelf", &[])),
            Err(RuntimeError::LogDriverNotSupported { .. })
        ));
        // As Docker: max-file alone is accepted (nothing rotates without max-size).
        assert_eq!(
            LogDriverConfig::from_docker(&cfg("json-file", &[("max-file", "2")])).unwrap(),
            LogDriverConfig::JsonFile {
                max_size: None,
                max_file: 2,
                compress: false,
            }
        );
        assert!(LogDriverConfig::from_docker(&cfg("", &[("max-file", "2")])).is_ok());
        // Docker's options of every driver, and none's options are never checked.
        assert!(
            LogDriverConfig::from_docker(&cfg(
                "json-file",
                &[("mode", "non-blocking"), ("max-buffer-size", "4m")]
            ))
            .is_ok()
        );
        assert!(LogDriverConfig::from_docker(&cfg("local", &[("mode", "blocking")])).is_ok());
        assert_eq!(
            LogDriverConfig::from_docker(&cfg("none", &[("max-size", "1k"), ("x", "y")])).unwrap(),
            LogDriverConfig::None
        );
        let message = |d: &str, o: &[(&str, &str)]| match LogDriverConfig::from_docker(&cfg(d, o)) {
            Err(RuntimeError::InvalidConfig(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message("json-file", &[("mode", "fast")]),
            "logger: logging mode not supported: fast"
        );
        assert_eq!(
            message("local", &[("max-buffer-size", "1m")]),
            "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
        );
        assert!(matches!(
            LogDriverConfig::from_docker(&cfg("json-file", &[("max-size", "ten")])),
            Err(RuntimeError::InvalidConfig(_))
        ));
        let max_size = |driver: &str, v: &str| match LogDriverConfig::from_docker(&cfg(
            driver,
            &[("max-size", v)],
        )) {
            Ok(
                LogDriverConfig::JsonFile { max_size, .. }
                | LogDriverConfig::Local { max_size, .. },
            ) => Ok(max_size),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        // Decimal units, as Docker's drivers parse max-size (go-units FromHumanSize).
        assert_eq!(max_size("json-file", "1k"), Ok(Some(1000)));
        assert_eq!(max_size("json-file", "1.5KB"), Ok(Some(1500)));
        assert_eq!(max_size("local", "10m"), Ok(Some(10_000_000)));
        assert_eq!(max_size("json-file", "100"), Ok(Some(100)));
        // -1 is no size for Docker either; 0 is refused by json-file, unlimited for local.
        for driver in ["json-file", "local"] {
            let err = max_size(driver, "-1").unwrap_err();
            assert!(err.ends_with("invalid size: '-1'"), "{driver}: {err}");
        }
        let err = max_size("json-file", "0").unwrap_err();
        assert!(err.ends_with("max-size must be a positive number"), "{err}");
        assert_eq!(max_size("local", "0"), Ok(None));
    }

    fn local_entries(path: &Path) -> Vec<local_log::LogEntry> {
        let buf = std::fs::read(path).unwrap();
        let mut pos = 0;
        let mut out = Vec::new();
        while let Some((e, n)) = local_log::read_frame(&buf[pos..]).unwrap() {
            out.push(e);
            pos += n;
        }
        assert_eq!(pos, buf.len());
        out
    }

    #[test]
    fn one_splitter_cuts_lines_as_dockers_copier() {
        use PieceEnd::*;
        let data = [
            &b"a\n"[..],
            &[b'x'; MAX_LINE],
            b"\nb\n",
            &[b'y'; MAX_LINE - 1],
            b"\n",
            &[b'z'; MAX_LINE + 1],
            b"tail",
        ]
        .concat();
        let mut pieces = Vec::new();
        let used = split_lines(&data, |p, end| pieces.push((p.len(), end)));
        assert_eq!(
            pieces,
            [
                (1, Newline),
                // A full 16 KiB without a newline goes out at once; the newline then ends an
                // empty last piece, as with Docker's 16 KiB copier buffer.
                (MAX_LINE, More),
                (0, Newline),
                (1, Newline),
                (MAX_LINE - 1, Newline),
                (MAX_LINE, More),
            ]
        );
        assert_eq!(&data[used..], b"ztail");
    }

    #[test]
    fn a_line_of_exactly_16k_is_a_piece_and_an_empty_last_piece_in_both_drivers() {
        let dir = tempfile::tempdir().unwrap();
        let line = "x".repeat(MAX_LINE) + "\n";
        let p = dir.path().join("c-json.log");
        let mut w = JsonLogWriter::open(&p).unwrap();
        w.write(Stream::Stdout, line.as_bytes()).unwrap();
        let logs: Vec<String> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["log"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(logs, [line[..MAX_LINE].to_string(), "\n".to_string()]);

        let p = dir.path().join("local-logs/container.log");
        let mut w = LocalLogWriter::with_rotation(&p, None, 1).unwrap();
        w.write(Stream::Stdout, line.as_bytes()).unwrap();
        w.flush_stream(Stream::Stdout).unwrap();
        let es = local_entries(&p);
        assert_eq!(es.len(), 2);
        assert_eq!(es[0].line.len(), MAX_LINE);
        assert!(es[0].partial && !es[0].ends_line());
        assert!(es[1].line.is_empty() && es[1].ends_line());
        assert_eq!(
            es[0].partial_meta.as_ref().unwrap().id,
            es[1].partial_meta.as_ref().unwrap().id
        );
    }

    #[test]
    fn local_writer_frames_lines_and_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = LogDriverConfig::Local {
            max_size: None,
            max_file: 1,
            compress: true,
        }
        .file_name("x");
        let p = dir.path().join(p);
        let mut w = LocalLogWriter::with_rotation(&p, None, 1).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n\n").unwrap();
        w.write(Stream::Stdout, b"lo\n").unwrap();
        let long = "y".repeat(MAX_LINE * 2 + 5) + "\n";
        w.write(Stream::Stdout, &long.as_bytes()[..MAX_LINE + 3])
            .unwrap();
        w.write(Stream::Stdout, &long.as_bytes()[MAX_LINE + 3..])
            .unwrap();
        w.write(Stream::Stdout, b"tail").unwrap();
        w.flush_stream(Stream::Stdout).unwrap();
        let es = local_entries(&p);
        let lines: Vec<(&str, &[u8], bool)> = es
            .iter()
            .map(|e| (e.source.as_str(), &e.line[..], e.partial))
            .collect();
        assert_eq!(lines[0], ("stderr", &b"oops"[..], false));
        assert_eq!(lines[1], ("stderr", &b""[..], false));
        assert_eq!(lines[2], ("stdout", &b"hello"[..], false));
        assert_eq!(es.len(), 7);
        let pieces = &es[3..6];
        let id = &pieces[0].partial_meta.as_ref().unwrap().id;
        for (i, e) in pieces.iter().enumerate() {
            let m = e.partial_meta.as_ref().unwrap();
            assert!(e.partial);
            assert_eq!(&m.id, id);
            assert_eq!(m.ordinal, i as i32 + 1);
            assert_eq!(m.last, i == 2);
            assert_eq!(e.ends_line(), i == 2);
        }
        assert_eq!(pieces[0].line.len(), MAX_LINE);
        assert_eq!(pieces[2].line, b"yyyyy");
        // The unterminated last line: partial, not ending a line.
        assert_eq!(es[6].line, b"tail");
        assert!(es[6].partial && !es[6].ends_line());
        assert_ne!(&es[6].partial_meta.as_ref().unwrap().id, id);
        assert!(es[0].time_nano > 1_700_000_000_000_000_000);
    }

    #[test]
    fn local_writer_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("local-logs/container.log");
        let cfg = LogDriverConfig::Local {
            max_size: Some(300),
            max_file: 3,
            compress: false,
        };
        let mut w = cfg.open(&p).unwrap();
        for i in 0..200 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("local-logs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["container.log", "container.log.1", "container.log.2"]
        );
        let first = |n: &str| {
            let es = local_entries(&dir.path().join("local-logs").join(n));
            String::from_utf8(es[0].line.clone()).unwrap()[5..]
                .parse::<u32>()
                .unwrap()
        };
        assert!(first("container.log.2") < first("container.log.1"));
        assert!(first("container.log.1") < first("container.log"));
        let last = local_entries(&p);
        assert_eq!(last.last().unwrap().line, b"line 199");
    }

    #[test]
    fn compressed_rotation_keeps_every_line_in_gzip_files() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("local-logs/container.log");
        let mut w = LocalLogWriter::with_rotation(&p, Some(300), 4).unwrap();
        w.out.set_compress(true);
        for i in 0..200 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        if let Some(c) = w.out.compressing.take() {
            c.wait();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("local-logs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "container.log",
                "container.log.1.gz",
                "container.log.2.gz",
                "container.log.3.gz"
            ]
        );
        let mut lines = Vec::new();
        for n in [
            "container.log.3.gz",
            "container.log.2.gz",
            "container.log.1.gz",
        ] {
            let raw = std::fs::read(dir.path().join("local-logs").join(n)).unwrap();
            assert_eq!(&raw[..2], &[0x1f, 0x8b], "{n} is gzip");
            let mut gz = flate2::read::GzDecoder::new(&raw[..]);
            let mut plain = Vec::new();
            gz.read_to_end(&mut plain).unwrap();
            let meta: RotatedMeta =
                serde_json::from_slice(gz.header().unwrap().extra().unwrap()).unwrap();
            assert_ne!(meta.source_inode, 0);
            let unpacked = dir.path().join("plain");
            std::fs::write(&unpacked, plain).unwrap();
            lines.extend(local_entries(&unpacked));
        }
        lines.extend(local_entries(&p));
        let nums: Vec<u32> = lines
            .iter()
            .map(|e| {
                String::from_utf8(e.line[5..].to_vec())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let first = nums[0];
        assert!(first > 0, "the oldest files were dropped");
        assert_eq!(nums, (first..200).collect::<Vec<_>>());
    }

    #[test]
    fn splits_lines_and_flushes_partial() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = JsonLogWriter::open(&p).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"lo\nwor").unwrap();
        w.flush_stream(Stream::Stdout).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["log"], "oops\n");
        assert_eq!(lines[0]["stream"], "stderr");
        assert_eq!(lines[1]["log"], "hello\n");
        assert_eq!(lines[2]["log"], "wor");
        let t = lines[1]["time"].as_str().unwrap();
        assert!(
            t.ends_with('Z') && t.len() == "2026-11-22T19:50:23.123456789Z".len(),
            "{t}"
        );
    }
}
