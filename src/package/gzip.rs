/*!
The gzip layer of a package: one or more concatenated members, then optional zero padding.

libarchive pads its output with zero bytes to a multiple of 10240, and a signature can be
appended cheaply as a second gzip member; the real client reads members as one stream only
when no padding sits between them, so that is exactly what we accept: members back to back,
then nothing but zeros.
*/

use flate2::bufread::GzDecoder;
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
    state: State<R>,
}

enum State<R: BufRead> {
    Member(GzDecoder<R>),
    /// Between members or after the last one: the raw input.
    Between(R),
    Done,
}

impl<R: BufRead> GzipMembers<R> {
    /// Starts reading; fails with `wrong file type` unless the input starts with the gzip magic.
    pub fn new(mut input: R) -> io::Result<Self> {
        if !starts_with_magic(&mut input)? {
            return Err(io::Error::new(io::ErrorKind::InvalidData, WrongFileType));
        }
        Ok(GzipMembers {
            state: State::Member(GzDecoder::new(input)),
        })
    }

    /// After a member ended: start the next one, or check that only zeros follow.
    fn next_member(&mut self, mut input: R) -> io::Result<()> {
        if starts_with_magic(&mut input)? {
            self.state = State::Member(GzDecoder::new(input));
            return Ok(());
        }
        loop {
            let chunk = input.fill_buf()?;
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
            input.consume(len);
        }
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
            match &mut self.state {
                State::Member(decoder) => {
                    let n = decoder.read(buf)?;
                    if n > 0 {
                        return Ok(n);
                    }
                    let State::Member(decoder) = std::mem::replace(&mut self.state, State::Done)
                    else {
                        unreachable!("state checked above")
                    };
                    self.state = State::Between(decoder.into_inner());
                }
                State::Between(_) => {
                    let State::Between(input) = std::mem::replace(&mut self.state, State::Done)
                    else {
                        unreachable!("state checked above")
                    };
                    self.next_member(input)?;
                }
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
    }
}
