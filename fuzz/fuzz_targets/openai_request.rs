//! OpenAI request bodies as the gateway checks them: never panics; every
//! refusal is a 4xx naming what is wrong; an accepted request became a job
//! for the model it named, with a valid header.
#![no_main]

use kokon_gateway::check_request;
use kokon_proto::JobKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [JobKind::Chat, JobKind::Completion] {
        match check_request(data, kind, Some(1000)) {
            Ok((header, job)) => {
                assert_eq!(header.model, job.model);
                assert!(kokon_proto::header::valid_model(&header.model));
                let mut map = http::HeaderMap::new();
                header.write(&mut map);
                assert_eq!(kokon_proto::JobHeader::read(&map), Ok(header));
            }
            Err(e) => {
                assert!(e.status.is_client_error(), "{} for a bad request", e.status);
                assert!(!e.message.is_empty());
            }
        }
    }
});
