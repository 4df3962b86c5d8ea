//! The host quoting service's answers (QGS protocol): never panics, and a
//! quote it returns lies inside the message.
#![no_main]

use kokon_attest::qgs::parse_quote_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = parse_quote_response(data) {
        assert!(!quote.is_empty() && quote.len() <= data.len());
    }
});
