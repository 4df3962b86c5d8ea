//! Job headers with arbitrary values: never panics; accepted headers round-trip.
#![no_main]

use http::header::{HeaderMap, HeaderValue};
use kokon_proto::JobHeader;
use kokon_proto::header::http_names::{KIND, MAX_PRICE, MODEL, REQUEST_ID};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let mut map = HeaderMap::new();
    for name in [REQUEST_ID, MODEL, KIND, MAX_PRICE] {
        if let Some(v) = parts.next().and_then(|p| HeaderValue::from_bytes(p).ok()) {
            map.insert(name, v);
        }
    }
    if let Ok(h) = JobHeader::read(&map) {
        let mut out = HeaderMap::new();
        h.write(&mut out);
        assert_eq!(JobHeader::read(&out), Ok(h));
    }
});
