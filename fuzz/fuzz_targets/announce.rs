//! A worker's announce body: never panics, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kokon_proto::Announce::parse(data);
});
