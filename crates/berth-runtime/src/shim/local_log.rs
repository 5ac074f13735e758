//! The on-disk format of Docker's `local` log driver (`local-logs/container.log`): each entry
//! is a protobuf `LogEntry` framed as `[u32 BE length][message][u32 BE length]`, the length
//! repeated after the message so the file can be read backwards.
//!
//! ```text
//! message LogEntry {
//!   string source = 1;  int64 time_nano = 2;  bytes line = 3;  bool partial = 4;
//!   PartialLogEntryMetadata partial_log_metadata = 5;
//! }
//! message PartialLogEntryMetadata { bool last = 1; string id = 2; int32 ordinal = 3; }
//! ```
//!
//! Encoded by hand (proto3: fields at their default value are left out; unknown fields are
//! skipped when decoding). `line` holds the output without its trailing newline; a line
//! longer than 16 KiB is stored in pieces with `partial` set and the metadata numbering them,
//! the last piece of a newline-terminated line having `last` set.

use std::fmt;

/// Bytes of the length prefix (and of the suffix).
pub const LEN_BYTES: usize = 4;
/// The largest message accepted when reading (Docker's limit is 1 MiB per entry).
pub const MAX_MESSAGE: usize = 1 << 20;

/// One `LogEntry`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogEntry {
    /// `stdout` or `stderr`.
    pub source: String,
    /// Unix time in nanoseconds.
    pub time_nano: i64,
    /// The output, without a trailing newline.
    pub line: Vec<u8>,
    /// One piece of a longer line (or an unterminated last line).
    pub partial: bool,
    /// Which piece, when `partial`.
    pub partial_meta: Option<PartialMeta>,
}

/// `PartialLogEntryMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialMeta {
    /// The last piece of the line.
    pub last: bool,
    /// Shared by the pieces of one line.
    pub id: String,
    /// 1-based position of the piece.
    pub ordinal: i32,
}

/// A malformed message or frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed local log entry: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

fn err<T>(m: &str) -> Result<T, DecodeError> {
    Err(DecodeError(m.to_string()))
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, VARINT);
    put_varint(out, v);
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return err("truncated varint");
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err("varint too long")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let Some(end) = end else {
            return err("truncated field");
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| DecodeError("length overflow".into()))?)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError("invalid UTF-8".into()))
    }

    /// The next key: (field number, wire type).
    fn key(&mut self) -> Result<(u64, u8), DecodeError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => err("unsupported wire type"),
        }
    }
}

fn expect(wire: u8, want: u8) -> Result<(), DecodeError> {
    if wire == want {
        Ok(())
    } else {
        err("unexpected wire type")
    }
}

impl PartialMeta {
    fn encode(&self, out: &mut Vec<u8>) {
        if self.last {
            put_uint(out, 1, 1);
        }
        if !self.id.is_empty() {
            put_bytes(out, 2, self.id.as_bytes());
        }
        if self.ordinal != 0 {
            // int32: negative values are sign-extended to 64 bits.
            put_uint(out, 3, i64::from(self.ordinal) as u64);
        }
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor { buf, pos: 0 };
        let mut m = PartialMeta::default();
        while !c.done() {
            match c.key()? {
                (1, w) => {
                    expect(w, VARINT)?;
                    m.last = c.varint()? != 0;
                }
                (2, w) => {
                    expect(w, LEN)?;
                    m.id = c.string()?;
                }
                (3, w) => {
                    expect(w, VARINT)?;
                    m.ordinal = c.varint()? as i64 as i32;
                }
                (_, w) => c.skip(w)?,
            }
        }
        Ok(m)
    }
}

impl LogEntry {
    /// Appends the protobuf encoding (no framing).
    pub fn encode(&self, out: &mut Vec<u8>) {
        if !self.source.is_empty() {
            put_bytes(out, 1, self.source.as_bytes());
        }
        if self.time_nano != 0 {
            put_uint(out, 2, self.time_nano as u64);
        }
        if !self.line.is_empty() {
            put_bytes(out, 3, &self.line);
        }
        if self.partial {
            put_uint(out, 4, 1);
        }
        if let Some(m) = &self.partial_meta {
            let mut inner = Vec::with_capacity(m.id.len() + 16);
            m.encode(&mut inner);
            put_bytes(out, 5, &inner);
        }
    }

    /// Decodes one protobuf message (no framing).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor { buf, pos: 0 };
        let mut e = LogEntry::default();
        while !c.done() {
            match c.key()? {
                (1, w) => {
                    expect(w, LEN)?;
                    e.source = c.string()?;
                }
                (2, w) => {
                    expect(w, VARINT)?;
                    e.time_nano = c.varint()? as i64;
                }
                (3, w) => {
                    expect(w, LEN)?;
                    e.line = c.bytes()?.to_vec();
                }
                (4, w) => {
                    expect(w, VARINT)?;
                    e.partial = c.varint()? != 0;
                }
                (5, w) => {
                    expect(w, LEN)?;
                    e.partial_meta = Some(PartialMeta::decode(c.bytes()?)?);
                }
                (_, w) => c.skip(w)?,
            }
        }
        Ok(e)
    }

    /// Appends the entry framed as in `container.log`.
    pub fn write_frame(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; LEN_BYTES]);
        self.encode(out);
        let len = (out.len() - start - LEN_BYTES) as u32;
        out[start..start + LEN_BYTES].copy_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
    }

    /// Whether the entry ends a line (the reader adds the newline): a whole line, or the last
    /// piece of a long one.
    pub fn ends_line(&self) -> bool {
        !self.partial || self.partial_meta.as_ref().is_some_and(|m| m.last)
    }
}

/// Reads the frame at the start of `buf`: `Ok(None)` when it is not complete yet, otherwise
/// the entry and the bytes it took.
pub fn read_frame(buf: &[u8]) -> Result<Option<(LogEntry, usize)>, DecodeError> {
    let Some(prefix) = buf.get(..LEN_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if len > MAX_MESSAGE {
        return err("entry larger than 1 MiB");
    }
    let total = LEN_BYTES + len + LEN_BYTES;
    if buf.len() < total {
        return Ok(None);
    }
    let suffix = &buf[LEN_BYTES + len..total];
    if u32::from_be_bytes(suffix.try_into().expect("4 bytes")) as usize != len {
        return err("length suffix does not match prefix");
    }
    let e = LogEntry::decode(&buf[LEN_BYTES..LEN_BYTES + len])?;
    Ok(Some((e, total)))
}

/// Where the last complete frame of `buf` starts, found through the length suffix (reading
/// backwards, for `tail`); `None` when `buf` does not end with a frame.
pub fn last_frame_start(buf: &[u8]) -> Option<usize> {
    let n = buf.len();
    let suffix = buf.get(n.checked_sub(LEN_BYTES)?..)?;
    let len = u32::from_be_bytes(suffix.try_into().ok()?) as usize;
    n.checked_sub(len.checked_add(2 * LEN_BYTES)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(e: &LogEntry) {
        let mut b = Vec::new();
        e.encode(&mut b);
        assert_eq!(&LogEntry::decode(&b).unwrap(), e);
        let mut f = Vec::new();
        e.write_frame(&mut f);
        e.write_frame(&mut f);
        let (d, n) = read_frame(&f).unwrap().unwrap();
        assert_eq!(&d, e);
        assert_eq!(n * 2, f.len());
        assert_eq!(last_frame_start(&f), Some(n));
        assert_eq!(read_frame(&f[..n - 1]).unwrap(), None);
    }

    #[test]
    fn known_encoding() {
        let e = LogEntry {
            source: "stdout".into(),
            time_nano: 1,
            line: b"hi".to_vec(),
            partial: false,
            partial_meta: None,
        };
        let mut b = Vec::new();
        e.encode(&mut b);
        assert_eq!(b, b"\x0a\x06stdout\x10\x01\x1a\x02hi");
        let mut f = Vec::new();
        e.write_frame(&mut f);
        assert_eq!(&f[..4], &[0, 0, 0, 14]);
        assert_eq!(&f[f.len() - 4..], &[0, 0, 0, 14]);
        // Default values are left out entirely.
        let mut empty = Vec::new();
        LogEntry::default().encode(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn roundtrips() {
        roundtrip(&LogEntry {
            source: "stderr".into(),
            time_nano: 1_795_000_000_123_456_789,
            line: b"hello \xff world".to_vec(),
            ..Default::default()
        });
        roundtrip(&LogEntry {
            source: "stdout".into(),
            time_nano: -5,
            line: Vec::new(),
            ..Default::default()
        });
        // A line over 16 KiB in three partial pieces.
        let long = vec![b'x'; 16 * 1024 * 2 + 10];
        for (i, piece) in long.chunks(16 * 1024).enumerate() {
            let e = LogEntry {
                source: "stdout".into(),
                time_nano: 42,
                line: piece.to_vec(),
                partial: true,
                partial_meta: Some(PartialMeta {
                    last: i == 2,
                    id: "0123abcd".into(),
                    ordinal: i as i32 + 1,
                }),
            };
            roundtrip(&e);
            assert_eq!(e.ends_line(), i == 2);
        }
        roundtrip(&LogEntry {
            partial: true,
            partial_meta: Some(PartialMeta {
                ordinal: -3,
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    #[test]
    fn skips_unknown_fields_and_rejects_garbage() {
        let mut b = Vec::new();
        put_uint(&mut b, 9, 300);
        put_bytes(&mut b, 10, b"zz");
        b.extend_from_slice(&[(11 << 3) | FIXED32, 1, 2, 3, 4]);
        b.extend_from_slice(&[(12 << 3) | FIXED64, 1, 2, 3, 4, 5, 6, 7, 8]);
        put_bytes(&mut b, 3, b"ok");
        assert_eq!(LogEntry::decode(&b).unwrap().line, b"ok");
        assert!(LogEntry::decode(b"\x1a\x05ab").is_err());
        assert!(LogEntry::decode(b"\x0a\x01\xff").is_err());
        let mut f = Vec::new();
        LogEntry::default().write_frame(&mut f);
        f[7] = 1;
        assert!(read_frame(&f).is_err());
    }
}
