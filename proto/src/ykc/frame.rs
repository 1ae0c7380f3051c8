//! The frame envelope: `0x68 | len | seq(2, LE) | encryption | type | body | crc(2)`.

use super::crc::{self, CrcOrder};
use super::error::{DecodeError, EncodeError};

pub const START: u8 = 0x68;
/// Bytes counted by the length field besides the body: sequence (2), encryption, type.
pub const LEN_OVERHEAD: usize = 4;
/// The largest body the spec allows (after encryption).
pub const MAX_BODY: usize = 200;
/// The largest whole frame on the wire.
pub const MAX_FRAME: usize = 2 + LEN_OVERHEAD + MAX_BODY + 2;

/// Encryption flag values.
pub const PLAIN: u8 = 0x00;
pub const TRIPLE_DES: u8 = 0x01;

/// One frame as it stood on the wire, body still undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame<'a> {
    pub seq: u16,
    pub encryption: u8,
    pub frame_type: u8,
    pub body: &'a [u8],
    pub crc_order: CrcOrder,
}

/// What looking at the start of a buffer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole, checked frame and how many bytes it took.
    Frame(RawFrame<'a>, usize),
    /// The buffer holds the beginning of a frame; this many bytes are needed in all.
    Incomplete(usize),
}

/// Parses one frame at the very start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, DecodeError> {
    let Some(&start) = buf.first() else {
        return Ok(Parsed::Incomplete(2));
    };
    if start != START {
        return Err(DecodeError::BadStart { found: start });
    }
    let Some(&len) = buf.get(1) else {
        return Ok(Parsed::Incomplete(2));
    };
    let len_usize = usize::from(len);
    if len_usize < LEN_OVERHEAD {
        return Err(DecodeError::LengthTooSmall { len });
    }
    if len_usize > LEN_OVERHEAD + MAX_BODY {
        return Err(DecodeError::LengthTooLarge {
            len,
            max: LEN_OVERHEAD + MAX_BODY,
        });
    }
    let total = 2 + len_usize + 2;
    if buf.len() < total {
        return Ok(Parsed::Incomplete(total));
    }
    let checked = &buf[2..2 + len_usize];
    let wire = [buf[total - 2], buf[total - 1]];
    let crc_order = crc::check(checked, wire).ok_or(DecodeError::BadCrc {
        wire,
        computed: crc::crc16_modbus(checked),
    })?;
    let frame = RawFrame {
        seq: u16::from_le_bytes([checked[0], checked[1]]),
        encryption: checked[2],
        frame_type: checked[3],
        body: &checked[LEN_OVERHEAD..],
        crc_order,
    };
    Ok(Parsed::Frame(frame, total))
}

/// Parses exactly one whole frame (for tools and tests; trailing bytes are an error).
pub fn parse_exact(buf: &[u8]) -> Result<RawFrame<'_>, DecodeError> {
    match parse(buf)? {
        Parsed::Frame(frame, used) if used == buf.len() => Ok(frame),
        Parsed::Frame(_, used) => Err(DecodeError::BodyLength {
            frame_type: buf.get(5).copied().unwrap_or(0),
            expected: format!("a frame of {used} bytes"),
            actual: buf.len(),
        }),
        Parsed::Incomplete(needed) => Err(DecodeError::Truncated {
            needed,
            have: buf.len(),
        }),
    }
}

/// Appends a whole frame (envelope, body and standard-order CRC) to `out`.
pub fn write_frame(
    out: &mut Vec<u8>,
    seq: u16,
    encryption: u8,
    frame_type: u8,
    body: &[u8],
) -> Result<(), EncodeError> {
    if body.len() > MAX_BODY {
        return Err(EncodeError::BodyTooLarge {
            len: body.len(),
            max: MAX_BODY,
        });
    }
    let start = out.len();
    out.push(START);
    out.push((LEN_OVERHEAD + body.len()) as u8);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(encryption);
    out.push(frame_type);
    out.extend_from_slice(body);
    let crc = crc::crc16_modbus(&out[start + 2..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What the splitter hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitEvent<'a> {
    Frame(RawFrame<'a>),
    /// Bytes that were not a valid frame were skipped; `error` says what was wrong first.
    Skipped {
        bytes: usize,
        error: DecodeError,
    },
}

/// A streaming frame splitter for one connection.
///
/// It parses straight out of the caller's read buffer and keeps only the tail of an
/// incomplete frame (at most [`MAX_FRAME`] − 1 bytes), so an idle connection holds no
/// buffer at all. Partial and coalesced reads both work; garbage is skipped by scanning
/// for the next 0x68.
#[derive(Debug, Default)]
pub struct FrameSplitter {
    pending: Vec<u8>,
}

impl FrameSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held back waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Feeds newly read bytes; `on_event` sees every frame and every skipped run, in order.
    /// Returning `false` from `on_event` stops processing (the rest is dropped).
    pub fn feed(&mut self, input: &[u8], mut on_event: impl FnMut(SplitEvent<'_>) -> bool) {
        if self.pending.is_empty() {
            let used = split(input, &mut on_event);
            if let Some(used) = used {
                self.pending.extend_from_slice(&input[used..]);
            }
            return;
        }
        // Complete the pending frame with as few input bytes as it needs, then go on
        // parsing straight from the input.
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(input);
        match split(&pending, &mut on_event) {
            Some(used) if used < pending.len() => {
                pending.drain(..used);
                pending.shrink_to(MAX_FRAME);
                self.pending = pending;
            }
            _ => {}
        }
    }
}

/// Splits `buf`; returns how many bytes were consumed (the rest is an incomplete frame),
/// or None when the callback asked to stop.
fn split(buf: &[u8], on_event: &mut impl FnMut(SplitEvent<'_>) -> bool) -> Option<usize> {
    let mut pos = 0;
    while pos < buf.len() {
        match parse(&buf[pos..]) {
            Ok(Parsed::Frame(frame, used)) => {
                pos += used;
                if !on_event(SplitEvent::Frame(frame)) {
                    return None;
                }
            }
            Ok(Parsed::Incomplete(_)) => return Some(pos),
            Err(error) => {
                // Resynchronise at the next start byte after this one.
                let skip = buf[pos + 1..]
                    .iter()
                    .position(|&b| b == START)
                    .map_or(buf.len() - pos, |i| i + 1);
                pos += skip;
                if !on_event(SplitEvent::Skipped { bytes: skip, error }) {
                    return None;
                }
            }
        }
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u16, ty: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, seq, PLAIN, ty, body).unwrap();
        out
    }

    fn collect(splitter: &mut FrameSplitter, input: &[u8]) -> Vec<Result<(u16, u8), &'static str>> {
        let mut out = Vec::new();
        splitter.feed(input, |ev| {
            out.push(match ev {
                SplitEvent::Frame(f) => Ok((f.seq, f.frame_type)),
                SplitEvent::Skipped { error, .. } => Err(error.kind()),
            });
            true
        });
        out
    }

    #[test]
    fn splits_coalesced_and_partial_reads() {
        let mut stream = frame(1, 0x03, &[0; 9]);
        stream.extend(frame(2, 0x03, &[0; 9]));
        stream.extend(frame(3, 0x13, &[0; 50]));
        for chunk in 1..stream.len() {
            let mut s = FrameSplitter::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                got.extend(collect(&mut s, piece));
            }
            assert_eq!(
                got,
                vec![Ok((1, 0x03)), Ok((2, 0x03)), Ok((3, 0x13))],
                "chunk {chunk}"
            );
            assert_eq!(s.buffered(), 0);
        }
    }

    #[test]
    fn resynchronises_after_garbage() {
        let mut stream = b"\x01\x02garbage".to_vec();
        stream.extend(frame(7, 0x03, &[0; 9]));
        let mut s = FrameSplitter::new();
        let got = collect(&mut s, &stream);
        assert_eq!(got, vec![Err("bad_start"), Ok((7, 0x03))]);
    }

    #[test]
    fn rejects_bad_crc_and_lengths() {
        let mut f = frame(1, 0x03, &[0; 9]);
        let last = f.len() - 1;
        f[last] ^= 0xFF;
        assert_eq!(parse(&f).unwrap_err().kind(), "bad_crc");
        assert_eq!(parse(&[0x68, 0x02]).unwrap_err().kind(), "bad_length");
        assert_eq!(parse(&[0x68, 0xFF]).unwrap_err().kind(), "bad_length");
    }

    #[test]
    fn accepts_swapped_crc() {
        let mut f = frame(1, 0x03, &[0; 9]);
        let n = f.len();
        f.swap(n - 1, n - 2);
        match parse(&f).unwrap() {
            Parsed::Frame(raw, _) => assert_eq!(raw.crc_order, CrcOrder::Swapped),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn holds_at_most_one_partial_frame() {
        let f = frame(1, 0x13, &[0; 200]);
        let mut s = FrameSplitter::new();
        collect(&mut s, &f[..f.len() - 1]);
        assert_eq!(s.buffered(), f.len() - 1);
        assert_eq!(collect(&mut s, &f[f.len() - 1..]), vec![Ok((1, 0x13))]);
        assert_eq!(s.buffered(), 0);
    }
}
