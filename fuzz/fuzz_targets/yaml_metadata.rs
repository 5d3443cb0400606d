//! YAML metadata and configuration: header, footer, info.yaml and amps-config.yaml parsers,
//! the QDataStream encoding, and one property: what we emit reads back with the same types.
#![no_main]

use amps::package::manifest::{Footer, merge_footer, parse_header, parse_info};
use amps::package::qdatastream::write_variant;
use amps::yaml::{Node, YamlLimits, emit_map_entries, parse_documents, to_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_header(text);
    let _ = merge_footer(text, &mut Footer::default());
    let _ = parse_info(text);
    let _ = amps::config::parse_config_file(text);
    let Ok(docs) = parse_documents(text, &YamlLimits::default()) else {
        return;
    };
    for doc in &docs {
        let mut bytes = Vec::new();
        write_variant(&mut bytes, doc);
        if let Node::Map(entries) = doc {
            let mut emitted = String::new();
            emit_map_entries(&mut emitted, entries, 0);
            let again = parse_documents(&emitted, &YamlLimits::default())
                .unwrap_or_else(|e| panic!("emitted YAML does not parse: {e}\n{emitted}"));
            let again = again.first().cloned().unwrap_or(Node::Map(Vec::new()));
            let (a, b) = (to_json(doc), to_json(&again));
            // NaN never equals itself; compare its text instead.
            assert_eq!(
                a.to_string(),
                b.to_string(),
                "types changed:\n{text}\n---\n{emitted}"
            );
        }
    }
});
