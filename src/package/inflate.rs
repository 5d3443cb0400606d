/*!
zlib's inflate, one gzip member at a time, stopping at every deflate block boundary.

flate2 decompresses, but does not say where deflate blocks begin: a signed download is spliced
into the uploaded file at such a boundary (`splice`), so the reader must see them. zlib's
`inflate(..., Z_BLOCK)` stops at each one and reports in `data_type` how many bits of the input
it has taken but not used (`examples/gzappend.c` works the same way). zlib-rs implements zlib's
API in Rust (`libz-rs-sys`); this module is the only place that calls it, behind a safe type.
*/

use libz_rs_sys::{
    Z_BLOCK, Z_BUF_ERROR, Z_DATA_ERROR, Z_OK, Z_STREAM_END, inflate, inflateEnd, inflateInit2_,
    inflateReset, z_stream, zlibVersion,
};
use std::io;

/// zlib's window bits for a gzip member (15, plus 16 for the gzip wrapper).
const GZIP_WINDOW_BITS: i32 = 15 + 16;

/// What one call of `BlockInflater::inflate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Input bytes taken (some of their bits may still be unused: see `Boundary`).
    pub consumed: usize,
    /// Output bytes written.
    pub produced: usize,
    pub event: Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Inside a block or header: call again (with more input or output room).
    Progress,
    /// At the start of a deflate block (after the gzip header, or after a block that was not
    /// the final one). `unused_bits` of the input taken so far belong to what follows.
    Boundary { unused_bits: u32 },
    /// The member ended and its trailer (CRC-32 and length) checked out.
    MemberEnd,
}

/// A gzip member decoder that stops at every block boundary.
pub struct BlockInflater {
    /// Boxed: zlib's state keeps the stream's address.
    stream: Box<z_stream>,
}

// SAFETY: the stream and the state it points to are owned by this value alone; the input and
// output pointers are set for the duration of one `inflate` call, from slices that call
// borrows, and never read afterwards. Nothing is shared with another thread.
unsafe impl Send for BlockInflater {}

/// The calls of zlib's API this module makes.
enum Call {
    Init,
    Reset,
    Inflate,
    End,
}

/// The one place zlib's API is called (it has no safe form: the stream holds raw pointers).
/// Only this module calls it, in this order: `Init` once by `BlockInflater::new`, then `Reset`
/// and `Inflate`, `End` once by `drop`.
fn zlib(stream: &mut z_stream, call: Call) -> i32 {
    // SAFETY: `stream` lives in a `Box` at a stable address for its whole life. `Init` gets a
    // default stream (zlib-rs' allocator set, no input), the library's own version string and
    // the size of the structure; `Reset`, `Inflate` and `End` only follow a successful `Init`
    // (the order above); for `Inflate`, `next_in`/`avail_in` and `next_out`/`avail_out`
    // describe two slices the caller borrows for this call, or are null and 0.
    unsafe {
        match call {
            Call::Init => inflateInit2_(
                stream,
                GZIP_WINDOW_BITS,
                zlibVersion(),
                std::mem::size_of::<z_stream>() as i32,
            ),
            Call::Reset => inflateReset(stream),
            Call::Inflate => inflate(stream, Z_BLOCK),
            Call::End => inflateEnd(stream),
        }
    }
}

impl BlockInflater {
    pub fn new() -> io::Result<BlockInflater> {
        let mut stream = Box::new(z_stream::default());
        let result = zlib(&mut stream, Call::Init);
        if result != Z_OK {
            return Err(io::Error::other(format!(
                "could not start decompressing (zlib error {result})"
            )));
        }
        Ok(BlockInflater { stream })
    }

    /// Start a new member.
    pub fn reset(&mut self) -> io::Result<()> {
        let result = zlib(&mut self.stream, Call::Reset);
        if result != Z_OK {
            return Err(io::Error::other(format!(
                "could not restart decompressing (zlib error {result})"
            )));
        }
        Ok(())
    }

    /// Decompress from `input` into `output` until a block boundary, the member's end, or
    /// until one of them is used up.
    pub fn inflate(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<Step> {
        let (avail_in, avail_out) = (clamp(input.len()), clamp(output.len()));
        let stream = &mut *self.stream;
        stream.next_in = input.as_ptr();
        stream.avail_in = avail_in;
        stream.next_out = output.as_mut_ptr();
        stream.avail_out = avail_out;
        let result = zlib(stream, Call::Inflate);
        let consumed = (avail_in - stream.avail_in) as usize;
        let produced = (avail_out - stream.avail_out) as usize;
        stream.next_in = std::ptr::null();
        stream.avail_in = 0;
        stream.next_out = std::ptr::null_mut();
        stream.avail_out = 0;
        let data_type = stream.data_type;
        let event = match result {
            Z_STREAM_END => Event::MemberEnd,
            // Z_BUF_ERROR: no byte in or out, yet decoding an end-of-block code already in
            // the bit buffer may have reached a boundary. 128: before a block header; 64: the
            // last block was the final one, so this is the stream's end, not a boundary.
            Z_OK | Z_BUF_ERROR if data_type & 128 != 0 && data_type & 64 == 0 => Event::Boundary {
                // Bits 0-5: unused bits (zlib-rs keeps up to 63 in its bit buffer; zlib at most 7).
                unused_bits: (data_type & 63) as u32,
            },
            Z_OK | Z_BUF_ERROR => Event::Progress,
            _ => {
                return Err(match result {
                    Z_DATA_ERROR => io::Error::new(
                        io::ErrorKind::InvalidData,
                        "corrupt deflate stream or gzip header",
                    ),
                    _ => io::Error::other(format!("decompression failed (zlib error {result})")),
                });
            }
        };
        Ok(Step {
            consumed,
            produced,
            event,
        })
    }
}

impl Drop for BlockInflater {
    fn drop(&mut self) {
        zlib(&mut self.stream, Call::End);
    }
}

fn clamp(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}
