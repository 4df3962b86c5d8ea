//! Sealing a job to candidate workers and streaming its response: what each
//! side can open, and each way a hostile proxy (or relay) can tamper with
//! the stream refused with its own error.

use kokon_seal::{Candidate, ChunkError, OpenError, SealError, WorkerKey, open_job, seal_job};

struct Worker {
    key: WorkerKey,
    id: [u8; 32],
}

fn workers(n: u8) -> Vec<Worker> {
    (0..n)
        .map(|i| Worker {
            key: WorkerKey::generate(),
            id: [i + 1; 32],
        })
        .collect()
}

fn candidates(ws: &[Worker]) -> Vec<Candidate> {
    ws.iter()
        .map(|w| Candidate {
            id: w.id,
            public: w.key.public(),
        })
        .collect()
}

const JOB: [u8; 32] = [42; 32];
const BODY: &[u8] = b"{\"prompt\":\"the canary 7d1f\"}";

#[test]
fn any_candidate_opens_the_job_and_only_the_client_reads_its_answer() {
    let ws = workers(3);
    let (sealed, client) = seal_job(&candidates(&ws), &JOB, BODY).unwrap();
    assert!(
        !sealed.body.windows(6).any(|w| w == b"canary"),
        "the body travels sealed"
    );
    for w in &ws {
        let (body, mut sealer) = open_job(&w.key, &w.id, &sealed, &JOB).unwrap();
        assert_eq!(body, BODY);
        let chunks = [
            sealer.seal(b"Paris", false).unwrap(),
            sealer.seal(b" is", false).unwrap(),
            sealer.seal(b"", true).unwrap(),
        ];
        assert_eq!(sealer.seal(b"more", false), Err(ChunkError::AfterFinal));
        let mut opener = client.response_opener(&w.id).unwrap();
        let mut text = vec![];
        for c in &chunks {
            text.extend(opener.open(c).unwrap().plaintext);
        }
        assert_eq!(text, b"Paris is");
        opener.finish().expect("complete");
        // Another candidate's response keys do not read it.
        let other = ws.iter().find(|o| o.id != w.id).unwrap();
        let mut wrong = client.response_opener(&other.id).unwrap();
        assert_eq!(
            wrong.open(&chunks[0]).err(),
            Some(ChunkError::Forged { expected: 0 })
        );
    }
}

#[test]
fn a_worker_not_sealed_to_or_with_another_key_cannot_open_the_job() {
    let ws = workers(2);
    let (sealed, _) = seal_job(&candidates(&ws), &JOB, BODY).unwrap();
    let stranger = WorkerKey::generate();
    assert_eq!(
        open_job(&stranger, &[9; 32], &sealed, &JOB).unwrap_err(),
        OpenError::NotForThisWorker
    );
    // A worker claiming a candidate's identity without its key.
    assert_eq!(
        open_job(&stranger, &ws[0].id, &sealed, &JOB).unwrap_err(),
        OpenError::Unwrap
    );
    // The right worker, but the sealed job presented as another job.
    assert_eq!(
        open_job(&ws[0].key, &ws[0].id, &sealed, &[7; 32]).unwrap_err(),
        OpenError::Unwrap
    );
    // A body spliced from another job sealed to the same worker.
    let (other, _) = seal_job(&candidates(&ws), &JOB, b"another prompt").unwrap();
    let mut spliced = sealed.clone();
    spliced.body = other.body;
    assert_eq!(
        open_job(&ws[0].key, &ws[0].id, &spliced, &JOB).unwrap_err(),
        OpenError::Body
    );
}

#[test]
fn a_candidate_key_swapped_by_the_proxy_opens_for_the_proxy_not_the_worker() {
    // The proxy offered its own public key under a real worker's identity:
    // the client's verification of the worker's evidence is what stops this
    // (the key is bound into the quote); here, what the swap yields: the
    // proxy can open the job, and the real worker cannot.
    let ws = workers(1);
    let proxy = WorkerKey::generate();
    let swapped = [Candidate {
        id: ws[0].id,
        public: proxy.public(),
    }];
    let (sealed, _) = seal_job(&swapped, &JOB, BODY).unwrap();
    assert!(open_job(&proxy, &ws[0].id, &sealed, &JOB).is_ok());
    assert_eq!(
        open_job(&ws[0].key, &ws[0].id, &sealed, &JOB).unwrap_err(),
        OpenError::Unwrap
    );
}

/// A response of `n` chunks ("c0", "c1", …, the last one final).
fn response(n: usize) -> (Vec<Vec<u8>>, kokon_seal::ResponseOpener) {
    let ws = workers(1);
    let (sealed, client) = seal_job(&candidates(&ws), &JOB, BODY).unwrap();
    let (_, mut sealer) = open_job(&ws[0].key, &ws[0].id, &sealed, &JOB).unwrap();
    let chunks = (0..n)
        .map(|i| sealer.seal(format!("c{i}").as_bytes(), i + 1 == n).unwrap())
        .collect();
    (chunks, client.response_opener(&ws[0].id).unwrap())
}

#[test]
fn each_tampering_of_the_stream_is_refused_with_its_own_error() {
    let (c, mut opener) = response(4);
    opener.open(&c[0]).unwrap();
    // Replayed.
    assert_eq!(
        opener.open(&c[0]).err(),
        Some(ChunkError::Replayed {
            got: 0,
            expected: 1
        })
    );
    let (c, mut opener) = response(4);
    opener.open(&c[0]).unwrap();
    // Reordered (chunk 2 before chunk 1), or chunk 1 dropped.
    assert_eq!(
        opener.open(&c[2]).err(),
        Some(ChunkError::OutOfOrder {
            got: 2,
            expected: 1
        })
    );
    // Truncated below its tag, or altered.
    let (c, mut opener) = response(4);
    assert_eq!(
        opener.open(&c[0][..10]).err(),
        Some(ChunkError::Truncated(10))
    );
    let mut altered = c[0].clone();
    altered[0] ^= 1;
    assert_eq!(
        opener.open(&altered).err(),
        Some(ChunkError::Forged { expected: 0 })
    );
    let cut_short = &c[0][..c[0].len() - 1];
    assert_eq!(
        opener.open(cut_short).err(),
        Some(ChunkError::Forged { expected: 0 })
    );
    // Moved from another job's stream (same worker, same position).
    let (other, _) = response(4);
    assert_eq!(
        opener.open(&other[0]).err(),
        Some(ChunkError::Forged { expected: 0 })
    );
    // Cut before its final chunk: reported as cut, never as complete.
    let (c, mut opener) = response(4);
    for chunk in &c[..3] {
        assert!(!opener.open(chunk).unwrap().last);
    }
    assert_eq!(opener.finish(), Err(ChunkError::Cut(3)));
    assert!(opener.open(&c[3]).unwrap().last);
    opener.finish().unwrap();
    assert_eq!(opener.open(&c[3]).err(), Some(ChunkError::AfterFinal));
}

#[test]
fn sealing_refuses_what_it_cannot_do_safely() {
    let ws = workers(9);
    let all = candidates(&ws);
    assert_eq!(
        seal_job(&[], &JOB, BODY).unwrap_err(),
        SealError::Candidates(0)
    );
    assert_eq!(
        seal_job(&all, &JOB, BODY).unwrap_err(),
        SealError::Candidates(9)
    );
    let twice = [all[0], all[0]];
    assert_eq!(
        seal_job(&twice, &JOB, BODY).unwrap_err(),
        SealError::DuplicateCandidate(1)
    );
}

proptest::proptest! {
    /// Whatever the chunks hold, they come back in order and the stream is
    /// complete exactly when its final chunk came.
    #[test]
    fn chunks_round_trip(parts in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..64), 1..12)) {
        let ws = workers(1);
        let (sealed, client) = seal_job(&candidates(&ws), &JOB, BODY).unwrap();
        let (_, mut sealer) = open_job(&ws[0].key, &ws[0].id, &sealed, &JOB).unwrap();
        let mut opener = client.response_opener(&ws[0].id).unwrap();
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let c = sealer.seal(p, last).unwrap();
            proptest::prop_assert_eq!(c.len(), p.len() + kokon_seal::chunks::TAG_LEN);
            let o = opener.open(&c).unwrap();
            proptest::prop_assert_eq!(&o.plaintext, p);
            proptest::prop_assert_eq!(o.last, last);
        }
        proptest::prop_assert!(opener.finish().is_ok());
    }
}

#[test]
fn the_reader_follows_whichever_candidate_ran_the_job_through_the_wire() {
    let ws = workers(4);
    let (sealed, client) = seal_job(&candidates(&ws), &JOB, BODY).unwrap();
    // As the proxy forwards it: the wire encoding, parsed at the worker.
    let wire = kokon_seal::SealedJob::parse(&sealed.encode()).unwrap();
    let w = &ws[2];
    let (_, mut sealer) = open_job(&w.key, &w.id, &wire, &JOB).unwrap();
    let chunks = [
        sealer.seal(b"a", false).unwrap(),
        sealer.seal(b"b", false).unwrap(),
        sealer.seal(b"", true).unwrap(),
    ];
    let mut reader = client.reader();
    assert_eq!(reader.finish(), Err(ChunkError::Cut(0)), "nothing yet");
    assert!(
        ws.iter().all(|c| reader.may_have_run(&c.id)),
        "any candidate, yet"
    );
    assert!(!reader.may_have_run(&[0xee; 32]), "never a stranger");
    assert_eq!(reader.open(&chunks[0]).unwrap().plaintext, b"a");
    assert_eq!(reader.worker(), Some(&w.id));
    assert!(reader.may_have_run(&w.id));
    assert!(
        !reader.may_have_run(&ws[1].id),
        "only the one that answered"
    );
    assert_eq!(
        reader.open(&chunks[0]).err(),
        Some(ChunkError::Replayed {
            got: 0,
            expected: 1
        })
    );
    // A fresh reader that gets the second chunk first says it is early.
    let mut early = client.reader();
    assert_eq!(
        early.open(&chunks[1]).err(),
        Some(ChunkError::OutOfOrder {
            got: 1,
            expected: 0
        })
    );
    reader.open(&chunks[1]).unwrap();
    assert!(reader.open(&chunks[2]).unwrap().last);
    reader.finish().expect("complete");
    // Another job's chunk is forged to this one's reader.
    let (_, other) = seal_job(&candidates(&ws), &[7; 32], BODY).unwrap();
    assert_eq!(
        other.reader().open(&chunks[0]).err(),
        Some(ChunkError::Forged { expected: 0 })
    );
}
