//! The worker's HPKE keys: one fresh key pair per RA-TLS certificate, made
//! inside the TEE when the certificate is issued, its public half bound
//! into the certificate's claims (so into the quote's report data).
//!
//! A certificate rotated out still has links that run on it, and clients
//! that sealed to it a moment ago: the keys of the last [`KEPT`]
//! certificates are kept. The secret halves never leave this type.

use std::collections::VecDeque;
use std::sync::Mutex;

use kokon_proto::{ErrorCode, JobError, JobHeader, SealedJob};
use kokon_seal::{OpenError, ResponseSealer, WorkerKey};

/// Certificates whose keys are kept (the current one and those before it).
pub const KEPT: usize = 4;

/// A worker's HPKE keys by certificate.
#[derive(Debug, Default)]
pub struct JobKeys(Mutex<Keys>);

#[derive(Debug, Default)]
struct Keys {
    /// Made for a certificate being issued.
    pending: Option<WorkerKey>,
    /// By the SHA-256 of the certificate that carries them, newest last.
    issued: VecDeque<([u8; 32], WorkerKey)>,
}

impl JobKeys {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a sealed job addressed to one of this worker's certificates,
    /// bound to `header`: its plaintext body and the sealer of its response.
    pub fn open(
        &self,
        header: &JobHeader,
        payload: &[u8],
    ) -> Result<(Vec<u8>, ResponseSealer), JobError> {
        let job = SealedJob::parse(payload)
            .map_err(|e| JobError::new(ErrorCode::BadRequest, format!("not a sealed job: {e}")))?;
        let keys = self.lock();
        let mine = keys
            .issued
            .iter()
            .find(|(cert, _)| job.candidates().any(|c| c == cert));
        let Some((cert, key)) = mine else {
            return Err(JobError::new(
                ErrorCode::StaleCandidates,
                "the job is not sealed to any current key of this worker",
            ));
        };
        kokon_seal::open_job(key, cert, &job, &header.binding()).map_err(|e| match e {
            OpenError::NotForThisWorker => JobError::new(ErrorCode::StaleCandidates, e.to_string()),
            _ => JobError::new(
                ErrorCode::BadRequest,
                format!("the sealed job does not open for its header: {e}"),
            ),
        })
    }
}

impl kokon_tls::node::SealingKeys for JobKeys {
    fn next_public(&self) -> [u8; 32] {
        let key = WorkerKey::generate();
        let public = key.public();
        self.lock().pending = Some(key);
        public
    }

    fn issued(&self, public: [u8; 32], cert_sha256: [u8; 32]) {
        let mut keys = self.lock();
        let Some(key) = keys.pending.take().filter(|k| k.public() == public) else {
            return;
        };
        if keys.issued.len() == KEPT {
            keys.issued.pop_front();
        }
        keys.issued.push_back((cert_sha256, key));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use kokon_proto::{Frame, JobKind};
    use kokon_seal::{Candidate, ClientJob, seal_job};
    use kokon_tls::node::SealingKeys;

    use super::*;
    use crate::flow::{Action, FlowConfig, WorkerFlow};

    fn header() -> JobHeader {
        JobHeader {
            request_id: "r1".into(),
            model: "m".into(),
            kind: JobKind::Chat,
            max_price_milli: None,
            budget: None,
            payment: None,
            credit: None,
            sealed: true,
        }
    }

    /// Keys that issued a certificate `cert`; its candidate entry.
    fn issue(keys: &JobKeys, cert: u8) -> Candidate {
        let public = keys.next_public();
        keys.issued(public, [cert; 32]);
        Candidate {
            id: [cert; 32],
            public,
        }
    }

    fn sealed_to(cs: &[Candidate], h: &JobHeader) -> (Vec<u8>, ClientJob) {
        let (job, client) = seal_job(cs, &h.binding(), b"{\"secret\":1}").unwrap();
        (job.encode(), client)
    }

    #[test]
    fn opens_jobs_sealed_to_its_recent_certificates_only() {
        let keys = JobKeys::new();
        let first = issue(&keys, 1);
        let (payload, _) = sealed_to(&[first], &header());
        assert_eq!(keys.open(&header(), &payload).unwrap().0, b"{\"secret\":1}");
        // Rotated: the old certificate's key is kept for its live links…
        for cert in 2..=KEPT as u8 {
            issue(&keys, cert);
        }
        assert!(keys.open(&header(), &payload).is_ok());
        // …until KEPT newer certificates replaced it.
        issue(&keys, 99);
        let e = keys.open(&header(), &payload).unwrap_err();
        assert_eq!(e.code, ErrorCode::StaleCandidates, "{}", e.message);
    }

    #[test]
    fn a_header_altered_on_the_way_or_a_payload_that_is_not_sealed_is_refused() {
        let keys = JobKeys::new();
        let c = issue(&keys, 1);
        let (payload, _) = sealed_to(&[c], &header());
        let mut bigger = header();
        bigger.budget = Some(kokon_money::receipt::Budget {
            prompt: 10,
            completion: 10_000,
        });
        let e = keys.open(&bigger, &payload).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{}", e.message);
        let e = keys.open(&header(), b"{\"model\":\"m\"}").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{}", e.message);
        // A key pair made for a certificate that was never issued opens nothing.
        let orphan = Candidate {
            id: [5; 32],
            public: keys.next_public(),
        };
        let (payload, _) = sealed_to(&[orphan], &header());
        let e = keys.open(&header(), &payload).unwrap_err();
        assert_eq!(e.code, ErrorCode::StaleCandidates);
    }

    #[test]
    fn a_sealed_flow_sends_sealed_text_and_a_final_chunk_before_its_end() {
        let keys = JobKeys::new();
        let c = issue(&keys, 1);
        let (payload, client) = sealed_to(&[c], &header());
        let (_, sealer) = keys.open(&header(), &payload).unwrap();
        let cfg = FlowConfig {
            paid: false,
            engine_idle_timeout: Duration::from_secs(60),
            receipt_every_tokens: 0,
            receipt_every: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let mut f = WorkerFlow::new(cfg, t0, Some(sealer));
        let usage = kokon_proto::Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
        };
        f.text("canary".into(), usage, t0);
        f.engine_done(Ok(kokon_proto::JobEnd {
            usage,
            finish_reason: kokon_proto::FinishReason::Stop,
            receipt: None,
        }));
        let frames: Vec<Frame> = std::iter::from_fn(|| f.poll_action())
            .filter_map(|a| match a {
                Action::Send(fr) => Some(fr),
                _ => None,
            })
            .collect();
        let mut reader = client.reader();
        let [Frame::Data(text), Frame::Data(last), Frame::End(_)] = &frames[..] else {
            panic!("data, final chunk, end: {frames:?}");
        };
        assert!(
            !text.windows(6).any(|w| w == b"canary"),
            "sealed on the wire"
        );
        assert_eq!(reader.open(text).unwrap().plaintext, b"canary");
        assert!(reader.open(last).unwrap().last);
        reader.finish().expect("complete before the End");
    }
}
