//! The HTTP request-head and body-framing code of our tiny_http fork: request lines, header
//! fields, Content-Length and chunked decoding, over pipelined requests. It must never panic,
//! loop or allocate without bound, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let heads = tiny_http::parse_pipelined(data);
    // Every head read consumed at least its request line: no more heads than lines.
    assert!(heads.len() <= data.iter().filter(|&&b| b == b'\n').count());
});
