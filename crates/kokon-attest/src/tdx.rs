//! Intel TDX quotes: parsing, and DCAP verification against Intel's root of
//! trust with collateral (TCB info, QE identity, CRLs) held in memory.
//!
//! Verification is pure: quote bytes, a [`TdxTrust`] and `now` in, a
//! [`TdReport`] or a specific [`AttestError`] out. Loading collateral from a
//! cache directory and fetching it from a PCCS are the shell's business
//! ([`crate::collateral`]).
//!
//! The verifier is `dcap-qvl` (pure Rust). Its errors are strings; they are
//! sorted here into one variant per reason so that callers, metrics and the
//! negative corpus can tell them apart. The TD attributes (debug) and the TCB
//! status are judged by Kokon's policy, not by the verifier, so the registry
//! decides them.

use std::collections::BTreeMap;

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::{Quote, Report, TDReport10};

use crate::td::TdConfig;
use crate::{AttestError, Measurements};

/// Largest TDX quote accepted (quotes are ~5 KiB; v5 with extensions ~8 KiB).
pub const MAX_QUOTE: usize = 16 * 1024;
/// Largest collateral document accepted (the samples are 16–24 KiB).
pub const MAX_COLLATERAL: usize = 256 * 1024;

/// The TEE type of TDX in a quote header.
const TEE_TYPE_TDX: u32 = 0x81;

/// What a verified TDX quote proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdReport {
    /// The quote's fields, now vouched for by its signature chain.
    pub body: QuoteBody,
    /// Intel's TCB status of the platform and TDX module ("UpToDate", …).
    pub tcb_status: String,
    pub advisory_ids: Vec<String>,
    /// Hex FMSPC of the platform (which collateral applied).
    pub fmspc: String,
}

/// A parsed but unverified quote's contents, for inspection (`kokon attest
/// measure`). Nothing here is trustworthy until [`verify_quote`] says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteBody {
    /// Quote format version (4 or 5).
    pub version: u16,
    pub measurements: Measurements,
    pub report_data: [u8; 64],
    pub td: TdConfig,
}

/// Parses a TDX quote without verifying it.
pub fn parse_quote(bytes: &[u8]) -> Result<QuoteBody, AttestError> {
    let quote = decode(bytes)?;
    body(quote.header.version, &quote.report)
}

fn body(version: u16, report: &Report) -> Result<QuoteBody, AttestError> {
    let td = td10(report)?;
    Ok(QuoteBody {
        version,
        measurements: measurements(td),
        report_data: td.report_data,
        td: TdConfig {
            tee_tcb_svn: td.tee_tcb_svn,
            mr_seam: td.mr_seam,
            td_attributes: td.td_attributes,
            xfam: td.xfam,
            mr_config_id: td.mr_config_id,
            mr_owner: td.mr_owner,
            mr_owner_config: td.mr_owner_config,
        },
    })
}

fn decode(bytes: &[u8]) -> Result<Quote, AttestError> {
    if bytes.len() > MAX_QUOTE {
        return Err(AttestError::EvidenceTooLarge(bytes.len()));
    }
    let quote = Quote::parse(bytes).map_err(|e| AttestError::QuoteMalformed(format!("{e:#}")))?;
    if quote.header.tee_type != TEE_TYPE_TDX {
        return Err(AttestError::QuoteNotTdx(quote.header.tee_type));
    }
    Ok(quote)
}

fn td10(report: &Report) -> Result<&TDReport10, AttestError> {
    match report {
        Report::TD10(r) => Ok(r),
        Report::TD15(r) => Ok(&r.base),
        Report::TD15Ex(r) => Ok(&r.base.base),
        Report::SgxEnclave(_) => Err(AttestError::QuoteNotTdx(0)),
    }
}

fn measurements(td: &TDReport10) -> Measurements {
    Measurements {
        mrtd: td.mr_td,
        rtmr: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3],
    }
}

/// Collateral for the platforms this node has seen, keyed by hex FMSPC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collateral {
    by_fmspc: BTreeMap<String, QuoteCollateralV3>,
}

impl Collateral {
    /// Parses one collateral document (dcap-qvl's / PCCS JSON form) and
    /// returns it with the FMSPC its TCB info is for.
    pub fn parse(json: &[u8]) -> Result<(String, QuoteCollateralV3), AttestError> {
        if json.len() > MAX_COLLATERAL {
            return Err(AttestError::CollateralInvalid(format!(
                "{} bytes exceed the {MAX_COLLATERAL}-byte limit",
                json.len()
            )));
        }
        let coll: QuoteCollateralV3 = serde_json::from_slice(json)
            .map_err(|e| AttestError::CollateralInvalid(e.to_string()))?;
        #[derive(serde::Deserialize)]
        struct Fmspc {
            fmspc: String,
        }
        let tcb: Fmspc = serde_json::from_str(&coll.tcb_info)
            .map_err(|e| AttestError::CollateralInvalid(format!("tcb_info: {e}")))?;
        Ok((tcb.fmspc.to_ascii_lowercase(), coll))
    }

    pub fn insert(&mut self, fmspc: String, coll: QuoteCollateralV3) {
        self.by_fmspc.insert(fmspc, coll);
    }

    pub fn get(&self, fmspc: &str) -> Option<&QuoteCollateralV3> {
        self.by_fmspc.get(fmspc)
    }

    pub fn fmspcs(&self) -> impl Iterator<Item = &str> {
        self.by_fmspc.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_fmspc.is_empty()
    }

    /// The earliest `nextUpdate` (Unix seconds) of the TCB info, QE
    /// identity and CRLs of every platform kept, with its FMSPC: after it,
    /// quotes of that platform are refused until fresh collateral is
    /// fetched. `None` when nothing is kept or no date can be read.
    pub fn next_update(&self) -> Option<(u64, &str)> {
        self.by_fmspc
            .iter()
            .flat_map(|(fmspc, c)| {
                let docs = [&c.tcb_info, &c.qe_identity].map(|d| next_update_of(d));
                let crls = [&c.root_ca_crl, &c.pck_crl].map(|d| crl_next_update(d));
                docs.into_iter()
                    .chain(crls)
                    .flatten()
                    .map(move |at| (at, fmspc.as_str()))
            })
            .min()
    }

    /// Loads every `*.json` collateral document in `dir` (missing: empty).
    pub fn load_dir(dir: &std::path::Path) -> Result<Self, AttestError> {
        let mut out = Self::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(out);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = crate::read_at_most(&path, MAX_COLLATERAL as u64)
                .map_err(|e| AttestError::CollateralInvalid(format!("{}: {e}", path.display())))?;
            let (fmspc, coll) = Self::parse(&bytes)
                .map_err(|e| AttestError::CollateralInvalid(format!("{}: {e}", path.display())))?;
            out.insert(fmspc, coll);
        }
        Ok(out)
    }

    /// Writes `coll` to `dir/tdx-<fmspc>.json` (atomically: temp file, rename).
    pub fn save(
        dir: &std::path::Path,
        fmspc: &str,
        coll: &QuoteCollateralV3,
    ) -> std::io::Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("tdx-{fmspc}.json"));
        let tmp = dir.join(format!(".tdx-{fmspc}.json.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(coll)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// The platform a quote comes from: hex FMSPC and PCK CA ("platform" or
/// "processor"), read from the PCK certificate it carries (unverified).
pub fn quote_platform(bytes: &[u8]) -> Result<(String, &'static str), AttestError> {
    let quote = decode(bytes)?;
    let bad = |e: String| AttestError::PckCertInvalid(e);
    let fmspc = dcap_qvl::intel::quote_fmspc(&quote).map_err(|e| bad(format!("{e:#}")))?;
    let ca = match dcap_qvl::intel::quote_ca(&quote).map_err(|e| bad(format!("{e:#}")))? {
        dcap_qvl::config::PckCa::Processor => "processor",
        dcap_qvl::config::PckCa::Platform => "platform",
    };
    Ok((hex::encode(fmspc), ca))
}

/// What TDX verification trusts: Intel's SGX Root CA (as bundled by
/// dcap-qvl; its fingerprint is in docs/ATTESTATION.md) and the collateral
/// to judge platforms by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TdxTrust {
    pub collateral: Collateral,
}

impl TdxTrust {
    pub fn intel(collateral: Collateral) -> Self {
        Self { collateral }
    }
}

/// Verifies a TDX quote's signature chain to the trusted root, its QE and
/// its TCB level against collateral valid at `now`.
pub fn verify_quote(bytes: &[u8], trust: &TdxTrust, now: u64) -> Result<TdReport, AttestError> {
    let quote = decode(bytes)?;
    let fmspc = dcap_qvl::intel::quote_fmspc(&quote)
        .map(hex::encode)
        .map_err(|e| AttestError::PckCertInvalid(format!("{e:#}")))?;
    let coll = trust
        .collateral
        .get(&fmspc)
        .ok_or_else(|| AttestError::CollateralMissing(fmspc.clone()))?;
    let verified = dcap_qvl::verify::QuoteVerifier::new_prod()
        .allow_debug(true)
        .verify(bytes, coll, now)
        .map_err(|e| classify(&format!("{e:#}")))?;
    Ok(TdReport {
        body: body(quote.header.version, &verified.report)?,
        tcb_status: verified.status,
        advisory_ids: verified.advisory_ids,
        fmspc,
    })
}

/// Sorts dcap-qvl's error messages into Kokon's variants.
fn classify(msg: &str) -> AttestError {
    let has = |s: &str| msg.contains(s);
    let owned = || msg.to_string();
    if has("expired") || has("in the future") || has("Expired") || has("NotValidYet") {
        AttestError::CollateralExpired(owned())
    } else if has("No matching TCB level") {
        AttestError::TcbLevelNotFound
    } else if has("Revoked") {
        AttestError::TcbRevoked(owned())
    } else if has("Fmspc mismatch") || has("non-TDX TCB info") {
        AttestError::CollateralMismatch(owned())
    } else if has("enclave report signature") || has("qe_report") || has("QE report hash") {
        AttestError::QuoteSignatureInvalid(owned())
    } else if has("tcb_info") || has("qe_identity") || has("TcbInfo") || has("QeIdentity") {
        AttestError::CollateralInvalid(owned())
    } else if has("PCK") || has("certificate chain") || has("Certificate chain") || has("CRL") {
        AttestError::PckCertInvalid(owned())
    } else if has("attributes") || has("migration") || has("SEPT_VE") || has("SERVTD") {
        AttestError::TdAttributesRefused(owned())
    } else if has("decode") || has("Unsupported") || has("QE vendor") {
        AttestError::QuoteMalformed(owned())
    } else {
        AttestError::QuoteRejected(owned())
    }
}

/// The `nextUpdate` of one signed collateral document (RFC 3339).
fn next_update_of(doc: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Window {
        next_update: String,
    }
    let w: Window = serde_json::from_str(doc).ok()?;
    let at = time::OffsetDateTime::parse(
        &w.next_update,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    u64::try_from(at.unix_timestamp()).ok()
}

/// The `nextUpdate` of a DER CRL.
fn crl_next_update(der: &[u8]) -> Option<u64> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).ok()?;
    u64::try_from(crl.next_update()?.timestamp()).ok()
}
