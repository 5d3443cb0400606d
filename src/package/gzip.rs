/*!
The gzip layer of a package: one or more concatenated members, then optional zero padding.

libarchive pads its output with zero bytes to a multiple of 10240, and a signature can be
appended cheaply as a second gzip member; the real client reads members as one stream only
when no padding sits between them, so that is exactly what we accept: members back to back,
then nothing but zeros.

Decompression goes block by block (`inflate::BlockInflater`), so the reader always knows the
last deflate block boundary: where it is in the file (to the bit), where in the decompressed
stream, and the member's CRC-32 there. With `record_cut` on, it also keeps what verification
needs to splice a signed download into this very file (`splice::CutRecorder`).
*/

use super::inflate::{BlockInflater, Event};
use super::splice::{Boundary, CutRecorder};
use std::io::{self, BufRead, Read};

/// The two bytes every gzip stream starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The input does not start with the gzip magic: it is no package at all.
#[derive(Debug)]
pub struct WrongFileType;

impl std::fmt::Display for WrongFileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrong file type")
    }
}

impl std::error::Error for WrongFileType {}

/// Whether `error` is `WrongFileType`.
pub fn is_wrong_file_type(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<WrongFileType>())
}

/// Decompresses concatenated gzip members, accepting trailing zero padding.
pub struct GzipMembers<R: BufRead> {
    input: R,
    inflater: BlockInflater,
    state: State,
    /// Compressed bytes taken by the inflater, and decompressed bytes given out.
    in_pos: u64,
    out_pos: u64,
    /// The last 8 input bytes taken (the newest in the low byte): a boundary's partial byte
    /// is among them.
    recent_input: u64,
    /// Where the current member's output starts (and its header in the file), and its CRC-32
    /// so far.
    member_start: u64,
    member_file_start: u64,
    member_crc: crc32fast::Hasher,
    recorder: Option<Box<CutRecorder>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Member,
    /// Between members or after the last one.
    Between,
    Done,
}

impl<R: BufRead> GzipMembers<R> {
    /// Starts reading; fails with `wrong file type` unless the input starts with the gzip magic.
    pub fn new(mut input: R) -> io::Result<Self> {
        if !starts_with_magic(&mut input)? {
            return Err(io::Error::new(io::ErrorKind::InvalidData, WrongFileType));
        }
        Ok(GzipMembers {
            input,
            inflater: BlockInflater::new()?,
            state: State::Member,
            in_pos: 0,
            out_pos: 0,
            recent_input: 0,
            member_start: 0,
            member_file_start: 0,
            member_crc: crc32fast::Hasher::new(),
            recorder: None,
        })
    }

    /// Keep what a signing cut needs while reading (`splice::CutRecorder`).
    pub fn record_cut(mut self) -> Self {
        self.recorder = Some(Box::default());
        self
    }

    /// The recorder, when `record_cut` was asked for.
    pub fn recorder(&mut self) -> Option<&mut CutRecorder> {
        self.recorder.as_deref_mut()
    }

    /// Decompressed bytes given out so far.
    pub fn position(&self) -> u64 {
        self.out_pos
    }

    /// After a member ended: start the next one, or check that only zeros follow.
    fn next_member(&mut self) -> io::Result<()> {
        if starts_with_magic(&mut self.input)? {
            self.inflater.reset()?;
            self.member_start = self.out_pos;
            self.member_file_start = self.in_pos;
            self.member_crc = crc32fast::Hasher::new();
            self.state = State::Member;
            return Ok(());
        }
        loop {
            let chunk = self.input.fill_buf()?;
            if chunk.is_empty() {
                self.state = State::Done;
                return Ok(());
            }
            if chunk.iter().any(|&b| b != 0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected data after the end of the gzip stream",
                ));
            }
            let len = chunk.len();
            self.input.consume(len);
        }
    }

    /// One inflate step into `buf`: returns the bytes produced (0 at a boundary or the
    /// member's end).
    fn inflate_step(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let input = self.input.fill_buf()?;
        let at_eof = input.is_empty();
        let step = self.inflater.inflate(input, buf)?;
        for &byte in &input[step.consumed.saturating_sub(8)..step.consumed] {
            self.recent_input = (self.recent_input << 8) | u64::from(byte);
        }
        self.input.consume(step.consumed);
        self.in_pos += step.consumed as u64;
        let output = &buf[..step.produced];
        self.member_crc.update(output);
        self.out_pos += step.produced as u64;
        if let Some(recorder) = self.recorder.as_deref_mut() {
            recorder.output(output);
        }
        match step.event {
            Event::Boundary { unused_bits } => self.boundary(unused_bits),
            Event::MemberEnd => self.state = State::Between,
            Event::Progress if step.produced == 0 && (at_eof || step.consumed == 0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the gzip stream ends early",
                ));
            }
            Event::Progress => {}
        }
        Ok(step.produced)
    }

    fn boundary(&mut self, unused_bits: u32) {
        let Some(recorder) = self.recorder.as_deref_mut() else {
            return;
        };
        let bit_position = (self.in_pos * 8).saturating_sub(u64::from(unused_bits));
        let byte_index = bit_position / 8;
        // How far back from the newest byte taken (0 = the newest).
        let back = self.in_pos.saturating_sub(byte_index + 1);
        let partial_byte = if bit_position % 8 != 0 && back < 8 {
            (self.recent_input >> (8 * back)) as u8
        } else {
            0
        };
        recorder.boundary(Boundary {
            bit_position,
            partial_byte,
            out_position: self.out_pos,
            member_start: self.member_start,
            member_file_start: self.member_file_start,
            member_crc: self.member_crc.clone().finalize(),
        });
    }
}

/// Whether the next bytes can start a gzip member (looks ahead without consuming). With only
/// one byte buffered, a leading 0x1f is enough: the decoder then checks the full header.
fn starts_with_magic<R: BufRead>(input: &mut R) -> io::Result<bool> {
    let head = input.fill_buf()?;
    Ok(match head {
        [] => false,
        [first] => *first == GZIP_MAGIC[0],
        [first, second, ..] => [*first, *second] == GZIP_MAGIC,
    })
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Member => {
                    let n = self.inflate_step(buf)?;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                State::Between => self.next_member()?,
                State::Done => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::{BufReader, Write};

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(input: Vec<u8>, buffer: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzipMembers::new(BufReader::with_capacity(buffer, &input[..]))?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn reads_members_and_padding() {
        let mut input = gz(b"hello ");
        input.extend(gz(b"world"));
        input.extend([0u8; 3000]);
        for buffer in [1, 2, 3, 7, 64, 8192] {
            assert_eq!(
                read_all(input.clone(), buffer).unwrap(),
                b"hello world",
                "{buffer}"
            );
        }
    }

    #[test]
    fn refuses_wrong_type_and_trailing_garbage() {
        let e = read_all(b"not gzip".to_vec(), 8192).unwrap_err();
        assert_eq!(e.to_string(), "wrong file type");
        let mut padded_then_member = gz(b"a");
        padded_then_member.extend([0u8; 10]);
        padded_then_member.extend(gz(b"b"));
        assert!(read_all(padded_then_member, 8192).is_err());
        let mut truncated = gz(b"some data to compress");
        truncated.truncate(truncated.len() - 4);
        assert!(read_all(truncated, 8192).is_err());
        let mut wrong_crc = gz(b"some data to compress");
        let at = wrong_crc.len() - 8;
        wrong_crc[at] ^= 1;
        assert!(read_all(wrong_crc, 8192).is_err());
    }
}
