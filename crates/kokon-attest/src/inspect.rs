//! Reading a certificate for people (`kokon attest show`): everything it
//! claims and proves, parsed without trusting it, next to the verdict of the
//! real verifier.

use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::td::TdConfigView;
use crate::{AttestError, Claims, Evidence, EvidenceKind, Policy, Role, SimulatedQuote, tdx};

/// What a certificate says about its holder, and what the policy says of it.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub role: Option<Role>,
    pub evidence: Option<String>,
    /// Hex MRTD and RTMR0..3.
    pub mrtd: Option<String>,
    pub rtmr: Vec<String>,
    pub image_hash: Option<String>,
    pub models: Vec<String>,
    /// What runs a worker's models, and where an upstream engine forwards.
    pub engine: Option<kokon_proto::EngineDecl>,
    pub debug_td: Option<bool>,
    /// The TD's configuration as the evidence states it (unverified).
    pub td: Option<TdConfigView>,
    /// Intel's TCB status, or why it could not be had.
    pub tcb_status: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub issued_at: Option<u64>,
    pub config_sha256: Option<String>,
    /// `None` when the policy accepts the certificate.
    pub refused: Option<String>,
    /// The refusal's stable name (`AttestError::reason`).
    pub reason: Option<&'static str>,
}

/// Inspects `der` and judges it with `policy` for the `expected` roles at `now`.
pub fn inspect(der: &[u8], policy: &Policy, expected: &[Role], now: u64) -> Inspection {
    let verdict = crate::verify_certificate(der, policy, expected, now);
    let mut out = Inspection {
        role: None,
        evidence: None,
        mrtd: None,
        rtmr: Vec::new(),
        image_hash: None,
        models: Vec::new(),
        engine: None,
        debug_td: None,
        td: None,
        tcb_status: None,
        not_before: None,
        not_after: None,
        issued_at: None,
        config_sha256: None,
        refused: verdict.as_ref().err().map(|e| e.to_string()),
        reason: verdict.as_ref().err().map(AttestError::reason),
    };
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return out;
    };
    out.not_before = Some(cert.validity().not_before.timestamp());
    out.not_after = Some(cert.validity().not_after.timestamp());
    let Ok((claims, evidence)) = crate::verify::kokon_extensions(&cert) else {
        return out;
    };
    if let Ok(c) = Claims::parse(claims) {
        fill_claims(&mut out, c);
    }
    if let Ok(ev) = Evidence::parse(evidence) {
        fill_evidence(&mut out, &ev);
        out.tcb_status = match &verdict {
            // The verifier already checked the quote: reuse its result.
            Ok(peer) => peer.td().tcb_status.clone(),
            Err(_) => tcb_of_refused(&ev, policy, now),
        };
    }
    out
}

/// The TCB status of a refused certificate's quote, or why there is none.
fn tcb_of_refused(ev: &Evidence, policy: &Policy, now: u64) -> Option<String> {
    match (ev.kind, &policy.tdx) {
        (EvidenceKind::Simulated, _) => None,
        (EvidenceKind::Tdx, None) => Some("unknown (no collateral loaded)".into()),
        (EvidenceKind::Tdx, Some(trust)) => Some(match tdx::verify_quote(&ev.quote, trust, now) {
            Ok(r) => r.tcb_status,
            Err(e) => format!("not verified: {e}"),
        }),
    }
}

fn fill_claims(out: &mut Inspection, c: Claims) {
    out.role = Some(c.role);
    out.issued_at = Some(c.issued_at);
    out.config_sha256 = Some(c.config_sha256);
    out.models = c.models;
    out.engine = c.engine;
}

fn fill_evidence(out: &mut Inspection, ev: &Evidence) {
    out.evidence = Some(ev.kind.to_string());
    let (m, td) = match ev.kind {
        EvidenceKind::Simulated => match SimulatedQuote::parse(&ev.quote) {
            Ok(q) => (q.measurements, q.td),
            Err(_) => return,
        },
        EvidenceKind::Tdx => match tdx::parse_quote(&ev.quote) {
            Ok(q) => (q.measurements, q.td),
            Err(_) => return,
        },
    };
    out.mrtd = Some(hex::encode(m.mrtd));
    out.rtmr = m.rtmr.iter().map(hex::encode).collect();
    out.image_hash = Some(hex::encode(m.image_hash()));
    out.debug_td = Some(td.is_debug());
    out.td = Some(TdConfigView::from(&td));
}

/// What the registry's policy says of a bare, verified TDX quote (`kokon
/// attest measure`): no certificate, so no binding or claims, but everything
/// about the TD and its platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteJudgement {
    /// The roles whose registry image list holds the quote's image.
    pub roles: Vec<Role>,
}

/// Judges the TD of a quote [`tdx::verify_quote`] accepted by `policy`'s TD
/// rules and TCB statuses. An image listed for no role is not an error here
/// (a TD is measured before it is listed); the caller decides.
pub fn judge_report(
    report: &tdx::TdReport,
    policy: &Policy,
) -> Result<QuoteJudgement, AttestError> {
    let facts = crate::TdFacts {
        config: report.body.td.clone(),
        tcb_status: Some(report.tcb_status.clone()),
        advisory_ids: report.advisory_ids.clone(),
    };
    crate::verify::check_td(&facts, policy)?;
    let image = report.body.measurements.image_hash();
    let listed = |r: &Role| {
        policy
            .role(*r)
            .and_then(|p| p.images.as_ref())
            .is_some_and(|l| l.contains(&image))
    };
    let roles = [Role::Worker, Role::Proxy]
        .into_iter()
        .filter(listed)
        .collect();
    Ok(QuoteJudgement { roles })
}
