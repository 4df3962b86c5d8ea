//! Attestation for Kokon links: evidence kinds, RA-TLS certificates and a pure
//! verifier.
//!
//! A Kokon certificate is a short-lived, self-signed Ed25519 X.509 certificate
//! with two critical extensions:
//!
//! * [`oids::CLAIMS`]: JSON [`Claims`] (role, TLS key hash, issue time, config hash…);
//! * [`oids::EVIDENCE`]: one kind byte and the quote ([`Evidence`]).
//!
//! Evidence is `tdx` (an Intel TDX quote from the kernel's configfs-tsm
//! interface, [`tsm`], verified with DCAP against Intel's root, [`tdx`]) or
//! `simulated` (test networks only).
//!
//! The quote's 64-byte report data is `sha256(SPKI) ‖ sha256(claims bytes)`,
//! so the evidence cannot be moved to another key or other claims.
//!
//! [`verify::verify_certificate`] takes DER bytes, a [`Policy`] and `now`, does
//! no I/O, and on success returns a [`VerifiedPeer`], a type only the verifier
//! can construct: code that needs an attested peer asks for one.

pub mod cert;
pub mod claims;
pub mod clock;
pub mod error;
pub mod evidence;
pub mod inspect;
pub mod policy;
pub mod qgs;
pub mod registry;
pub mod session;
pub mod td;
pub mod tdx;
pub mod tdx_guest;
pub mod tsm;
pub mod verify;

pub use cert::{Identity, IdentityParams, IssueError};
pub use claims::{Claims, Role};
pub use clock::{Clock, SystemClock};
pub use error::AttestError;
pub use evidence::{
    Evidence, EvidenceKind, EvidenceSource, Measurements, SimulatedQuote, SimulatedSource,
};
pub use policy::{ModelRules, Policy, RolePolicy, RoutingBounds};
pub use registry::{Network, Registry, RegistryError, RoutingRules, TdRules};
pub use td::{TdConfig, TdPolicy};
pub use verify::{TdFacts, VerifiedPeer, verify_certificate};

/// Object identifiers of Kokon's certificate extensions.
///
/// They live under a private-enterprise arc that Kokon has not registered yet
/// (1.3.6.1.4.1.59999); see docs/ATTESTATION.md.
pub mod oids {
    /// JSON claims.
    pub const CLAIMS: &[u64] = &[1, 3, 6, 1, 4, 1, 59999, 1, 1];
    /// Evidence: kind byte followed by the quote.
    pub const EVIDENCE: &[u64] = &[1, 3, 6, 1, 4, 1, 59999, 1, 2];
    /// Dotted forms, as x509-parser prints them.
    pub const CLAIMS_DOTTED: &str = "1.3.6.1.4.1.59999.1.1";
    pub const EVIDENCE_DOTTED: &str = "1.3.6.1.4.1.59999.1.2";
}

/// Largest certificate the verifier parses, in bytes.
pub const MAX_CERT_DER: usize = 32 * 1024;

/// Reads at most `max + 1` bytes of `path`, so a caller can tell an
/// oversized file from one of exactly `max` bytes without reading it all.
pub fn read_at_most(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// SHA-256 helper.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
