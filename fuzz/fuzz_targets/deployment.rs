//! The Deployment Server's client input: multipart bodies (parts read whatever their
//! framing, never more data than the body holds), client architectures, session cookies and
//! version strings (a total order) never panic.
#![no_main]

use amps::http::multipart::Multipart;
use libfuzzer_sys::fuzz_target;
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let mut body = data;
    let mut form = Multipart::new(&mut body, "XyZ");
    let mut total = 0usize;
    while let Ok(Some(_head)) = form.next_part() {
        let mut part = Vec::new();
        if form.part().read_to_end(&mut part).is_err() {
            break;
        }
        total += part.len();
        assert!(total <= data.len());
    }
    let text = String::from_utf8_lossy(data);
    let _ = amps::package::abi::normalize_requested(&text);
    let key = amps::http::ds::Key::new([1u8; 32]);
    let _ = amps::http::ds::session::Session::from_cookies(Some(&text), &key);
    let middle = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i);
    let (a, b) = text.split_at(middle);
    use std::cmp::Ordering;
    let (ab, ba) = (
        amps::package::version::compare(a, b),
        amps::package::version::compare(b, a),
    );
    assert_eq!(ab, ba.reverse());
    assert_eq!(amps::package::version::compare(a, a), Ordering::Equal);
});
