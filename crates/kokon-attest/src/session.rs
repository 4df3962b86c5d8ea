//! Session evidence: a fresh quote over one TLS session, so that a Kokon
//! certificate is worth nothing outside the TD it names.
//!
//! A certificate's evidence is made when the certificate is issued and binds
//! its key; a TLS handshake proves only that the peer holds that key now. A
//! key that leaks from a TD (a side channel, a host that got at its memory)
//! would then pass as that TD until the certificate expires. Session evidence
//! closes that: right after the handshake each side sends a quote whose
//! report data is the session's TLS exporter value (RFC 8446 §7.5: the same
//! on both ends, unknown to anyone outside the session) for its side. Only a
//! TD with the certificate's measurements and TD configuration, taking part
//! in this very session, can produce it.

use crate::evidence::EvidenceSource;
use crate::verify::{VerifiedPeer, check_td, open_evidence};
use crate::{AttestError, Evidence, Policy};

/// The exporter label of session evidence: a side's report data is
/// `TLS-Exporter(EXPORTER_LABEL, side.exporter_context(), 64)`.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-kokon-session-evidence-v1";

/// Which end of the TLS session a quote speaks for (so that one side's quote
/// cannot be reflected back as the other's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// The exporter context of this side's report data.
    pub fn exporter_context(self) -> &'static [u8] {
        match self {
            Side::Client => b"client",
            Side::Server => b"server",
        }
    }
}

/// This node's session evidence for `binding` (an [`Evidence`] encoding).
/// May block, as [`EvidenceSource::quote`] does.
pub fn session_evidence(
    source: &dyn EvidenceSource,
    binding: &[u8; 64],
) -> Result<Vec<u8>, String> {
    let quote = source.quote(binding)?;
    Ok(Evidence {
        kind: source.kind(),
        quote,
    }
    .to_bytes())
}

/// Checks the session evidence `bytes` a verified `peer` sent: evidence the
/// policy accepts at `now`, of the peer certificate's kind, from a TD with
/// the same measurements and configuration, over `binding`.
pub fn verify_session_evidence(
    peer: &VerifiedPeer,
    bytes: &[u8],
    binding: &[u8; 64],
    policy: &Policy,
    now: u64,
) -> Result<(), AttestError> {
    let ev = Evidence::parse(bytes)?;
    if ev.kind != peer.evidence_kind() {
        return Err(AttestError::SessionEvidenceOtherTd(format!(
            "{} evidence for a certificate with {} evidence",
            ev.kind,
            peer.evidence_kind()
        )));
    }
    let (measurements, report_data, td) = open_evidence(&ev, peer.claims(), policy, now)?;
    check_td(&td, policy)?;
    if &measurements != peer.measurements() {
        return Err(AttestError::SessionEvidenceOtherTd(
            "its measurements differ from the certificate's".into(),
        ));
    }
    if td.config != peer.td().config {
        return Err(AttestError::SessionEvidenceOtherTd(
            "its TD configuration differs from the certificate's".into(),
        ));
    }
    if &report_data != binding {
        return Err(AttestError::SessionBindingMismatch);
    }
    Ok(())
}
