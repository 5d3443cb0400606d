//! Request targets and form bodies: decoding never fails or panics, and the listen-address
//! parser of the command line refuses or accepts without panicking.
#![no_main]

use amps::http::{parse_form, parse_target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_form(data);
    let text = String::from_utf8_lossy(data);
    if let Ok((path, params)) = parse_target(&text) {
        assert!(text.starts_with(path));
        // Whatever is accepted decodes to text that encodes back to an accepted query.
        let query: String = form_urlencoded_like(&params);
        assert!(parse_form(query.as_bytes()).is_ok(), "{query}");
    }
    let _ = amps::config::parse_listen_address(&text);
});

fn form_urlencoded_like(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                amps::store::index::percent_encode(k),
                amps::store::index::percent_encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}
