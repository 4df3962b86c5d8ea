//! Oblivious HTTP for Kokon: a client encapsulates each request to a
//! proxy's gateway key and sends it through a relay, so the relay learns
//! who asks but not what, and the proxy what is asked (a job already sealed
//! to its worker) but not who.
//!
//! * [`config`]: key configurations and `application/ohttp-keys` (RFC 9458 §3).
//! * [`keys`]: the gateway's private keys and their rotation with overlap.
//! * [`encap`]: whole requests and responses (RFC 9458 §4).
//! * [`chunked`]: chunked requests and streamed responses
//!   (draft-ietf-ohai-chunked-ohttp).
//! * [`msg`]: the binary HTTP messages inside (RFC 9292), whole or streamed.
//! * [`document`]: the gateway's keys signed by its attested key, so a
//!   client uses only keys generated inside an attested proxy.
//! * [`media`]: the media types.
//!
//! The HPKE suite is DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM
//! (the `hpke` crate; response keys with `ring`). No I/O: the daemons move
//! the bytes. Interoperability with the `ohttp` crate and RFC 9458's
//! Appendix A example are checked in the tests.

pub mod chunked;
pub mod config;
pub mod document;
pub mod encap;
mod error;
pub mod keys;
pub mod msg;
mod suite;
mod varint;

pub use config::KeyConfig;
pub use error::{OhttpError, PROBLEM_OHTTP_KEY};
pub use keys::{GatewayKey, GatewayKeys};
pub use suite::{HEADER_LEN, RESPONSE_NONCE_LEN, ResponseKey};

/// Media types (RFC 9458 §9, draft-ietf-ohai-chunked-ohttp).
pub mod media {
    pub const KEYS: &str = "application/ohttp-keys";
    pub const REQUEST: &str = "message/ohttp-req";
    pub const RESPONSE: &str = "message/ohttp-res";
    pub const CHUNKED_REQUEST: &str = "message/ohttp-chunked-req";
    pub const CHUNKED_RESPONSE: &str = "message/ohttp-chunked-res";
    pub const PROBLEM: &str = "application/problem+json";
}
