//! Reading the json-file log (`<id>-json.log`): one JSON object per line,
//! `{"log":"hello\n","stream":"stdout","time":"2024-...Z"}`, as Docker writes it.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

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

/// Reads the complete entries of `path` from `offset`; returns them and the offset after the
/// last complete line (a partly written last line is left for the next read).
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<Entry>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(f);
    let mut entries = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_str::<Entry>(line.trim_end()) {
            entries.push(e);
        }
    }
    Ok((entries, pos))
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
