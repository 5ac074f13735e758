//! Docker's multiplexed stream framing (`application/vnd.docker.multiplexed-stream`), used by
//! attach, exec and logs when the container has no TTY: each frame is an 8-byte header —
//! stream type (0 stdin, 1 stdout, 2 stderr, 3 system error), three zero bytes, a big-endian u32
//! payload length — followed by the payload. With a TTY the stream is raw bytes instead.

/// Which stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    /// Docker's in-band error frame (an error after the stream started).
    SystemError = 3,
}

impl StreamKind {
    pub fn from_byte(byte: u8) -> Option<StreamKind> {
        match byte {
            0 => Some(StreamKind::Stdin),
            1 => Some(StreamKind::Stdout),
            2 => Some(StreamKind::Stderr),
            3 => Some(StreamKind::SystemError),
            _ => None,
        }
    }
}

pub const HEADER_LEN: usize = 8;

/// The frame header for `len` bytes of `kind`.
pub fn frame_header(kind: StreamKind, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [kind as u8, 0, 0, 0, len[0], len[1], len[2], len[3]]
}

/// Appends one frame (header and payload) to `out`. Payloads over 4 GiB are split; an empty
/// payload writes nothing (Docker never sends empty frames, and clients read one as EOF).
pub fn encode_frame(kind: StreamKind, payload: &[u8], out: &mut Vec<u8>) {
    for chunk in payload.chunks(u32::MAX as usize) {
        out.extend_from_slice(&frame_header(kind, chunk.len()));
        out.extend_from_slice(chunk);
    }
}

/// Incremental decoder: feed bytes as they arrive, take complete frames out.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
}

/// A malformed frame header (unknown stream type).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid multiplexed stream header: stream type {0}")]
pub struct FrameError(pub u8);

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<(StreamKind, Vec<u8>)>, FrameError> {
        if self.buffer.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = StreamKind::from_byte(self.buffer[0]).ok_or(FrameError(self.buffer[0]))?;
        let len = u32::from_be_bytes([
            self.buffer[4],
            self.buffer[5],
            self.buffer[6],
            self.buffer[7],
        ]) as usize;
        if self.buffer.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.buffer[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buffer.drain(..HEADER_LEN + len);
        Ok(Some((kind, payload)))
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_arbitrary_splits() {
        let mut wire = Vec::new();
        encode_frame(StreamKind::Stdout, b"hello\n", &mut wire);
        encode_frame(StreamKind::Stderr, b"oops\n", &mut wire);
        let before = wire.len();
        encode_frame(StreamKind::Stdout, b"", &mut wire);
        assert_eq!(wire.len(), before, "empty payloads are not framed");
        assert_eq!(&wire[..8], &[1, 0, 0, 0, 0, 0, 0, 6]);
        for split in 0..wire.len() {
            let mut decoder = FrameDecoder::new();
            let mut frames = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                decoder.push(part);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(
                frames,
                vec![
                    (StreamKind::Stdout, b"hello\n".to_vec()),
                    (StreamKind::Stderr, b"oops\n".to_vec()),
                ]
            );
            assert_eq!(decoder.pending(), 0);
        }
    }

    #[test]
    fn rejects_unknown_stream_types() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&[9, 0, 0, 0, 0, 0, 0, 1, b'x']);
        assert_eq!(decoder.next_frame(), Err(FrameError(9)));
    }
}
