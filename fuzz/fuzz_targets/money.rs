//! Vouchers as peers send them (JSON), then checked as the proxy and the
//! worker check them: never panics, and anything that verifies round-trips.
#![no_main]

use kokon_money::{Address, ChannelVoucher, PublicKey, Signed, WorkerVoucher};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = PublicKey([7; 32]);
    if let Ok(v) = serde_json::from_slice::<Signed<ChannelVoucher>>(data) {
        if v.verify(&key).is_ok() {
            let again: Signed<ChannelVoucher> =
                serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(again, v);
        }
    }
    if let Ok(v) = serde_json::from_slice::<Signed<WorkerVoucher>>(data) {
        let _ = v.verify(&key);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Address::parse(s);
    }
});
