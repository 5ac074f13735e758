//! gzip compression on every core, for a layer that is compressed while it is pushed: the tar
//! is cut into 1 MiB blocks, each deflated on its own (ending with a sync flush, the last one
//! with the final block) on scoped threads, and the outputs are concatenated in order between
//! one gzip header and the trailer (CRC-32 and size of the whole): one valid gzip stream, as
//! pgzip (which skopeo and containerd use) makes. The output depends only on the input, the
//! level and the block size, so the same tar always gets the same digest.

use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::write::DeflateEncoder;

const BLOCK: usize = 1 << 20;

/// gzip header: no name, no time, "unknown" OS (what Go's gzip writes for a zero header).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// The sample of a block tried first.
const SAMPLE: usize = 64 << 10;

/// Whether a block looks incompressible (random, already compressed): its first 64 KiB do not
/// shrink by 2 % at the fastest level. Such blocks are stored: deflating them costs most of a
/// push's time for nothing (Go's deflate, which dockerd and skopeo use, skips ahead on such data
/// too). Decided from the bytes alone, so the output stays deterministic.
fn incompressible(block: &[u8]) -> bool {
    let sample = &block[..block.len().min(SAMPLE)];
    if sample.len() < 4096 {
        return false;
    }
    let mut encoder =
        DeflateEncoder::new(Vec::with_capacity(sample.len() + 1024), Compression::fast());
    if encoder.write_all(sample).is_err() {
        return false;
    }
    match encoder.finish() {
        Ok(out) => out.len() * 100 >= sample.len() * 98,
        Err(_) => false,
    }
}

/// `block` as deflate stored blocks (at most 65535 bytes each; the last one final when
/// `final_block`). Stored blocks start and end on a byte boundary, as a sync flush leaves it.
fn stored(block: &[u8], final_block: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + block.len() / 65535 * 5 + 5);
    let mut chunks = block.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[u8::from(final_block), 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = final_block && chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// A reader of the gzip compression of `inner`.
pub(crate) struct ParallelGzip<R> {
    inner: R,
    level: Compression,
    threads: usize,
    crc: flate2::Crc,
    out: Vec<u8>,
    pos: usize,
    started: bool,
    done: bool,
}

impl<R: Read> ParallelGzip<R> {
    pub(crate) fn new(inner: R, level: Compression) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        ParallelGzip {
            inner,
            level,
            threads,
            crc: flate2::Crc::new(),
            out: Vec::new(),
            pos: 0,
            started: false,
            done: false,
        }
    }

    /// Reads up to one block of input (short only at the end).
    fn read_block(&mut self) -> io::Result<Vec<u8>> {
        let mut block = vec![0u8; BLOCK];
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        block.truncate(filled);
        Ok(block)
    }

    /// Compresses the next batch of blocks (one per thread, twice over) into `out`.
    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        if !self.started {
            self.started = true;
            self.out.extend_from_slice(&HEADER);
        }
        let mut blocks = Vec::new();
        let mut last = false;
        for _ in 0..self.threads * 2 {
            let block = self.read_block()?;
            self.crc.update(&block);
            last = block.len() < BLOCK;
            blocks.push(block);
            if last {
                break;
            }
        }
        let count = blocks.len();
        let level = self.level;
        let compressed: Vec<io::Result<Vec<u8>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = blocks
                .iter()
                .enumerate()
                .map(|(i, block)| {
                    let final_block = last && i + 1 == count;
                    scope.spawn(move || -> io::Result<Vec<u8>> {
                        if incompressible(block) {
                            return Ok(stored(block, final_block));
                        }
                        let mut encoder =
                            DeflateEncoder::new(Vec::with_capacity(block.len() + 1024), level);
                        encoder.write_all(block)?;
                        if final_block {
                            encoder.finish()
                        } else {
                            // A sync flush ends the block on a byte boundary, so the next
                            // block's deflate data can follow it.
                            encoder.flush()?;
                            Ok(std::mem::take(encoder.get_mut()))
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("compressor panicked")))
                })
                .collect()
        });
        for c in compressed {
            self.out.extend_from_slice(&c?);
        }
        if last {
            self.out.extend_from_slice(&self.crc.sum().to_le_bytes());
            self.out.extend_from_slice(&self.crc.amount().to_le_bytes());
            self.done = true;
        }
        Ok(())
    }
}

impl<R: Read> Read for ParallelGzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8]) -> Vec<u8> {
        let mut gz = Vec::new();
        ParallelGzip::new(data, Compression::default())
            .read_to_end(&mut gz)
            .unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        gz
    }

    #[test]
    fn one_gzip_stream_the_same_every_time() {
        roundtrip(b"");
        roundtrip(b"small");
        let mut big = Vec::new();
        for i in 0..(5 * BLOCK + 123) {
            big.push((i % 251) as u8 ^ (i / 7919) as u8);
        }
        // Incompressible blocks (stored), alone and mixed with compressible ones.
        let mut x: u64 = 99;
        let mut random = Vec::new();
        while random.len() < 2 * BLOCK + 70_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            random.extend_from_slice(&x.to_le_bytes());
        }
        roundtrip(&random);
        roundtrip(&[&random[..], &big[..3 * BLOCK]].concat());
        roundtrip(&[&big[..BLOCK], &random[..BLOCK + 5]].concat());
        // Exactly a multiple of the block size too.
        roundtrip(&big[..4 * BLOCK]);
        let a = roundtrip(&big);
        let b = roundtrip(&big);
        assert_eq!(a, b);
        // The whole is one member: a decoder that stops after the first member reads all.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len(), big.len());
    }
}
