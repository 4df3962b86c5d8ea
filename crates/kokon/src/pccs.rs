//! Fetching TDX collateral from a PCCS or Intel's PCS (API v4).
//!
//! * `GET /sgx/certification/v4/pckcrl?ca=<platform|processor>&encoding=der`:
//!   the PCK CRL (DER), issuer chain in `SGX-PCK-CRL-Issuer-Chain`;
//! * `GET /tdx/certification/v4/tcb?fmspc=<hex>`: `{"tcbInfo":…,"signature":…}`,
//!   issuer chain in `TCB-Info-Issuer-Chain` (or `SGX-TCB-Info-Issuer-Chain`);
//! * `GET /tdx/certification/v4/qe/identity`: `{"enclaveIdentity":…,"signature":…}`,
//!   issuer chain in `SGX-Enclave-Identity-Issuer-Chain`;
//! * `GET /sgx/certification/v4/rootcacrl`: the root CA CRL (a PCCS serves it
//!   hex-encoded); Intel's PCS has no such path, so the root certificate's
//!   CRL distribution point is used instead.
//!
//! Issuer chains are URL-encoded PEM. Signed JSON objects are kept byte for
//! byte (the signature covers their exact text).

use anyhow::{Context, bail};
use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Where Intel publishes the SGX root CA's CRL (its CRL distribution point).
const INTEL_ROOT_CRL: &str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Largest response accepted.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Deserialize)]
struct TcbInfoResponse<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct QeIdentityResponse<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

struct Response {
    body: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

impl Response {
    fn chain(&self, names: &[&str]) -> anyhow::Result<String> {
        let value = names
            .iter()
            .find_map(|n| self.headers.get(*n))
            .with_context(|| format!("response lacks the {} header", names[0]))?;
        let decoded = percent_encoding::percent_decode(value.as_bytes()).decode_utf8()?;
        Ok(decoded.into_owned())
    }
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Response> {
    let resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: HTTP {}", resp.status());
    }
    let headers = resp.headers().clone();
    let body = resp.bytes().await.with_context(|| format!("GET {url}"))?;
    if body.len() > MAX_BODY {
        bail!("GET {url}: {} bytes, more than {MAX_BODY}", body.len());
    }
    Ok(Response {
        body: body.to_vec(),
        headers,
    })
}

/// Fetches everything needed to verify quotes of platform `fmspc` whose PCK
/// certificate was issued by the `ca` ("platform" or "processor") CA.
pub async fn fetch(base: &str, fmspc: &str, ca: &str) -> anyhow::Result<QuoteCollateralV3> {
    let base = base.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let crl = get(
        &client,
        &format!("{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"),
    )
    .await?;
    let tcb = get(
        &client,
        &format!("{base}/tdx/certification/v4/tcb?fmspc={fmspc}"),
    )
    .await?;
    let qe = get(&client, &format!("{base}/tdx/certification/v4/qe/identity")).await?;
    let tcb_json: TcbInfoResponse =
        serde_json::from_slice(&tcb.body).context("TCB info is not the expected JSON")?;
    let qe_json: QeIdentityResponse =
        serde_json::from_slice(&qe.body).context("QE identity is not the expected JSON")?;
    Ok(QuoteCollateralV3 {
        pck_crl_issuer_chain: crl.chain(&["SGX-PCK-CRL-Issuer-Chain"])?,
        root_ca_crl: root_ca_crl(&client, base).await?,
        pck_crl: crl.body.clone(),
        tcb_info_issuer_chain: tcb
            .chain(&["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"])?,
        tcb_info: tcb_json.tcb_info.get().to_string(),
        tcb_info_signature: hex::decode(&tcb_json.signature)
            .context("TCB info signature is not hex")?,
        qe_identity_issuer_chain: qe.chain(&["SGX-Enclave-Identity-Issuer-Chain"])?,
        qe_identity: qe_json.enclave_identity.get().to_string(),
        qe_identity_signature: hex::decode(&qe_json.signature)
            .context("QE identity signature is not hex")?,
        pck_certificate_chain: None,
    })
}

/// The root CA CRL: from the PCCS (hex or DER), else from Intel.
async fn root_ca_crl(client: &reqwest::Client, base: &str) -> anyhow::Result<Vec<u8>> {
    let body = match get(client, &format!("{base}/sgx/certification/v4/rootcacrl")).await {
        Ok(r) => r.body,
        Err(_) => get(client, INTEL_ROOT_CRL).await?.body,
    };
    // A PCCS answers in hex; Intel in DER (which starts with a SEQUENCE tag).
    match body.first() {
        Some(0x30) => Ok(body),
        _ => hex::decode(body.trim_ascii()).context("root CA CRL is neither DER nor hex"),
    }
}
