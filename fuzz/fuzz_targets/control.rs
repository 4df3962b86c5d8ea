//! Calls about a running job (cancel, dispute) and about a channel's bills
//! (reconcile request, and the reply a hostile proxy sends) as a link
//! decodes their bodies, and the output meter fed by a hostile worker's
//! frames: never panics, a decoded dispute and reconcile reply round-trip
//! (an offered authorisation's hash is computed, never trusted), and the
//! receipt bound never overflows or shrinks as output grows.
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
    let _ = serde_json::from_slice::<kokon_proto::ReconcileRequest>(data);
    if let Ok(r) = serde_json::from_slice::<kokon_proto::ReconcileReply>(data) {
        let back: kokon_proto::ReconcileReply =
            serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        for job in &r.jobs {
            let _ = job.auth.signed_hash();
            let _ = job.auth.budget();
        }
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
