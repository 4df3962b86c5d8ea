//! Binary HTTP inside the encapsulation (RFC 9292) as the gateway and the
//! client decode it: requests and whole responses, and a streamed response
//! fed in pieces. Never panics; a decoded request re-encodes to one that
//! decodes the same.
#![no_main]

use kokon_ohttp::msg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = msg::decode_request(data) {
        let again = msg::decode_request(&msg::encode_request(&req)).unwrap();
        assert_eq!(again.method(), req.method());
        assert_eq!(again.uri(), req.uri());
        assert_eq!(again.headers(), req.headers());
        assert_eq!(again.body(), req.body());
    }
    let _ = msg::decode_response(data);
    let mut reader = msg::StreamReader::default();
    for piece in data.chunks(5) {
        if reader.push(piece).is_err() {
            break;
        }
    }
});
