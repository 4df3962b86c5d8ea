//! A job sealed once and its key wrapped for each candidate worker.
//!
//! The client draws a fresh 32-byte content key, seals the job body under
//! it (AES-256-GCM, associated data bound to the job), and wraps the content
//! key for each candidate with HPKE base mode, the `info` naming the job and
//! the candidate. The proxy forwards the sealed job to the candidate it
//! picks; that worker unwraps its copy inside its TEE. Both ends derive the
//! response keys from the same HPKE context (`Export`), so only the worker
//! that opened the job can answer it, and only this client can read it.

use hpke::{OpModeR, OpModeS, Serializable};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::chunks::{ChunkError, Opened, ResponseKeys, ResponseOpener, ResponseSealer};
use crate::suite::{self, Aead, Kdf, Kem, PUBLIC_KEY_LEN, WorkerKey};

pub use kokon_proto::sealed::{MAX_CANDIDATES, SealedJob, WrappedKey};

const INFO: &[u8] = b"kokon/job/v1\0";
const BODY_AAD: &[u8] = b"kokon/job-body/v1\0";

/// A worker the client sealed a job to: its certificate's identity (a hash
/// the client computed when it verified the worker's evidence) and the HPKE
/// public key that evidence carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: [u8; 32],
    pub public: [u8; PUBLIC_KEY_LEN],
}

/// Why a job could not be sealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("a job is sealed to 1 to {MAX_CANDIDATES} candidates, not {0}")]
    Candidates(usize),
    #[error("candidate {0} is named twice")]
    DuplicateCandidate(usize),
    #[error("candidate {0}'s public key is not an X25519 key")]
    BadPublicKey(usize),
    #[error("HPKE failed: {0}")]
    Hpke(String),
}

/// Why a worker could not open a job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the job is not sealed to this worker")]
    NotForThisWorker,
    #[error("the wrapped key is malformed")]
    Malformed,
    #[error("the content key does not open with this worker's key for this job")]
    Unwrap,
    #[error("the job body does not open under its content key for this job")]
    Body,
}

/// What the client keeps of a sealed job: the response keys of each
/// candidate, to read the answer of whichever one ran it.
pub struct ClientJob {
    binding: [u8; 32],
    responses: Vec<([u8; 32], ResponseKeys)>,
}

impl std::fmt::Debug for ClientJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientJob")
            .field("candidates", &self.responses.len())
            .finish_non_exhaustive()
    }
}

impl ClientJob {
    /// The reader of the response, from whichever candidate the proxy
    /// picked.
    pub fn reader(&self) -> ResponseReader {
        ResponseReader::Unknown(
            self.responses
                .iter()
                .map(|(id, keys)| (*id, ResponseOpener::new(keys, &self.binding)))
                .collect(),
        )
    }

    /// The opener of the response from `candidate`, if the job was sealed
    /// to it.
    pub fn response_opener(&self, candidate: &[u8; 32]) -> Option<ResponseOpener> {
        self.responses
            .iter()
            .find(|(id, _)| id == candidate)
            .map(|(_, keys)| ResponseOpener::new(keys, &self.binding))
    }
}

/// The client's end of a response: the first chunk says which candidate
/// ran the job (only that candidate's keys open it), and every chunk after
/// must come from the same one, in order.
pub enum ResponseReader {
    /// No chunk yet: any candidate may have run the job.
    Unknown(Vec<([u8; 32], ResponseOpener)>),
    /// The candidate that ran the job, and its stream.
    Known([u8; 32], Box<ResponseOpener>),
}

impl std::fmt::Debug for ResponseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown(c) => write!(f, "ResponseReader(one of {})", c.len()),
            Self::Known(..) => f.write_str("ResponseReader(known worker)"),
        }
    }
}

impl ResponseReader {
    /// Opens the next chunk (see [`ResponseOpener::open`]).
    pub fn open(&mut self, chunk: &[u8]) -> Result<Opened, ChunkError> {
        let candidates = match self {
            Self::Known(_, opener) => return opener.open(chunk),
            Self::Unknown(candidates) => candidates,
        };
        let found = candidates
            .iter_mut()
            .enumerate()
            .find_map(|(i, (_, o))| o.try_next(chunk).map(|opened| (i, opened)));
        let Some((i, opened)) = found else {
            // A chunk none opens as the first: say how it is bad, as the
            // candidate whose stream it belongs to (if any) sees it.
            let mut errors = candidates.iter_mut().map(|(_, o)| o.open(chunk));
            let first = errors.next();
            let telling = errors
                .filter_map(Result::err)
                .find(|e| !matches!(e, ChunkError::Forged { .. }));
            return Err(telling
                .or(first.and_then(Result::err))
                .unwrap_or(ChunkError::Forged { expected: 0 }));
        };
        let (id, opener) = candidates.swap_remove(i);
        *self = Self::Known(id, Box::new(opener));
        Ok(opened)
    }

    /// The candidate that ran the job, once its first chunk was opened.
    pub fn worker(&self) -> Option<&[u8; 32]> {
        match self {
            Self::Known(id, _) => Some(id),
            Self::Unknown(_) => None,
        }
    }

    /// Whether the candidate `id` may have run the job: the one whose keys
    /// opened its first chunk, or, before any chunk, any of its candidates.
    /// A receipt signed by any other worker is not for this job's work.
    pub fn may_have_run(&self, id: &[u8; 32]) -> bool {
        match self {
            Self::Known(known, _) => known == id,
            Self::Unknown(candidates) => candidates.iter().any(|(c, _)| c == id),
        }
    }

    /// The stream ended: complete only if its final chunk came.
    pub fn finish(&self) -> Result<(), ChunkError> {
        match self {
            Self::Known(_, opener) => opener.finish(),
            Self::Unknown(_) => Err(ChunkError::Cut(0)),
        }
    }
}

/// Seals `body` for `candidates`. `binding` names the job (e.g. a hash of
/// its request id and routing header): a sealed job, or any chunk of its
/// response, opens only for the same binding.
pub fn seal_job(
    candidates: &[Candidate],
    binding: &[u8; 32],
    body: &[u8],
) -> Result<(SealedJob, ClientJob), SealError> {
    if candidates.is_empty() || candidates.len() > MAX_CANDIDATES {
        return Err(SealError::Candidates(candidates.len()));
    }
    for (i, c) in candidates.iter().enumerate() {
        if candidates[..i].iter().any(|d| d.id == c.id) {
            return Err(SealError::DuplicateCandidate(i));
        }
    }
    let content_key: [u8; 32] = rand::random();
    let mut keys = Vec::with_capacity(candidates.len());
    let mut responses = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        let pk = suite::public_key(&c.public).ok_or(SealError::BadPublicKey(i))?;
        let info = info(binding, &c.id);
        let (enc, mut ctx) = hpke::setup_sender::<Aead, Kdf, Kem>(&OpModeS::Base, &pk, &info)
            .map_err(|e| SealError::Hpke(e.to_string()))?;
        let key = ctx
            .seal(&content_key, b"")
            .map_err(|e| SealError::Hpke(e.to_string()))?
            .try_into()
            .map_err(|_| SealError::Hpke("a wrapped key of unexpected length".into()))?;
        let response = ResponseKeys::export(|label, out| ctx.export(label, out))
            .map_err(|e| SealError::Hpke(e.to_string()))?;
        let mut enc_bytes = [0u8; PUBLIC_KEY_LEN];
        enc_bytes.copy_from_slice(&enc.to_bytes());
        keys.push(WrappedKey {
            candidate: c.id,
            enc: enc_bytes,
            key,
        });
        responses.push((c.id, response));
    }
    let mut sealed_body = body.to_vec();
    body_key(&content_key)
        .seal_in_place_append_tag(body_nonce(), body_aad(binding), &mut sealed_body)
        .map_err(|_| SealError::Hpke("body sealing failed".into()))?;
    let job = SealedJob {
        keys,
        body: sealed_body,
    };
    Ok((
        job,
        ClientJob {
            binding: *binding,
            responses,
        },
    ))
}

/// Opens a job sealed to this worker (`id` is its certificate's identity);
/// returns the body and the sealer of its response.
pub fn open_job(
    key: &WorkerKey,
    id: &[u8; 32],
    job: &SealedJob,
    binding: &[u8; 32],
) -> Result<(Vec<u8>, ResponseSealer), OpenError> {
    let wrapped = job
        .keys
        .iter()
        .find(|k| &k.candidate == id)
        .ok_or(OpenError::NotForThisWorker)?;
    let enc = suite::encapped(&wrapped.enc).ok_or(OpenError::Malformed)?;
    let info = info(binding, id);
    let mut ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, key.secret(), &enc, &info)
        .map_err(|_| OpenError::Unwrap)?;
    let content_key: [u8; 32] = ctx
        .open(&wrapped.key, b"")
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(OpenError::Unwrap)?;
    let response =
        ResponseKeys::export(|label, out| ctx.export(label, out)).map_err(|_| OpenError::Unwrap)?;
    let mut body = job.body.clone();
    let plain = body_key(&content_key)
        .open_in_place(body_nonce(), body_aad(binding), &mut body)
        .map_err(|_| OpenError::Body)?;
    let len = plain.len();
    body.truncate(len);
    Ok((body, ResponseSealer::new(&response, binding)))
}

fn info(binding: &[u8; 32], candidate: &[u8; 32]) -> Vec<u8> {
    [INFO, binding, candidate].concat()
}

fn body_key(content_key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, content_key).expect("a 32-byte key"))
}

/// The content key seals exactly one message, so a fixed nonce is unique
/// for it.
fn body_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0; 12])
}

fn body_aad(binding: &[u8; 32]) -> Aad<Vec<u8>> {
    Aad::from([BODY_AAD, binding].concat())
}
