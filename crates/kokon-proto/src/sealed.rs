//! A sealed job as it travels: the job body under a content key, and that
//! key wrapped for each candidate worker (see `kokon-seal` for the
//! cryptography; this module is only the wire format, which the proxy
//! reads to learn the candidate set and nothing else).
//!
//! ```text
//! version: u8 (1) | n: u8 (1..=8) | n × (candidate: 32 | enc: 32 | key: 48) | body
//! ```
//!
//! `candidate` is the SHA-256 of the worker's RA-TLS certificate (DER),
//! `enc` HPKE's encapsulated key, `key` the content key sealed in that
//! candidate's HPKE context (32 bytes and a 16-byte tag), and `body` the
//! job sealed under the content key (the tag last).

/// Wire version of a sealed job.
pub const SEALED_VERSION: u8 = 1;

/// Most candidates one job is sealed to.
pub const MAX_CANDIDATES: usize = 8;

/// Bytes of a wrapped content key (the key and its AEAD tag).
pub const WRAPPED_KEY_LEN: usize = 48;

/// Bytes an AEAD tag adds (the body's, and each response chunk's).
pub const TAG_LEN: usize = 16;

const ENTRY_LEN: usize = 32 + 32 + WRAPPED_KEY_LEN;

/// The content key wrapped for one candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// SHA-256 of the candidate's certificate.
    pub candidate: [u8; 32],
    /// HPKE's encapsulated key.
    pub enc: [u8; 32],
    /// The content key, sealed in the candidate's HPKE context.
    pub key: [u8; WRAPPED_KEY_LEN],
}

/// A job sealed to its candidates. `Debug` shows the candidates and sizes only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedJob {
    pub keys: Vec<WrappedKey>,
    /// The job body under the content key (ciphertext and tag).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for SealedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedJob")
            .field("candidates", &self.keys.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A payload that is not a sealed job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealedError {
    #[error("sealed job of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("sealed job version {0} is unknown (this node reads version {SEALED_VERSION})")]
    Version(u8),
    #[error("a job is sealed to 1 to {MAX_CANDIDATES} candidates, not {0}")]
    Candidates(usize),
    #[error("candidate {0} is named twice")]
    DuplicateCandidate(usize),
    #[error("the sealed body is shorter than its tag")]
    NoBody,
}

impl SealedJob {
    /// The candidates it can go to (what the proxy picks from).
    pub fn candidates(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.keys.iter().map(|k| &k.candidate)
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.keys.len() * ENTRY_LEN + self.body.len());
        out.push(SEALED_VERSION);
        out.push(self.keys.len() as u8);
        for k in &self.keys {
            out.extend_from_slice(&k.candidate);
            out.extend_from_slice(&k.enc);
            out.extend_from_slice(&k.key);
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses a sealed job, bounding the candidate count.
    pub fn parse(bytes: &[u8]) -> Result<Self, SealedError> {
        let n = check_header(bytes)?;
        let keys = entries(bytes, n)
            .map(|e| WrappedKey {
                candidate: e[..32].try_into().expect("32 bytes"),
                enc: e[32..64].try_into().expect("32 bytes"),
                key: e[64..].try_into().expect("48 bytes"),
            })
            .collect();
        Ok(Self {
            keys,
            body: bytes[2 + n * ENTRY_LEN..].to_vec(),
        })
    }

    /// The candidate set of a sealed payload, without copying its body
    /// (what the proxy reads to route it).
    pub fn candidates_of(bytes: &[u8]) -> Result<Vec<[u8; 32]>, SealedError> {
        let n = check_header(bytes)?;
        Ok(entries(bytes, n)
            .map(|e| e[..32].try_into().expect("32 bytes"))
            .collect())
    }
}

/// Checks version, count, length and distinct candidates; the count.
fn check_header(bytes: &[u8]) -> Result<usize, SealedError> {
    let [version, n, ..] = bytes else {
        return Err(SealedError::Short(bytes.len()));
    };
    if *version != SEALED_VERSION {
        return Err(SealedError::Version(*version));
    }
    let n = usize::from(*n);
    if n == 0 || n > MAX_CANDIDATES {
        return Err(SealedError::Candidates(n));
    }
    let body_at = 2 + n * ENTRY_LEN;
    if bytes.len() < body_at {
        return Err(SealedError::Short(bytes.len()));
    }
    if bytes.len() < body_at + TAG_LEN {
        return Err(SealedError::NoBody);
    }
    let ids: Vec<&[u8]> = entries(bytes, n).map(|e| &e[..32]).collect();
    if let Some(i) = (1..n).find(|&i| ids[..i].contains(&ids[i])) {
        return Err(SealedError::DuplicateCandidate(i));
    }
    Ok(n)
}

fn entries(bytes: &[u8], n: usize) -> impl Iterator<Item = &[u8]> {
    bytes[2..2 + n * ENTRY_LEN].chunks_exact(ENTRY_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u8) -> SealedJob {
        SealedJob {
            keys: (0..n)
                .map(|i| WrappedKey {
                    candidate: [i; 32],
                    enc: [i + 100; 32],
                    key: [i + 50; WRAPPED_KEY_LEN],
                })
                .collect(),
            body: vec![7; 40],
        }
    }

    #[test]
    fn round_trips_and_names_its_candidates() {
        let job = sample(3);
        let bytes = job.encode();
        assert_eq!(SealedJob::parse(&bytes).unwrap(), job);
        assert_eq!(
            SealedJob::candidates_of(&bytes).unwrap(),
            vec![[0; 32], [1; 32], [2; 32]]
        );
    }

    #[test]
    fn refuses_what_is_not_a_sealed_job() {
        let good = sample(2).encode();
        assert_eq!(SealedJob::parse(&[]), Err(SealedError::Short(0)));
        assert_eq!(
            SealedJob::parse(b"{\"model\":1}"),
            Err(SealedError::Version(b'{'))
        );
        let mut none = good.clone();
        none[1] = 0;
        assert_eq!(SealedJob::parse(&none), Err(SealedError::Candidates(0)));
        let mut many = good.clone();
        many[1] = 9;
        assert_eq!(SealedJob::parse(&many), Err(SealedError::Candidates(9)));
        assert_eq!(
            SealedJob::parse(&good[..2 + ENTRY_LEN]),
            Err(SealedError::Short(2 + ENTRY_LEN))
        );
        let cut = &good[..2 + 2 * ENTRY_LEN + TAG_LEN - 1];
        assert_eq!(SealedJob::parse(cut), Err(SealedError::NoBody));
        let mut twice = sample(2);
        twice.keys[1].candidate = twice.keys[0].candidate;
        assert_eq!(
            SealedJob::parse(&twice.encode()),
            Err(SealedError::DuplicateCandidate(1))
        );
    }
}
