//! End-to-end sealing between a client and the attested worker that runs
//! its job, so that the proxy between them routes ciphertext only.
//!
//! * The suite is RFC 9180's DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//!   AES-256-GCM ([`suite`]), from the `hpke` crate; its RFC test vectors run
//!   in this crate's tests.
//! * A job is sealed once, under a fresh content key, and the content key is
//!   wrapped for each of several candidate workers ([`job`]): the proxy picks
//!   one of them, and only that worker (inside its TEE) can open it.
//! * The response streams as chunks under keys exported from the picked
//!   worker's HPKE context ([`chunks`]): each chunk's nonce and associated
//!   data carry its sequence number and a final flag, and are bound to the
//!   job, so a chunk truncated, reordered, replayed or moved from another job
//!   is refused with its own error, and a stream cut before its final chunk
//!   is reported as cut.
//!
//! Pure: no I/O, no clock; randomness only from the system RNG.

pub mod chunks;
pub mod job;
pub mod suite;

pub use chunks::{ChunkError, Opened, ResponseOpener, ResponseSealer};
pub use job::{
    Candidate, ClientJob, MAX_CANDIDATES, OpenError, ResponseReader, SealError, SealedJob,
    WrappedKey, open_job, seal_job,
};
pub use suite::{PUBLIC_KEY_LEN, WorkerKey};
