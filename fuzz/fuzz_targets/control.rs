//! Calls about a running job (cancel, dispute) as a link decodes their
//! bodies, and the output meter fed by a hostile worker's frames: never
//! panics, a decoded dispute round-trips, and the receipt bound never
//! overflows or shrinks as output grows.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<kokon_proto::CancelRequest>(data);
    if let Ok(d) = serde_json::from_slice::<kokon_proto::DisputeRequest>(data) {
        let back: kokon_proto::DisputeRequest =
            serde_json::from_slice(&serde_json::to_vec(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        let _ = kokon_proto::DisputeRequest::signing_hash(&d.channel, &d.request_id);
    }
    let mut meter = kokon_proto::OutputMeter::default();
    let mut bound = meter.completion_bound();
    for chunk in data.chunks(7) {
        meter.add(usize::from(chunk[0]) << (chunk.len() * 4));
        let next = meter.completion_bound();
        assert!(next >= bound, "the bound shrank");
        bound = next;
    }
});
