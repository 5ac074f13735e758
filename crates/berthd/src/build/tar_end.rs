//! Go's tar reader ends an archive cleanly when the stream stops after an entry's data, even
//! without the padding and the two zero blocks; the docker CLI relies on it (`docker build -f -`
//! appends the Dockerfile read from stdin and sends no end of archive). [`TarEnd`] supplies what
//! such a stream lacks, so the strict extractor accepts exactly what dockerd accepts: a stream
//! cut inside a header or inside an entry's data still fails.

use std::io::{self, Read};

const BLOCK: u64 = 512;

enum State {
    /// Reading a header block; `n` bytes of it seen.
    Header { n: usize },
    /// Reading `left` bytes of entry data, then `pad` bytes of padding.
    Data { left: u64, pad: u64 },
    /// The inner stream ended where Go would stop: `left` bytes of zeros still to give.
    Closing { left: u64 },
}

pub struct TarEnd<R> {
    inner: R,
    state: State,
    header: [u8; 512],
}

impl<R: Read> TarEnd<R> {
    pub fn new(inner: R) -> Self {
        TarEnd {
            inner,
            state: State::Header { n: 0 },
            header: [0; 512],
        }
    }
}

/// The size field of a header (octal, or base-256 with the high bit set).
fn entry_size(h: &[u8; 512]) -> u64 {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(0u64, |acc, b| acc.wrapping_shl(8) | u64::from(*b));
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    u64::from_str_radix(text.trim(), 8).unwrap_or(0)
}

impl<R: Read> Read for TarEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let State::Closing { left } = &mut self.state {
            let n = (*left).min(buf.len() as u64) as usize;
            buf[..n].fill(0);
            *left -= n as u64;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.state = match self.state {
                // Between entries, or inside the padding: where Go's reader stops cleanly.
                State::Header { n: 0 } => State::Closing { left: 2 * BLOCK },
                State::Data { left: 0, pad } => State::Closing {
                    left: pad + 2 * BLOCK,
                },
                // Cut inside a header or the data: the extractor reports the truncation.
                _ => return Ok(0),
            };
            return self.read(buf);
        }
        // Follow the structure through what was read.
        let mut data = &buf[..n];
        while !data.is_empty() {
            match &mut self.state {
                State::Header { n: seen } => {
                    let take = (512 - *seen).min(data.len());
                    self.header[*seen..*seen + take].copy_from_slice(&data[..take]);
                    *seen += take;
                    data = &data[take..];
                    if *seen == 512 {
                        let size = if self.header.iter().all(|b| *b == 0) {
                            0
                        } else {
                            entry_size(&self.header)
                        };
                        // Links, directories and the like carry no data whatever their size
                        // field says; regular files, PAX and GNU long-name records do.
                        let carries_data = matches!(
                            self.header[156],
                            b'0' | 0 | b'7' | b'x' | b'g' | b'L' | b'K'
                        );
                        let size = if carries_data { size } else { 0 };
                        self.state = State::Data {
                            left: size,
                            pad: (BLOCK - size % BLOCK) % BLOCK,
                        };
                        if size == 0 {
                            self.state = State::Header { n: 0 };
                        }
                    }
                }
                State::Data { left, pad } => {
                    if *left > 0 {
                        let take = (*left).min(data.len() as u64);
                        *left -= take;
                        data = &data[take as usize..];
                    } else {
                        let take = (*pad).min(data.len() as u64);
                        *pad -= take;
                        data = &data[take as usize..];
                    }
                    if *left == 0 && *pad == 0 {
                        self.state = State::Header { n: 0 };
                    }
                }
                State::Closing { .. } => unreachable!("closing only after the inner stream ends"),
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn names(bytes: &[u8]) -> io::Result<Vec<String>> {
        let mut ar = tar::Archive::new(TarEnd::new(bytes));
        let mut out = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            io::copy(&mut e, &mut io::sink())?;
            out.push(e.path()?.to_string_lossy().into_owned());
        }
        Ok(out)
    }

    #[test]
    fn accepts_what_go_accepts_and_no_more() {
        let full = tar_of(&[("a", b"aaa"), ("Dockerfile", b"FROM busybox\n")]);
        assert_eq!(names(&full).unwrap(), ["a", "Dockerfile"]);
        // The docker CLI's `-f -` stream: the last entry's data, then nothing.
        let cut = &full[..512 * 3 + 13];
        assert_eq!(names(cut).unwrap(), ["a", "Dockerfile"]);
        // Cut inside the padding, or right after it.
        assert_eq!(names(&full[..512 * 3 + 100]).unwrap(), ["a", "Dockerfile"]);
        assert_eq!(names(&full[..512 * 4]).unwrap(), ["a", "Dockerfile"]);
        // Cut inside the data or a header: an error.
        assert!(names(&full[..512 * 3 + 5]).is_err());
        assert!(names(&full[..512 * 2 + 100]).is_err());
    }
}
