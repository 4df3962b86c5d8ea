//! Evidence kinds and the measurements they prove.
//!
//! * `tdx` (kind 2): an Intel TDX quote (v4 or v5), verified with DCAP
//!   against Intel's root and cached collateral ([`crate::tdx`]).
//! * `simulated` (kind 1): a software quote with the TDX report's fields
//!   (TD configuration, MRTD, RTMR0–3, report data) and no hardware signature.
//!   Anyone can make one, so it proves only the binding to the certificate; a
//!   verifier accepts it only under a policy that explicitly allows it (test
//!   networks).

use crate::td::TdConfig;
use crate::{AttestError, sha256};

/// Largest evidence extension accepted (a TDX quote is ~5 KiB, at most ~8 KiB).
pub const MAX_EVIDENCE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvidenceKind {
    Simulated,
    Tdx,
}

impl EvidenceKind {
    fn byte(self) -> u8 {
        match self {
            EvidenceKind::Simulated => 1,
            EvidenceKind::Tdx => 2,
        }
    }
}

impl std::fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvidenceKind::Simulated => "simulated",
            EvidenceKind::Tdx => "tdx",
        })
    }
}

/// The evidence extension: a kind and its quote bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub kind: EvidenceKind,
    pub quote: Vec<u8>,
}

impl Evidence {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.quote.len());
        out.push(self.kind.byte());
        out.extend_from_slice(&self.quote);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() > MAX_EVIDENCE {
            return Err(AttestError::EvidenceTooLarge(bytes.len()));
        }
        let (&kind, quote) = bytes
            .split_first()
            .ok_or_else(|| AttestError::EvidenceMalformed("empty".into()))?;
        let kind = match kind {
            1 => EvidenceKind::Simulated,
            2 => EvidenceKind::Tdx,
            other => return Err(AttestError::UnknownEvidenceKind(other)),
        };
        Ok(Self {
            kind,
            quote: quote.to_vec(),
        })
    }
}

/// Whether TD attributes mark a debug TD: the TUD debug bit (0) or any
/// profiling bit (4–6) of byte 0.
pub fn td_is_debug(td_attributes: &[u8; 8]) -> bool {
    td_attributes[0] & 0x71 != 0
}

/// TD measurements that identify code (not report data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurements {
    pub mrtd: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
}

impl Measurements {
    /// The image hash: SHA-256 over MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3.
    pub fn image_hash(&self) -> [u8; 32] {
        let mut all = Vec::with_capacity(48 * 5);
        all.extend_from_slice(&self.mrtd);
        self.rtmr.iter().for_each(|r| all.extend_from_slice(r));
        sha256(&all)
    }
}

/// A software quote with the fields of a TDX TD report.
///
/// Layout (538 bytes): `"KOKONSIM"` ‖ version u16 BE (3) ‖ TD attributes (8,
/// as in a TD report: bit 0 of byte 0 is debug) ‖ XFAM (8) ‖ TEE_TCB_SVN (16)
/// ‖ MRSEAM, MRCONFIGID, MROWNER, MROWNERCONFIG (4 × 48) ‖ MRTD (48) ‖
/// RTMR0..3 (4 × 48) ‖ report data (64).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedQuote {
    pub td: TdConfig,
    pub measurements: Measurements,
    pub report_data: [u8; 64],
}

const SIM_MAGIC: &[u8; 8] = b"KOKONSIM";
const SIM_VERSION: u16 = 3;
const SIM_HEAD: usize = 8 + 2;
const SIM_TD: usize = 8 + 8 + 16 + 48 * 4;
const SIM_LEN: usize = SIM_HEAD + SIM_TD + 48 * 5 + 64;

/// Reads fixed-size fields one after another (lengths are checked first).
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N.min(self.0.len()));
        self.0 = rest;
        head.try_into().unwrap_or([0; N])
    }
}

impl SimulatedQuote {
    /// Measurements of a simulated image. `label` names the image (for example
    /// `kokon-worker/0.1.0`): different labels give different image hashes, so
    /// test networks can exercise the registry's image allow-list.
    pub fn measurements_for(label: &str) -> Measurements {
        let h = |tag: &str| -> [u8; 48] {
            let a = sha256(format!("kokon-simulated/{tag}/{label}").as_bytes());
            let b = sha256(&a);
            let mut out = [0u8; 48];
            out[..32].copy_from_slice(&a);
            out[32..].copy_from_slice(&b[..16]);
            out
        };
        Measurements {
            mrtd: h("mrtd"),
            rtmr: [h("rtmr0"), h("rtmr1"), h("rtmr2"), h("rtmr3")],
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let td = &self.td;
        let mut out = Vec::with_capacity(SIM_LEN);
        out.extend_from_slice(SIM_MAGIC);
        out.extend_from_slice(&SIM_VERSION.to_be_bytes());
        for field in [&td.td_attributes[..], &td.xfam, &td.tee_tcb_svn] {
            out.extend_from_slice(field);
        }
        for field in [
            &td.mr_seam,
            &td.mr_config_id,
            &td.mr_owner,
            &td.mr_owner_config,
        ] {
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.measurements.mrtd);
        self.measurements
            .rtmr
            .iter()
            .for_each(|r| out.extend_from_slice(r));
        out.extend_from_slice(&self.report_data);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        let bad = |why: &str| AttestError::EvidenceMalformed(format!("simulated quote: {why}"));
        if bytes.len() != SIM_LEN {
            return Err(bad(&format!("{} bytes, expected {SIM_LEN}", bytes.len())));
        }
        if &bytes[..8] != SIM_MAGIC {
            return Err(bad("bad magic"));
        }
        if bytes[8..10] != SIM_VERSION.to_be_bytes() {
            return Err(bad("unsupported version"));
        }
        let mut f = Fields(&bytes[SIM_HEAD..]);
        let td = TdConfig {
            td_attributes: f.take(),
            xfam: f.take(),
            tee_tcb_svn: f.take(),
            mr_seam: f.take(),
            mr_config_id: f.take(),
            mr_owner: f.take(),
            mr_owner_config: f.take(),
        };
        let measurements = Measurements {
            mrtd: f.take(),
            rtmr: [f.take(), f.take(), f.take(), f.take()],
        };
        Ok(Self {
            td,
            measurements,
            report_data: f.take(),
        })
    }
}

/// The report data binding a certificate key and its claims.
pub fn binding(spki_der: &[u8], claims_bytes: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&sha256(spki_der));
    out[32..].copy_from_slice(&sha256(claims_bytes));
    out
}

/// Where a node's quotes come from: the TEE (`tdx`) or software
/// (`simulated`). Implementations may block (the kernel generates a quote in
/// tens of milliseconds); call them off the async runtime.
pub trait EvidenceSource: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> EvidenceKind;
    /// A quote whose report data is `report_data`.
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, String>;
}

/// Simulated evidence for a named image (see [`SimulatedQuote::measurements_for`]).
#[derive(Clone, Debug)]
pub struct SimulatedSource {
    pub measurements: Measurements,
    pub td: TdConfig,
}

impl SimulatedSource {
    pub fn new(label: &str) -> Self {
        Self {
            measurements: SimulatedQuote::measurements_for(label),
            td: TdConfig::simulated(),
        }
    }
}

impl EvidenceSource for SimulatedSource {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Simulated
    }

    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, String> {
        let q = SimulatedQuote {
            td: self.td.clone(),
            measurements: self.measurements.clone(),
            report_data: *report_data,
        };
        Ok(q.to_bytes())
    }
}
