//! Incremental, strict decoder for the chunked transfer coding (RFC 9112 section 7.1).
//!
//! It validates framing as bytes arrive and tells the caller which byte ranges are
//! framing and which are data, so the proxy can forward validated bytes verbatim (one
//! write for a run of chunks) or strip the framing for an HTTP/1.0 peer. Chunk
//! extensions, whitespace in size lines, bare LF and oversized sizes are refused.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { digits: u8 },
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    InvalidSize,
    Extension,
    InvalidFraming,
    InvalidTrailer,
    TrailersTooLarge,
}

/// What the next bytes of input are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// This many bytes of framing (size lines, CRLFs, trailers) were consumed.
    Framing(usize),
    /// This many bytes of chunk data.
    Data(usize),
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    remaining: u64,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
    /// The trailer section has a field line (it is more than its final empty line).
    fields: bool,
}

impl ChunkedDecoder {
    pub fn new(max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            trailer_bytes: 0,
            max_trailer_bytes,
            fields: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True once the last chunk has been read: further framing bytes are the trailer
    /// section (trailer fields and the final empty line).
    pub fn in_trailers(&self) -> bool {
        use State::*;
        matches!(
            self.state,
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf | Done
        )
    }

    /// The trailer section read so far has a field line.
    pub fn has_fields(&self) -> bool {
        self.fields
    }

    /// What to write, in place of `run` (a framing piece `next` just returned), for a
    /// body forwarded with its framing but without its trailer fields (Envoy's HTTP/1
    /// codec without `enable_trailers`): `run` itself until a field line starts, then
    /// nothing, and the final empty line once the section ends. A section without
    /// fields is thus written as it came.
    pub fn without_fields<'a>(&self, run: &'a [u8]) -> &'a [u8] {
        match (self.fields, self.is_done()) {
            (false, _) => run,
            (true, false) => b"",
            (true, true) => b"\r\n",
        }
    }

    /// Decodes from the start of `input`. Returns the kind and length of the next run of
    /// bytes (never zero unless `input` is empty or decoding is done).
    pub fn next(&mut self, input: &[u8]) -> Result<Piece, ChunkError> {
        if self.state == State::Data {
            let n = input
                .len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            self.remaining -= n as u64;
            if self.remaining == 0 {
                self.state = State::DataCr;
            }
            return Ok(Piece::Data(n));
        }
        let mut used = 0;
        for &b in input {
            if self.state == State::Data || self.state == State::Done {
                break;
            }
            used += 1;
            let was_trailers = self.in_trailers();
            self.state = self.step(b)?;
            // Stop at the start of the trailer section, so callers can tell its bytes
            // apart from the chunk framing before it.
            if !was_trailers && self.in_trailers() {
                break;
            }
        }
        Ok(Piece::Framing(used))
    }

    fn step(&mut self, b: u8) -> Result<State, ChunkError> {
        use State::*;
        Ok(match self.state {
            Size { digits } => match b {
                b'\r' if digits > 0 => SizeLf,
                b';' => return Err(ChunkError::Extension),
                _ => {
                    let d = (b as char).to_digit(16).ok_or(ChunkError::InvalidSize)?;
                    if digits >= 16 {
                        return Err(ChunkError::InvalidSize);
                    }
                    self.remaining = (self.remaining << 4) | u64::from(d);
                    Size { digits: digits + 1 }
                }
            },
            SizeLf if b == b'\n' => {
                if self.remaining == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => Size { digits: 0 },
            TrailerStart | TrailerName | TrailerValue | TrailerLf => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > self.max_trailer_bytes {
                    return Err(ChunkError::TrailersTooLarge);
                }
                match (self.state, b) {
                    (TrailerStart, b'\r') => FinalLf,
                    (TrailerStart, b) if crate::config::is_tchar(b) => {
                        self.fields = true;
                        TrailerName
                    }
                    (TrailerName, b':') => TrailerValue,
                    (TrailerName, b) if crate::config::is_tchar(b) => TrailerName,
                    (TrailerValue, b'\r') => TrailerLf,
                    (TrailerValue, b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => TrailerValue,
                    (TrailerLf, b'\n') => TrailerStart,
                    _ => return Err(ChunkError::InvalidTrailer),
                }
            }
            FinalLf if b == b'\n' => Done,
            _ => return Err(ChunkError::InvalidFraming),
        })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Decodes all of `input` in pieces of at most `step` bytes; returns data and framing.
    fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new(1024);
        let mut data = Vec::new();
        let mut framing = 0;
        let mut pos = 0;
        while pos < input.len() && !d.is_done() {
            let end = (pos + step).min(input.len());
            match d.next(&input[pos..end])? {
                Piece::Data(n) => {
                    data.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                }
                Piece::Framing(n) => {
                    framing += n;
                    pos += n;
                }
            }
        }
        Ok((data, framing, d.is_done()))
    }

    /// Forwards `input` with its framing in pieces of at most `step` bytes, trailer
    /// fields dropped as `without_fields` says.
    fn forward_without_fields(input: &[u8], step: usize) -> Vec<u8> {
        let mut d = ChunkedDecoder::new(1024);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !d.is_done() {
            let end = (pos + step).min(input.len());
            let in_trailers = d.in_trailers();
            let (Piece::Data(n) | Piece::Framing(n)) = d.next(&input[pos..end]).unwrap();
            let run = &input[pos..pos + n];
            out.extend_from_slice(if in_trailers {
                d.without_fields(run)
            } else {
                run
            });
            pos += n;
        }
        assert!(d.is_done());
        out
    }

    #[test]
    fn trailer_fields_are_dropped_in_any_split() {
        let with = b"5\r\nhello\r\n0\r\nX-T: v\r\nY: w\r\n\r\n";
        let without = b"5\r\nhello\r\n0\r\n\r\n";
        for step in 1..with.len() {
            assert_eq!(forward_without_fields(with, step), without, "step {step}");
            assert_eq!(
                forward_without_fields(without, step),
                without,
                "step {step}"
            );
        }
    }

    #[test]
    fn decodes_in_any_split() {
        let msg = b"5\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: v\r\n\r\nNEXT";
        for step in 1..msg.len() {
            let (data, framing, done) = decode(msg, step).unwrap();
            assert_eq!(data, b"hello0123456789");
            assert!(done);
            assert_eq!(framing + data.len(), msg.len() - 4);
        }
    }

    #[test]
    fn refuses_bad_framing() {
        assert_eq!(
            decode(b"5;ext\r\nhello\r\n0\r\n\r\n", 64),
            Err(ChunkError::Extension)
        );
        assert_eq!(
            decode(b"5 \r\nhello\r\n0\r\n\r\n", 64),
            Err(ChunkError::InvalidSize)
        );
        assert_eq!(decode(b"\r\n", 64), Err(ChunkError::InvalidSize));
        assert_eq!(decode(b"5\nhello\r\n", 64), Err(ChunkError::InvalidSize));
        assert_eq!(
            decode(b"5\r\nhelloX\r\n", 64),
            Err(ChunkError::InvalidFraming)
        );
        assert_eq!(decode(b"-1\r\n", 64), Err(ChunkError::InvalidSize));
        assert_eq!(
            decode(b"10000000000000000\r\n", 64),
            Err(ChunkError::InvalidSize)
        );
        assert_eq!(
            decode(b"0\r\nBad Trailer: x\r\n\r\n", 64),
            Err(ChunkError::InvalidTrailer)
        );
        assert_eq!(
            decode(b"0\r\nX: a\rb\r\n\r\n", 64),
            Err(ChunkError::InvalidTrailer)
        );
        let big = format!("0\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(
            decode(big.as_bytes(), 64),
            Err(ChunkError::TrailersTooLarge)
        );
    }
}
