//! Docker's json-file log format: one `{"log":"…","stream":"stdout","time":"…"}` object per
//! line, `time` in RFC 3339 with nanoseconds (UTC). Output is split at newlines; a line longer
//! than 16 KiB is written in pieces without the trailing newline, as Docker does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

const MAX_LINE: usize = 16 * 1024;

#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: &'a str,
    time: String,
}

/// Appends a container's output to its json-file log.
#[derive(Debug)]
pub struct JsonLogWriter {
    file: File,
    pending: [Vec<u8>; 2],
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

impl JsonLogWriter {
    /// Open (append, create) the log at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLogWriter {
            file,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Add output; complete lines are written at once.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let buf = &mut self.pending[stream as usize];
        buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos + 1;
            for chunk in buf[start..end].chunks(MAX_LINE) {
                encode(&mut out, stream, chunk);
            }
            start = end;
        }
        buf.drain(..start);
        while buf.len() >= MAX_LINE {
            let chunk: Vec<u8> = buf.drain(..MAX_LINE).collect();
            encode(&mut out, stream, &chunk);
        }
        if out.is_empty() {
            Ok(())
        } else {
            self.file.write_all(&out)
        }
    }

    /// Write what remains of a stream (a last line without newline).
    pub fn flush_stream(&mut self, stream: Stream) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.pending[stream as usize]);
        if rest.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        encode(&mut out, stream, &rest);
        self.file.write_all(&out)
    }
}

fn encode(out: &mut Vec<u8>, stream: Stream, chunk: &[u8]) {
    let text = String::from_utf8_lossy(chunk);
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
