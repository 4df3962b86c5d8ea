//! What a TON API (or anyone pretending to be one) answers: get-method
//! stacks (with cells as base64 bags of cells), transactions, and the
//! registry's dictionaries inside such cells. Never panics.
#![no_main]

use kokon_ton::api::{Stack, parse_get_result, parse_transactions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(txs) = parse_transactions(data) {
        for t in &txs {
            let _ = t.failure();
        }
    }
    if let Ok(entries) = parse_get_result("fuzz", data) {
        let mut s = Stack::new(entries.clone());
        let _ = (s.key(), s.u128(), s.address(), s.bool(), s.cell());
        for e in entries {
            if let kokon_ton::api::Entry::Cell(c) = e {
                let _ = kokon_ton::registry::parse_dicts(&c);
                let _ = kokon_ton::cells::read_string(&c);
            }
        }
    }
    // Raw bags of cells, as contract code or a stack cell.
    if let Ok(c) = kokon_ton::boc::parse(data) {
        let _ = kokon_ton::registry::parse_dicts(&c);
    }
});
