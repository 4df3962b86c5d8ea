//! What a TON API (or anyone pretending to be one) answers: get-method
//! stacks (with cells as base64 bags of cells), transactions, and the
//! registry's dictionaries and TD policy inside such cells. Never panics.
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
                read_td_policy(&c);
            }
        }
    }
    // Raw bags of cells, as contract code or a stack cell.
    if let Ok(c) = kokon_ton::boc::parse(data) {
        let _ = kokon_ton::registry::parse_dicts(&c);
        read_td_policy(&c);
    }
});

/// A TD policy cell read back is the same policy once written again.
fn read_td_policy(c: &tonlib_core::cell::Cell) {
    use kokon_ton::td_policy::{read_td_policy, td_policy_cell};
    if let Ok(p) = read_td_policy(c) {
        let again = td_policy_cell(&p).expect("a policy that was read can be written");
        assert_eq!(read_td_policy(&again).ok(), Some(p));
    }
}
