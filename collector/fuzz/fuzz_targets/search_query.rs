//! Feeds arbitrary text to the findings query parser (and its time and glob
//! helpers): typed errors with an offset inside the input, never a panic,
//! and the same answer twice.
#![no_main]

// The parser is self-contained (std, thiserror, humantime), so it is compiled
// here directly: building the whole collector (Tantivy, sled, quinn) with
// sanitizer instrumentation would cost minutes per CI run on two cores.
#[allow(dead_code)]
#[path = "../../src/search/query.rs"]
mod query;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let first = query::parse(src);
    match &first {
        Ok(_) => {}
        Err(e) => assert!(
            e.offset <= src.len().max(query::MAX_QUERY_LEN),
            "{src:?}: offset {} outside the input",
            e.offset
        ),
    }
    assert_eq!(first, query::parse(src), "parsing is deterministic");
    let _ = query::parse_time(src, 1_767_225_600_000);
    let _ = query::glob_to_regex(src);
});
