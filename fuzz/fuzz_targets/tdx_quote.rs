//! TDX quotes: parsing, and DCAP verification against the sample collateral
//! at a time inside its window (so inputs near the real quote reach the
//! signature, QE and TCB checks): never panics, and parse agrees with verify.
#![no_main]

use std::sync::OnceLock;

use kokon_attest::tdx::{Collateral, TdxTrust, parse_quote, verify_quote};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_751_328_000;

fn trust() -> &'static TdxTrust {
    static T: OnceLock<TdxTrust> = OnceLock::new();
    T.get_or_init(|| {
        let json = include_bytes!("../../crates/kokon-attest/testdata/tdx/tdx_quote_collateral.json");
        let (fmspc, coll) = Collateral::parse(json).expect("sample collateral");
        let mut c = Collateral::default();
        c.insert(fmspc, coll);
        TdxTrust::intel(c)
    })
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_quote(data);
    if let Ok(report) = verify_quote(data, trust(), NOW) {
        assert_eq!(parsed.expect("a quote that verifies parses"), report.body);
    }
});
