//! Feeds arbitrary bytes to the frame decoder, whole and in chunks: it must
//! return messages or typed errors, never panic or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{BatchBody, FrameDecoder, decode_frame, decode_value};

fuzz_target!(|data: &[u8]| {
    let _ = decode_frame(data, 1 << 20);
    let _ = decode_value::<BatchBody>(data);
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut dec = FrameDecoder::new(1 << 20);
    for c in data.chunks(chunk) {
        dec.push(c);
        while let Ok(Some(msg)) = dec.next_message() {
            // Whatever decodes must encode again.
            let _ = protocol::encode_frame(&msg, 1 << 24);
        }
    }
    let _ = dec.finish();
});
