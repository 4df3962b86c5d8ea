//! Evidence, simulated quotes and claims: never panic; accepted values round-trip.
#![no_main]

use kokon_attest::{Claims, Evidence, SimulatedQuote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Evidence::parse(data) {
        assert_eq!(Evidence::parse(&e.to_bytes()), Ok(e.clone()));
        if let Ok(q) = SimulatedQuote::parse(&e.quote) {
            assert_eq!(SimulatedQuote::parse(&q.to_bytes()), Ok(q));
        }
    }
    if let Ok(c) = Claims::parse(data) {
        assert_eq!(Claims::parse(&c.to_bytes()), Ok(c));
    }
});
