//! Response frames from a peer, fed in arbitrary splits: never panics, and
//! every decoded frame re-encodes to bytes that decode to the same frame.
#![no_main]

use kokon_proto::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(1).max(1) as usize;
    let mut dec = FrameDecoder::new();
    for chunk in data.chunks(split) {
        dec.push(chunk);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    let mut again = FrameDecoder::new();
                    again.push(&frame.encode());
                    assert_eq!(again.next_frame(), Ok(Some(frame)));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = dec.finish();
});
