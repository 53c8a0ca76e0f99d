//! Feeds arbitrary text to the rule condition parser: it must return an
//! expression or a typed error with a position inside the input, never panic,
//! overflow the stack or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match rules::parse_condition(src) {
        Ok(expr) => {
            // Whatever parses must print, parse again and print the same
            // (spans differ, so trees are compared without them).
            let printed = expr.to_string();
            match rules::parse_condition(&printed) {
                Ok(again) => {
                    assert_eq!(again.without_spans(), expr.without_spans(), "{src:?}");
                    assert_eq!(again.to_string(), printed, "{src:?}");
                }
                Err(e) => panic!("{src:?} printed as {printed:?}, which does not parse: {e}"),
            }
        }
        Err(e) => {
            assert!(
                e.span.start <= e.span.end && e.span.end <= src.len(),
                "{src:?}: error span {:?} outside the input",
                e.span
            );
            let _ = e.to_string();
        }
    }
});
