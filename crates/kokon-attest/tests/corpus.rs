//! The negative corpus: well over a hundred certificates and quotes that the
//! verifier must refuse, each with the one error variant its flaw deserves.
//!
//! Every case is generated here from a valid baseline by one change, so a
//! case fails for the reason it names and no other. Cases with real TDX
//! quotes use dcap-qvl's sample quotes and collateral at a time inside the
//! collateral's window. What the corpus cannot contain, and why:
//!
//! * a *correctly signed* TDX quote that binds a certificate of ours, or one
//!   of a debug TD: only a TD can make one, and none is here. The debug and
//!   TCB rules are therefore exercised with simulated evidence (debug bits)
//!   and with the real quotes under registries that refuse their status.
//! * certificate chains: [`verify_certificate`] takes one certificate; the
//!   TLS layer refuses chains before calling it (kokon-tls tests).

mod common;

use kokon_attest::cert::{CertParts, build_certificate};
use kokon_attest::evidence::binding;
use kokon_attest::tdx::{Collateral, TdxTrust};
use kokon_attest::*;
use rcgen::{
    CertificateParams, CustomExtension, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    PublicKeyData,
};

const NOW: u64 = 1_800_000_000;
const MODEL: [u8; 32] = [0x4d; 32];

struct Case {
    name: String,
    der: Vec<u8>,
    policy: Policy,
    expect: Vec<Role>,
    now: u64,
    reason: &'static str,
}

/// A production policy: the "worker" and "proxy" images, one model.
fn production() -> Policy {
    let mut p = common::production_policy();
    let mut models = kokon_attest::ModelRules::default();
    models.allow("m", vec![MODEL]);
    p.models = Some(models);
    p
}

/// The same on a test network: simulated evidence accepted.
fn policy() -> Policy {
    let mut p = production();
    p.dangerous().allow_simulated_evidence();
    p
}

/// A valid certificate's ingredients, each of which a case may spoil.
#[derive(Clone)]
struct Forge {
    key_seed: u8,
    claims: Claims,
    label: String,
    td: TdConfig,
    now: u64,
}

fn key(seed: u8) -> KeyPair {
    // Deterministic Ed25519 keys: PKCS#8 v1 prefix ‖ 32-byte seed.
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&[seed; 32]);
    KeyPair::try_from(der.as_slice()).unwrap()
}

impl Forge {
    fn new(role: Role, label: &str) -> Self {
        Self::at(role, label, NOW, 1)
    }

    fn at(role: Role, label: &str, now: u64, key_seed: u8) -> Self {
        let claims = Claims {
            role,
            protocol_version: 1,
            tls_key_sha256: hex::encode(sha256(&key(key_seed).subject_public_key_info())),
            issued_at: now,
            config_sha256: hex::encode([1u8; 32]),
            models: match role {
                Role::Worker => vec![hex::encode(MODEL)],
                _ => vec![],
            },
            hpke_key: None,
            engine: (role == Role::Worker)
                .then(|| kokon_proto::EngineDecl::local(kokon_proto::EngineKind::Llama)),
        };
        Self {
            key_seed,
            claims,
            label: label.into(),
            td: TdConfig::simulated(),
            now,
        }
    }

    fn spki(&self) -> Vec<u8> {
        key(self.key_seed).subject_public_key_info()
    }

    fn sim_quote(&self) -> SimulatedQuote {
        SimulatedQuote {
            td: self.td.clone(),
            measurements: SimulatedQuote::measurements_for(&self.label),
            report_data: binding(&self.spki(), &self.claims.to_bytes()),
        }
    }

    fn parts(&self) -> CertParts {
        let evidence = Evidence {
            kind: EvidenceKind::Simulated,
            quote: self.sim_quote().to_bytes(),
        };
        self.parts_with(evidence.to_bytes())
    }

    fn parts_with(&self, evidence: Vec<u8>) -> CertParts {
        CertParts {
            claims: self.claims.to_bytes(),
            evidence,
            not_before: self.now as i64 - 60,
            not_after: self.now as i64 + 3600,
            claims_critical: true,
            evidence_critical: true,
            extra: vec![],
        }
    }

    fn build(&self, parts: &CertParts) -> Vec<u8> {
        build_certificate(&key(self.key_seed), parts, self.claims.role).unwrap()
    }

    fn der(&self) -> Vec<u8> {
        self.build(&self.parts())
    }
}

struct Corpus(Vec<Case>);

impl Corpus {
    fn add(&mut self, name: impl Into<String>, der: Vec<u8>, reason: &'static str) {
        self.add_with(name, der, policy(), Role::Worker, NOW, reason);
    }

    fn add_with(
        &mut self,
        name: impl Into<String>,
        der: Vec<u8>,
        policy: Policy,
        expect: Role,
        now: u64,
        reason: &'static str,
    ) {
        self.0.push(Case {
            name: name.into(),
            der,
            policy,
            expect: vec![expect],
            now,
            reason,
        });
    }
}

fn worker() -> Forge {
    Forge::new(Role::Worker, "worker")
}

fn extensions(c: &mut Corpus) {
    let f = worker();
    let mut p = f.parts();
    p.claims_critical = false;
    c.add(
        "claims extension not critical",
        f.build(&p),
        "extension_not_critical",
    );
    let mut p = f.parts();
    p.evidence_critical = false;
    c.add(
        "evidence extension not critical",
        f.build(&p),
        "extension_not_critical",
    );
    for (what, oid) in [("claims", oids::CLAIMS), ("evidence", oids::EVIDENCE)] {
        for critical in [true, false] {
            let mut p = f.parts();
            p.extra.push((oid.to_vec(), vec![0x30, 0], critical));
            c.add(
                format!("{what} extension duplicated (critical={critical})"),
                f.build(&p),
                "duplicate_extension",
            );
        }
    }
    for oid in [
        vec![1, 3, 6, 1, 4, 1, 59999, 1, 3],
        vec![1, 3, 6, 1, 4, 1, 59999, 9, 9],
        vec![1, 2, 3, 4],
        vec![2, 5, 29, 30],
        vec![2, 5, 29, 32],
        vec![1, 3, 6, 1, 5, 5, 7, 1, 1],
    ] {
        let mut p = f.parts();
        let name = format!("unknown critical extension {oid:?}");
        p.extra.push((oid, vec![0x05, 0x00], true));
        c.add(name, f.build(&p), "unknown_critical_extension");
    }
    for (omit, name) in [(oids::CLAIMS, "claims"), (oids::EVIDENCE, "evidence")] {
        c.add(
            format!("{name} extension missing"),
            without_extension(&f, omit),
            "missing_extension",
        );
    }
}

/// The forge's certificate with one of the Kokon extensions left out.
fn without_extension(f: &Forge, omit: &[u64]) -> Vec<u8> {
    let p = f.parts();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.not_before = time::OffsetDateTime::from_unix_timestamp(p.not_before).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(p.not_after).unwrap();
    for (oid, content) in [(oids::CLAIMS, p.claims), (oids::EVIDENCE, p.evidence)] {
        if oid != omit {
            let mut ext = CustomExtension::from_oid_content(oid, content);
            ext.set_criticality(true);
            params.custom_extensions.push(ext);
        }
    }
    params.self_signed(&key(f.key_seed)).unwrap().der().to_vec()
}

fn evidence_bytes(c: &mut Corpus) {
    let f = worker();
    let full = f.parts().evidence;
    for len in [0usize, 1, 2, 9, 10, 18, 100, 200, 321] {
        let mut p = f.parts();
        p.evidence = full[..len].to_vec();
        c.add(
            format!("evidence truncated to {len} bytes"),
            f.build(&p),
            "evidence_malformed",
        );
    }
    let mut p = f.parts();
    p.evidence.push(0);
    c.add(
        "evidence with a trailing byte",
        f.build(&p),
        "evidence_malformed",
    );
    for len in [16 * 1024 + 1, 20_000] {
        let mut p = f.parts();
        p.evidence = vec![1; len];
        c.add(
            format!("evidence of {len} bytes"),
            f.build(&p),
            "evidence_too_large",
        );
    }
    for kind in [0u8, 3, 7, 0x81, 255] {
        let mut p = f.parts();
        p.evidence[0] = kind;
        c.add(
            format!("evidence kind {kind}"),
            f.build(&p),
            "unknown_evidence_kind",
        );
    }
    let mut p = f.parts();
    p.evidence[1] ^= 0xff;
    c.add(
        "simulated quote with a bad magic",
        f.build(&p),
        "evidence_malformed",
    );
    let mut p = f.parts();
    p.evidence[10] = 1;
    c.add(
        "simulated quote of version 1",
        f.build(&p),
        "evidence_malformed",
    );
}

fn validity(c: &mut Corpus) {
    let der = worker().der();
    for (after, what) in [
        (3601, "an hour"),
        (86_400, "a day"),
        (365 * 86_400, "a year"),
    ] {
        c.add_with(
            format!("expired {what} ago"),
            der.clone(),
            policy(),
            Role::Worker,
            NOW + after,
            "cert_expired",
        );
    }
    for before in [400u64, 3600, 86_400] {
        c.add_with(
            format!("valid only {before} s from now"),
            der.clone(),
            policy(),
            Role::Worker,
            NOW - before,
            "cert_not_yet_valid",
        );
    }
    let f = worker();
    for days in [3i64, 30, 3650] {
        let mut p = f.parts();
        p.not_after = NOW as i64 + days * 86_400;
        c.add(
            format!("valid for {days} days"),
            f.build(&p),
            "cert_lifetime_too_long",
        );
    }
}

fn claims(c: &mut Corpus) {
    let stale = |c: &mut Corpus, name: &str, issued_at: u64| {
        let mut f = worker();
        f.claims.issued_at = issued_at;
        c.add(name, f.der(), "claims_stale");
    };
    stale(c, "claims issued three days ago", NOW - 3 * 86_400);
    stale(c, "claims issued a year ago", NOW - 365 * 86_400);
    stale(c, "claims issued an hour ahead", NOW + 3600);
    stale(c, "claims issued a day ahead", NOW + 86_400);
    for v in [0u16, 2, 999] {
        let mut f = worker();
        f.claims.protocol_version = v;
        c.add(format!("protocol version {v}"), f.der(), "protocol_version");
    }
    let mut f = worker();
    f.claims.tls_key_sha256 = hex::encode([9u8; 32]);
    c.add("claims name another key", f.der(), "key_mismatch");
    let mut f = worker();
    f.claims.tls_key_sha256 = hex::encode(sha256(&key(2).subject_public_key_info()));
    c.add("claims name a real other key", f.der(), "key_mismatch");

    let raw = |c: &mut Corpus, name: &str, json: &[u8], reason| {
        let f = worker();
        let mut p = f.parts();
        p.claims = json.to_vec();
        c.add(name, f.build(&p), reason);
    };
    let good = String::from_utf8(worker().claims.to_bytes()).unwrap();
    raw(c, "claims not JSON", b"{not json", "claims_malformed");
    raw(c, "claims empty", b"", "claims_malformed");
    raw(c, "claims an array", b"[]", "claims_malformed");
    raw(
        c,
        "claims with an unknown field",
        good.replace("{", "{\"admin\":true,").as_bytes(),
        "claims_malformed",
    );
    raw(
        c,
        "claims without a role",
        good.replace("\"role\":\"worker\",", "").as_bytes(),
        "claims_malformed",
    );
    raw(
        c,
        "claims with role admin",
        good.replace("\"worker\"", "\"admin\"").as_bytes(),
        "claims_malformed",
    );
    let short_key = good.replace(&worker().claims.tls_key_sha256, "abcd");
    raw(
        c,
        "claims with a short key hash",
        short_key.as_bytes(),
        "claims_malformed",
    );
    let bad_cfg = good.replace(&hex::encode([1u8; 32]), &"zz".repeat(32));
    raw(
        c,
        "claims with a non-hex config hash",
        bad_cfg.as_bytes(),
        "claims_malformed",
    );
    raw(c, "claims of 5000 bytes", &[b' '; 5000], "claims_too_large");
    let mut f = worker();
    f.claims.models = vec!["not-a-hash".into()];
    c.add(
        "claims with a malformed model hash",
        f.der(),
        "model_hash_malformed",
    );
    let mut f = worker();
    f.claims.models = (0..33).map(|i| hex::encode([i as u8; 32])).collect();
    c.add("claims naming 33 models", f.der(), "claims_malformed");
}

fn binding_cases(c: &mut Corpus) {
    let f = worker();
    let mut p = f.parts();
    let mut other = f.claims.clone();
    other.config_sha256 = hex::encode([2u8; 32]);
    p.claims = other.to_bytes();
    c.add(
        "evidence binds other claims",
        f.build(&p),
        "binding_mismatch",
    );
    let other = Forge::at(Role::Worker, "worker", NOW, 3);
    let p = f.parts_with(other.parts().evidence);
    c.add(
        "evidence moved from another certificate",
        f.build(&p),
        "binding_mismatch",
    );
    for (name, rd) in [
        ("report data zero", [0u8; 64]),
        ("report data halves swapped", {
            let b = binding(&f.spki(), &f.claims.to_bytes());
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(&b[32..]);
            s[32..].copy_from_slice(&b[..32]);
            s
        }),
        ("report data binds only the key", {
            let mut b = binding(&f.spki(), &f.claims.to_bytes());
            b[32..].fill(0);
            b
        }),
    ] {
        let mut q = f.sim_quote();
        q.report_data = rd;
        let ev = Evidence {
            kind: EvidenceKind::Simulated,
            quote: q.to_bytes(),
        };
        c.add(
            name,
            f.build(&f.parts_with(ev.to_bytes())),
            "binding_mismatch",
        );
    }
}

fn roles_images_models(c: &mut Corpus) {
    let proxy = Forge::new(Role::Proxy, "proxy").der();
    let client = Forge::new(Role::Client, "client").der();
    c.add_with(
        "worker where a proxy is expected",
        worker().der(),
        policy(),
        Role::Proxy,
        NOW,
        "unexpected_role",
    );
    c.add_with(
        "proxy where a worker is expected",
        proxy,
        policy(),
        Role::Worker,
        NOW,
        "unexpected_role",
    );
    c.add_with(
        "client where a worker is expected",
        client,
        policy(),
        Role::Worker,
        NOW,
        "unexpected_role",
    );
    for label in ["rogue", "worker-v0", "proxy", ""] {
        let f = Forge::new(Role::Worker, label);
        c.add(
            format!("worker image {label:?}"),
            f.der(),
            "image_not_allowed",
        );
    }
    for label in ["rogue", "worker"] {
        let f = Forge::new(Role::Proxy, label);
        c.add_with(
            format!("proxy image {label:?}"),
            f.der(),
            policy(),
            Role::Proxy,
            NOW,
            "image_not_allowed",
        );
    }
    // One measurement changed at a time: MRTD, then each RTMR.
    for i in 0..5 {
        let f = worker();
        let mut q = f.sim_quote();
        match i {
            0 => q.measurements.mrtd[0] ^= 1,
            _ => q.measurements.rtmr[i - 1][47] ^= 1,
        }
        let ev = Evidence {
            kind: EvidenceKind::Simulated,
            quote: q.to_bytes(),
        };
        let what = if i == 0 {
            "MRTD".to_string()
        } else {
            format!("RTMR{}", i - 1)
        };
        c.add(
            format!("wrong {what}"),
            f.build(&f.parts_with(ev.to_bytes())),
            "image_not_allowed",
        );
    }
    let mut f = worker();
    f.claims.models = vec![hex::encode([0x11; 32])];
    c.add(
        "worker serving an unlisted model",
        f.der(),
        "model_not_allowed",
    );
    let mut f = worker();
    f.claims.models = vec![];
    c.add("worker naming no model", f.der(), "model_not_allowed");
}

fn td_rules(c: &mut Corpus) {
    for (bits, what) in [
        (0x01u8, "debug"),
        (0x10, "profiling 4"),
        (0x20, "profiling 5"),
        (0x40, "profiling 6"),
        (0x71, "all"),
    ] {
        let mut f = worker();
        f.td.td_attributes[0] = bits;
        c.add(
            format!("{what} TD attribute set"),
            f.der(),
            "debug_td_refused",
        );
    }
    for role in [Role::Worker, Role::Proxy] {
        let label = if role == Role::Worker {
            "worker"
        } else {
            "proxy"
        };
        let f = Forge::new(role, label);
        c.add_with(
            format!("simulated {role} under a production policy"),
            f.der(),
            production(),
            role,
            NOW,
            "simulated_not_allowed",
        );
    }
}

fn raw_der(c: &mut Corpus) {
    let der = worker().der();
    c.add("empty input", vec![], "cert_malformed");
    c.add(
        "random bytes",
        (0..500u32).map(|i| (i * 37 % 251) as u8).collect(),
        "cert_malformed",
    );
    for len in [1usize, 4, 100, der.len() / 2, der.len() - 1] {
        c.add(
            format!("certificate truncated to {len}"),
            der[..len].to_vec(),
            "cert_malformed",
        );
    }
    let mut long = der.clone();
    long.extend_from_slice(&[0, 0]);
    c.add("certificate with trailing bytes", long, "cert_malformed");
    c.add("40 KB of zeros", vec![0; 40_000], "cert_too_large");
    let n = der.len();
    for back in [1usize, 5, 20] {
        let mut bad = der.clone();
        bad[n - back] ^= 0x55;
        c.add(
            format!("signature byte -{back} flipped"),
            bad,
            "bad_self_signature",
        );
    }
    // Signed by another key than the one it carries.
    let f = worker();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "kokon-worker");
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "someone else");
    let signer = rcgen::Issuer::new(ca, key(9));
    for (oid, content) in [
        (oids::CLAIMS, f.parts().claims),
        (oids::EVIDENCE, f.parts().evidence),
    ] {
        let mut ext = CustomExtension::from_oid_content(oid, content);
        ext.set_criticality(true);
        leaf.custom_extensions.push(ext);
    }
    let cert = leaf.signed_by(&key(f.key_seed), &signer).unwrap();
    c.add(
        "issued by another key",
        cert.der().to_vec(),
        "not_self_signed",
    );
    for (alg, name) in [
        (&PKCS_ECDSA_P256_SHA256, "P-256"),
        (&PKCS_ECDSA_P384_SHA384, "P-384"),
    ] {
        let k = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        for (oid, content) in [
            (oids::CLAIMS, f.parts().claims),
            (oids::EVIDENCE, f.parts().evidence),
        ] {
            let mut ext = CustomExtension::from_oid_content(oid, content);
            ext.set_criticality(true);
            params.custom_extensions.push(ext);
        }
        c.add(
            format!("{name} key"),
            params.self_signed(&k).unwrap().der().to_vec(),
            "wrong_key_type",
        );
    }
}

/// Real TDX quotes inside our certificates.
fn tdx(c: &mut Corpus) {
    let s = common::v4();
    let trusting = |s: &common::Sample| {
        let mut p = production();
        p.tdx = Some(s.trust());
        p
    };
    let tdx_cert = |quote: &[u8], now: u64| {
        let f = Forge::at(Role::Worker, "worker", now, 1);
        let ev = Evidence {
            kind: EvidenceKind::Tdx,
            quote: quote.to_vec(),
        };
        f.build(&f.parts_with(ev.to_bytes()))
    };
    let add = |c: &mut Corpus, name: &str, quote: &[u8], policy: Policy, now: u64, reason| {
        c.add_with(
            name,
            tdx_cert(quote, now),
            policy,
            Role::Worker,
            now,
            reason,
        );
    };
    add(
        c,
        "TDX evidence with no collateral loaded",
        &s.quote,
        production(),
        s.now,
        "tdx_not_configured",
    );
    add(
        c,
        "genuine v4 quote moved into our certificate",
        &s.quote,
        trusting(&s),
        s.now,
        "binding_mismatch",
    );
    let v5 = common::v5();
    // The v5 sample's host set an MRCONFIGID: refused by the default TD
    // policy, and past it once the registry pins that value.
    add(
        c,
        "genuine v5 quote with a host-set MRCONFIGID",
        &v5.quote,
        trusting(&v5),
        v5.now,
        "mr_config_id_mismatch",
    );
    let mut pinned = trusting(&v5);
    pinned.td.mr_config_id = tdx::parse_quote(&v5.quote).unwrap().td.mr_config_id;
    add(
        c,
        "genuine v5 quote moved into our certificate",
        &v5.quote,
        pinned,
        v5.now,
        "binding_mismatch",
    );
    // The body (header 48 bytes, TD report from 48) is signed: any change shows.
    for (what, at) in [
        ("TEE TCB SVN", 48),
        ("MRSEAM", 64),
        ("TD attributes (debug bit)", 48 + 120),
        ("MRTD", 48 + 136),
        ("RTMR0", 48 + 328),
        ("RTMR1", 48 + 376),
        ("RTMR2", 48 + 424),
        ("RTMR3", 48 + 472),
        ("report data", 48 + 520),
    ] {
        let mut q = s.quote.clone();
        q[at] ^= 1;
        add(
            c,
            &format!("quote with {what} changed"),
            &q,
            trusting(&s),
            s.now,
            "quote_signature_invalid",
        );
    }
    let mut q = s.quote.clone();
    q[636 + 10] ^= 1; // inside the ECDSA signature over the body
    add(
        c,
        "quote with its signature changed",
        &q,
        trusting(&s),
        s.now,
        "quote_signature_invalid",
    );
    for len in [0usize, 47, 48, 600, 1000, 4000] {
        add(
            c,
            &format!("quote truncated to {len}"),
            &s.quote[..len],
            trusting(&s),
            s.now,
            "quote_malformed",
        );
    }
    let sim = worker().sim_quote().to_bytes();
    add(
        c,
        "simulated bytes labelled TDX",
        &sim,
        trusting(&s),
        s.now,
        "quote_malformed",
    );
    add(
        c,
        "SGX quote labelled TDX",
        &common::sgx().quote,
        trusting(&s),
        s.now,
        "quote_not_tdx",
    );
    add(
        c,
        "quote after its collateral expired",
        &s.quote,
        trusting(&s),
        s.now + 200 * 86_400,
        "collateral_expired",
    );
    add(
        c,
        "quote before its collateral was issued",
        &s.quote,
        trusting(&s),
        s.now - 200 * 86_400,
        "collateral_expired",
    );
    // The v5 sample's platform has the same FMSPC, with collateral of 2026.
    add(
        c,
        "quote judged by another period's collateral",
        &s.quote,
        trusting(&v5),
        s.now,
        "collateral_expired",
    );
    let mut p = production();
    p.tdx = Some(TdxTrust::default());
    add(
        c,
        "quote of a platform with no cached collateral",
        &s.quote,
        p,
        s.now,
        "collateral_missing",
    );
    let old = common::outdated();
    add(
        c,
        "quote of an out-of-date platform",
        &old.quote,
        trusting(&old),
        old.now,
        "tcb_level_not_found",
    );
    for allowed in [
        vec!["SWHardeningNeeded"],
        vec!["OutOfDate", "ConfigurationNeeded"],
        vec![],
    ] {
        let mut p = trusting(&s);
        p.tcb_statuses = allowed.iter().map(|s| s.to_string()).collect();
        add(
            c,
            &format!("UpToDate platform where only {allowed:?} pass"),
            &s.quote,
            p,
            s.now,
            "tcb_status_not_allowed",
        );
    }
    td_pins(c, &s, trusting(&s), &add);
    for field in ["tcb_info_signature", "qe_identity_signature"] {
        let mut json: serde_json::Value = serde_json::from_slice(&s.collateral).unwrap();
        let sig = json[field].as_str().unwrap().to_string();
        let flipped = format!("{}{}", if &sig[..1] == "0" { "1" } else { "0" }, &sig[1..]);
        json[field] = flipped.into();
        let (fmspc, coll) = Collateral::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
        let mut store = Collateral::default();
        store.insert(fmspc, coll);
        let mut p = production();
        p.tdx = Some(TdxTrust::intel(store));
        add(
            c,
            &format!("collateral with a forged {field}"),
            &s.quote,
            p,
            s.now,
            "collateral_invalid",
        );
    }
}

type AddTdx<'a> = dyn Fn(&mut Corpus, &str, &[u8], Policy, u64, &'static str) + 'a;

/// The genuine v4 quote under registries that pin each TD field to another
/// value than its own: each refused with that field's variant, before the
/// binding is looked at. Pinned to its own values, it gets as far as the
/// binding (so the pins are read from the right bytes).
fn td_pins(c: &mut Corpus, s: &common::Sample, base: Policy, add: &AddTdx<'_>) {
    let own = TdPolicy {
        xfam: Some(vec![hex48::<8>("e702060000000000")]),
        td_attributes: Some(vec![hex48::<8>("0000001000000000")]),
        mr_seam: Some(vec![hex48::<48>(V4_MRSEAM)]),
        min_tee_tcb_svn: Some(hex48::<16>("06010300000000000000000000000000")),
        ..TdPolicy::default()
    };
    let with = |f: &dyn Fn(&mut TdPolicy)| {
        let mut p = base.clone();
        p.td = own.clone();
        f(&mut p.td);
        p
    };
    type Pin<'p> = &'p dyn Fn(&mut TdPolicy);
    let cases: [(&str, Pin<'_>, &'static str); 9] = [
        ("its own TD values", &|_| {}, "binding_mismatch"),
        (
            "another XFAM",
            &|p| p.xfam = Some(vec![hex48("0300000000000000")]),
            "xfam_refused",
        ),
        (
            "other TD attributes",
            &|p| p.td_attributes = Some(vec![[0; 8]]),
            "td_attributes_not_allowed",
        ),
        (
            "another TDX module",
            &|p| p.mr_seam = Some(vec![[0x5b; 48]]),
            "mr_seam_not_allowed",
        ),
        (
            "an MRCONFIGID",
            &|p| p.mr_config_id = [1; 48],
            "mr_config_id_mismatch",
        ),
        ("an MROWNER", &|p| p.mr_owner = [1; 48], "mr_owner_mismatch"),
        (
            "an MROWNERCONFIG",
            &|p| p.mr_owner_config = [1; 48],
            "mr_owner_config_mismatch",
        ),
        (
            "a newer TDX module (first SVN byte)",
            &|p| p.min_tee_tcb_svn = Some(hex48("07000000000000000000000000000000")),
            "tee_tcb_svn_too_low",
        ),
        (
            "a newer TDX module (third SVN byte)",
            &|p| p.min_tee_tcb_svn = Some(hex48("01010400000000000000000000000000")),
            "tee_tcb_svn_too_low",
        ),
    ];
    for (what, pin, reason) in cases {
        let name = format!("genuine v4 quote, registry pinning {what}");
        add(c, &name, &s.quote, with(pin), s.now, reason);
    }
}

/// MRSEAM of the v4 sample's TDX module.
const V4_MRSEAM: &str = "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1";

fn hex48<const N: usize>(h: &str) -> [u8; N] {
    hex::decode(h).unwrap().try_into().unwrap()
}

/// Simulated TDs whose configuration breaks the TDX module's XFAM rules or
/// the default TD policy (host IDs all zero).
fn td_config(c: &mut Corpus) {
    for (xfam, what) in [
        (0x1u64, "XFAM without SSE"),
        (0x2e7 | 1 << 3, "XFAM with MPX"),
        (0x2e7 | 1 << 40, "XFAM with an undefined bit"),
        (0x7 | 1 << 5, "XFAM with a third of AVX-512"),
        (0x3 | 0b111 << 5, "XFAM with AVX-512 but no AVX"),
        (0x2e7 | 1 << 11, "XFAM with user-mode CET only"),
        (
            0x2e7 | 1 << 18,
            "XFAM with AMX tile data but no tile config",
        ),
    ] {
        let mut f = worker();
        f.td.xfam = xfam.to_le_bytes();
        c.add(what, f.der(), "xfam_refused");
    }
    type Spoil = fn(&mut TdConfig);
    let spoils: [(&str, Spoil, &'static str); 3] = [
        (
            "MRCONFIGID set by the host",
            |t| t.mr_config_id[0] = 1,
            "mr_config_id_mismatch",
        ),
        (
            "MROWNER set by the host",
            |t| t.mr_owner[47] = 1,
            "mr_owner_mismatch",
        ),
        (
            "MROWNERCONFIG set",
            |t| t.mr_owner_config[9] = 1,
            "mr_owner_config_mismatch",
        ),
    ];
    for (what, spoil, reason) in spoils {
        let mut f = worker();
        spoil(&mut f.td);
        c.add(format!("simulated TD with {what}"), f.der(), reason);
    }
}

fn corpus() -> Vec<Case> {
    let mut c = Corpus(Vec::new());
    extensions(&mut c);
    evidence_bytes(&mut c);
    validity(&mut c);
    claims(&mut c);
    binding_cases(&mut c);
    roles_images_models(&mut c);
    td_rules(&mut c);
    td_config(&mut c);
    raw_der(&mut c);
    tdx(&mut c);
    c.0
}

#[test]
fn baselines_are_accepted() {
    verify_certificate(&worker().der(), &policy(), &[Role::Worker], NOW).unwrap();
    let proxy = Forge::new(Role::Proxy, "proxy").der();
    verify_certificate(&proxy, &policy(), &[Role::Proxy], NOW).unwrap();
    // Clients run outside TEEs: their key is their identity, and their
    // (simulated) evidence only binds it, so production accepts them.
    let client = Forge::new(Role::Client, "client").der();
    verify_certificate(&client, &production(), &[Role::Client], NOW).unwrap();
}

#[test]
fn every_case_is_refused_for_its_own_reason() {
    let cases = corpus();
    let mut failures = Vec::new();
    for case in &cases {
        match verify_certificate(&case.der, &case.policy, &case.expect, case.now) {
            Ok(_) => failures.push(format!("{}: accepted", case.name)),
            Err(e) if e.reason() != case.reason => failures.push(format!(
                "{}: refused as {} ({e}), expected {}",
                case.name,
                e.reason(),
                case.reason
            )),
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let reasons: std::collections::BTreeSet<_> = cases.iter().map(|c| c.reason).collect();
    println!(
        "{} cases over {} distinct reasons",
        cases.len(),
        reasons.len()
    );
    if let Ok(dir) = std::env::var("KOKON_CORPUS_OUT") {
        // Seeds for the certificate fuzz target.
        std::fs::create_dir_all(&dir).unwrap();
        for (i, case) in cases.iter().enumerate() {
            std::fs::write(format!("{dir}/neg-{i:03}.der"), &case.der).unwrap();
        }
    }
}
