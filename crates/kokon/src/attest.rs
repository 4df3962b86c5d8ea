//! `kokon attest show|measure|collateral`: look at a peer's attestation,
//! measure a quote or this TD, and keep Intel's collateral cached.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use kokon_attest::inspect::{Inspection, inspect, judge_report};
use kokon_attest::td::TdConfigView;
use kokon_attest::tdx::{Collateral, TdxTrust, parse_quote, quote_platform, verify_quote};
use kokon_attest::tsm::{DEFAULT_ROOT, open_tdx};
use kokon_attest::{Clock, Policy, Role, SystemClock};

use crate::config::registry_path;

/// Intel's public PCS, for `kokon attest collateral fetch`.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";

#[derive(Subcommand)]
pub enum AttestCmd {
    /// Connect to a node (HOST:PORT) or read a certificate file (PEM or DER)
    /// and print its role, evidence, measurements, image and model hashes,
    /// TCB status and what the local policy says. Exits 1 when refused.
    Show {
        /// HOST:PORT of a proxy, or a certificate file (PEM or DER; a worker's is
        /// served at /certificate on its admin port).
        target: String,
        /// Role the peer must play [default: proxy for addresses, any for files].
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print a TDX quote's measurements, image hash and TD configuration (from
    /// a file, or from this TD through configfs-tsm or /dev/tdx_guest), verify
    /// it with the cached collateral and judge it by the registry (its TD
    /// rules, TCB statuses and image lists; without a registry file, by the
    /// default rules). Exits 1 when the registry's policy refuses the quote.
    Measure {
        /// Quote file (raw bytes); omitted: ask this TD for one.
        quote: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
        #[arg(long)]
        json: bool,
    },
    /// Intel collateral (TCB info, QE identity, CRLs) for offline verification.
    #[command(subcommand)]
    Collateral(CollateralCmd),
}

#[derive(Subcommand)]
pub enum CollateralCmd {
    /// Download collateral for a quote's platform into the cache directory.
    Fetch {
        /// Quote whose platform (FMSPC, PCK CA) to fetch for; omitted: this TD.
        #[arg(long)]
        quote: Option<PathBuf>,
        /// PCCS or Intel PCS base URL.
        #[arg(long, env = "KOKON_PCCS_URL", default_value = INTEL_PCS)]
        pccs: String,
        /// Cache directory [default: $KOKON_HOME/collateral].
        #[arg(long, env = "KOKON_COLLATERAL")]
        dir: Option<PathBuf>,
    },
    /// List cached collateral and its validity window.
    List {
        #[arg(long, env = "KOKON_COLLATERAL")]
        dir: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone)]
pub struct TrustArgs {
    /// Registry file [default: $KOKON_HOME/registry.toml].
    #[arg(long, env = "KOKON_REGISTRY")]
    pub registry: Option<PathBuf>,
    /// Collateral cache directory [default: $KOKON_HOME/collateral].
    #[arg(long, env = "KOKON_COLLATERAL")]
    pub collateral: Option<PathBuf>,
    /// Judge at this unix time instead of now (e.g. inside old collateral's window).
    #[arg(long)]
    pub at: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Proxy,
    Worker,
    Client,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Proxy => Role::Proxy,
            RoleArg::Worker => Role::Worker,
            RoleArg::Client => Role::Client,
        }
    }
}

/// The collateral cache directory.
pub fn collateral_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| kokon_models::kokon_home().join("collateral"))
}

/// The registry's policy, trusting Intel's root with the cached collateral.
pub fn policy_with_collateral(
    registry: Option<PathBuf>,
    collateral: Option<PathBuf>,
) -> anyhow::Result<Policy> {
    let source = crate::follow::PolicySource {
        registry,
        collateral,
    };
    Ok(source.load()?.1)
}

/// `policy`, trusting Intel's root with the collateral cached in `dir`.
pub(crate) fn trusting_collateral(
    mut policy: Policy,
    dir: Option<PathBuf>,
) -> anyhow::Result<Policy> {
    let dir = collateral_dir(dir);
    let coll = Collateral::load_dir(&dir)
        .with_context(|| format!("collateral cache {}", dir.display()))?;
    policy.tdx = (!coll.is_empty()).then(|| TdxTrust::intel(coll));
    Ok(policy)
}

pub async fn run(cmd: AttestCmd) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        AttestCmd::Show {
            target,
            role,
            trust,
            json,
        } => show(&target, role.map(Role::from), &trust, json).await,
        AttestCmd::Measure { quote, trust, json } => measure(quote, &trust, json).await,
        AttestCmd::Collateral(CollateralCmd::Fetch { quote, pccs, dir }) => {
            fetch(quote, &pccs, collateral_dir(dir)).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        AttestCmd::Collateral(CollateralCmd::List { dir }) => {
            list(&collateral_dir(dir))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

async fn show(
    target: &str,
    role: Option<Role>,
    trust: &TrustArgs,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let policy = Arc::new(policy_with_collateral(
        trust.registry.clone(),
        trust.collateral.clone(),
    )?);
    let now = trust.at.unwrap_or_else(|| SystemClock.now_unix());
    let any = [Role::Proxy, Role::Worker, Role::Client];
    let (der, link_error) = if Path::new(target).exists() {
        (read_certificate(Path::new(target))?, None)
    } else {
        let addr = tokio::net::lookup_host(target)
            .await
            .with_context(|| format!("`{target}` is neither a file nor HOST:PORT"))?
            .next()
            .with_context(|| format!("`{target}` resolves to no address"))?;
        let expected = [role.unwrap_or(Role::Proxy)];
        let tls = kokon_tls::node::simulated_node(
            Role::Client,
            None,
            policy.clone(),
            [0; 32],
            &Default::default(),
        )?;
        let (cert, verdict) = tls.inspect(addr, &expected).await;
        let Some(cert) = cert else {
            bail!(
                "{target} presented no certificate: {}",
                verdict.err().map(|e| e.to_string()).unwrap_or_default()
            );
        };
        (cert, verdict.err().map(|e| e.to_string()))
    };
    let expected: Vec<Role> = role.map(|r| vec![r]).unwrap_or_else(|| any.to_vec());
    let mut view = inspect(&der, &policy, &expected, now);
    if view.refused.is_none() && link_error.is_some() {
        view.refused = link_error; // e.g. an incompatible protocol
    }
    print_inspection(target, &view, json)?;
    Ok(match view.refused {
        None => std::process::ExitCode::SUCCESS,
        Some(_) => std::process::ExitCode::from(1),
    })
}

fn read_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
        return Ok(pem.contents);
    }
    Ok(bytes)
}

fn print_inspection(target: &str, v: &Inspection, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let or = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    println!("peer          {target}");
    println!(
        "role          {}",
        v.role.map(|r| r.to_string()).unwrap_or("-".into())
    );
    println!("evidence      {}", or(&v.evidence));
    println!("MRTD          {}", or(&v.mrtd));
    for (i, r) in v.rtmr.iter().enumerate() {
        println!("RTMR{i}         {r}");
    }
    println!("image hash    {}", or(&v.image_hash));
    println!(
        "models        {}",
        if v.models.is_empty() {
            "-".into()
        } else {
            v.models.join(", ")
        }
    );
    if let Some(e) = &v.engine {
        let outside = if e.upstream.is_some() {
            " (jobs leave the TEE for this upstream)"
        } else {
            ""
        };
        println!("engine        {e}{outside}");
    }
    println!(
        "debug TD      {}",
        v.debug_td
            .map(|d| if d { "YES" } else { "no" })
            .unwrap_or("-")
    );
    if let Some(td) = &v.td {
        println!("TD attributes {}", td.td_attributes);
        println!("XFAM          {}", td.xfam);
        println!("MRSEAM        {}", td.mr_seam);
        println!("TEE_TCB_SVN   {}", td.tee_tcb_svn);
    }
    println!(
        "TCB status    {}",
        v.tcb_status
            .clone()
            .unwrap_or_else(|| "- (no TCB: simulated)".into())
    );
    if let (Some(a), Some(b)) = (v.not_before, v.not_after) {
        println!("valid         {a} .. {b} (unix seconds)");
    }
    match &v.refused {
        None => println!("policy        ACCEPTED"),
        Some(why) => println!("policy        REFUSED: {why}"),
    }
    Ok(())
}

async fn measure(
    quote: Option<PathBuf>,
    trust: &TrustArgs,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let bytes = match &quote {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => local_quote().await?,
    };
    let body = parse_quote(&bytes)?;
    let (policy, registry) = measure_policy(trust)?;
    let now = trust.at.unwrap_or_else(|| SystemClock.now_unix());
    // With nothing cached, the refusal names the platform to fetch for.
    let no_collateral = TdxTrust::default();
    let dcap = verify_quote(&bytes, policy.tdx.as_ref().unwrap_or(&no_collateral), now);
    let judged = dcap
        .clone()
        .and_then(|report| judge_report(&report, &policy));
    let refused = match &judged {
        Err(e) => Some((e.to_string(), e.reason())),
        Ok(j) if j.roles.is_empty() && registry.is_some() => Some((
            "the quote's image is listed for no role by the registry".to_string(),
            "image_not_allowed",
        )),
        Ok(_) => None,
    };
    let out = serde_json::json!({
        "version": body.version,
        "mrtd": hex::encode(body.measurements.mrtd),
        "rtmr": body.measurements.rtmr.iter().map(hex::encode).collect::<Vec<_>>(),
        "image_hash": hex::encode(body.measurements.image_hash()),
        "report_data": hex::encode(body.report_data),
        "debug_td": body.td.is_debug(),
        "td": TdConfigView::from(&body.td),
        "tcb_status": dcap.as_ref().ok().map(|r| r.tcb_status.clone()),
        "verified": dcap.is_ok(),
        "error": dcap.as_ref().err().map(|e| e.to_string()),
        "registry": registry.as_ref().map(|p| p.display().to_string()),
        "roles": judged.as_ref().map(|j| j.roles.clone()).unwrap_or_default(),
        "accepted": refused.is_none(),
        "refused": refused.as_ref().map(|r| r.0.clone()),
        "reason": refused.as_ref().map(|r| r.1),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_measurement(&body, &out, &dcap);
    }
    Ok(match refused {
        None => std::process::ExitCode::SUCCESS,
        Some(_) => std::process::ExitCode::from(1),
    })
}

/// The policy `measure` judges by: the registry's if there is one (the
/// given path must exist), else the default rules with no images listed.
fn measure_policy(trust: &TrustArgs) -> anyhow::Result<(Policy, Option<PathBuf>)> {
    let path = registry_path(trust.registry.clone());
    if trust.registry.is_none() && !path.exists() {
        let policy =
            trusting_collateral(Policy::new(Default::default()), trust.collateral.clone())?;
        return Ok((policy, None));
    }
    let policy = policy_with_collateral(Some(path.clone()), trust.collateral.clone())?;
    Ok((policy, Some(path)))
}

fn print_measurement(
    body: &kokon_attest::tdx::QuoteBody,
    out: &serde_json::Value,
    dcap: &Result<kokon_attest::tdx::TdReport, kokon_attest::AttestError>,
) {
    let field = |k: &str| out[k].as_str().unwrap_or_default().to_string();
    println!("quote         v{}", body.version);
    println!("MRTD          {}", field("mrtd"));
    for (i, r) in body.measurements.rtmr.iter().enumerate() {
        println!("RTMR{i}         {}", hex::encode(r));
    }
    println!("image hash    {}", field("image_hash"));
    println!("report data   {}", field("report_data"));
    let td = TdConfigView::from(&body.td);
    println!("TD attributes {}", td.td_attributes);
    println!("XFAM          {}", td.xfam);
    println!("MRSEAM        {}", td.mr_seam);
    println!("TEE_TCB_SVN   {}", td.tee_tcb_svn);
    println!("MRCONFIGID    {}", td.mr_config_id);
    println!("MROWNER       {}", td.mr_owner);
    println!("MROWNERCONFIG {}", td.mr_owner_config);
    match dcap {
        Ok(r) => println!(
            "verified      yes: TCB {} (FMSPC {})",
            r.tcb_status, r.fmspc
        ),
        Err(e) => println!("verified      no: {e}"),
    }
    let registry = out["registry"].as_str().unwrap_or("none (default rules)");
    match out["refused"].as_str() {
        None => println!("registry      ACCEPTED by {registry}"),
        Some(why) => println!("registry      REFUSED by {registry}: {why}"),
    }
}

/// A quote from this TD, over all-zero report data (for measuring).
async fn local_quote() -> anyhow::Result<Vec<u8>> {
    tokio::task::spawn_blocking(|| {
        let source = open_tdx(Path::new(DEFAULT_ROOT))?;
        source.quote(&[0; 64]).map_err(anyhow::Error::msg)
    })
    .await?
}

async fn fetch(quote: Option<PathBuf>, pccs: &str, dir: PathBuf) -> anyhow::Result<()> {
    let bytes = match &quote {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => local_quote().await?,
    };
    let (fmspc, ca) = quote_platform(&bytes)?;
    eprintln!("fetching collateral for FMSPC {fmspc} ({ca} CA) from {pccs}");
    let coll = crate::pccs::fetch(pccs, &fmspc, ca).await?;
    let path = Collateral::save(&dir, &fmspc, &coll)?;
    println!("saved {}", path.display());
    Ok(())
}

fn list(dir: &Path) -> anyhow::Result<()> {
    let coll = Collateral::load_dir(dir)?;
    if coll.is_empty() {
        println!(
            "no collateral in {} (fetch with `kokon attest collateral fetch`)",
            dir.display()
        );
    }
    for fmspc in coll.fmspcs() {
        let c = coll.get(fmspc).context("listed")?;
        let window: serde_json::Value = serde_json::from_str(&c.tcb_info).unwrap_or_default();
        println!(
            "{fmspc}  TCB info issued {}  next update {}",
            window["issueDate"].as_str().unwrap_or("?"),
            window["nextUpdate"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
