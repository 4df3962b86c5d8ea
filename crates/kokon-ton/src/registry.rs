//! The registry (root) contract: reading it with get-methods, and the
//! owner's changes.

use kokon_money::{Address, Nanotons, PublicKey, SecretKey};
use tonlib_core::cell::ArcCell;

use crate::TonError;
use crate::api::{Stack, TonApi};
use crate::bits::{self, BitReader};
use crate::cells::{self, Stakes, body};
use crate::settlement::{GAS, TonSettlement};
use crate::wallet::Outgoing;

/// Role bits of an image entry.
pub const ROLE_PROXY: u8 = 1;
pub const ROLE_WORKER: u8 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyInfo {
    pub key: PublicKey,
    pub wallet: Address,
    pub endpoint: String,
}

/// Everything the registry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryState {
    pub address: Address,
    pub owner: Address,
    pub version: u32,
    pub commission_bps: u16,
    pub channel_close_delay_secs: u64,
    pub vault_withdraw_delay_secs: u64,
    pub stakes: Stakes,
    pub base_per_million: u64,
    /// (image hash, role bits), sorted by hash.
    pub images: Vec<([u8; 32], u8)>,
    /// Allowed model hashes and the name each may be served under, sorted.
    pub models: Vec<([u8; 32], String)>,
    /// The TD policy (XFAM, TD attributes, MRSEAM, host IDs, minimum SVN).
    pub td: kokon_attest::TdPolicy,
    /// Origins workers' upstream engines may forward jobs to, sorted.
    pub upstreams: Vec<String>,
    pub proxies: Vec<ProxyInfo>,
    /// What each proxy published of its gateway's keys, sorted by proxy key.
    pub gateways: Vec<(PublicKey, kokon_pay::KeyRecord)>,
}

impl RegistryState {
    /// The allowed model files by served name, as the registry file says it.
    pub fn models_by_name(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (hash, name) in &self.models {
            out.entry(name.clone()).or_default().push(hex::encode(hash));
        }
        out
    }

    pub fn images_for(&self, role: u8) -> Vec<String> {
        self.images
            .iter()
            .filter(|(_, r)| r & role != 0)
            .map(|(h, _)| hex::encode(h))
            .collect()
    }
}

fn read_u8(r: &mut BitReader<'_>) -> Result<u8, TonError> {
    Ok(r.uint(8)? as u8)
}

fn read_model(r: &mut BitReader<'_>) -> Result<String, TonError> {
    cells::read_string(r.reference()?)
        .map_err(|e| TonError::BadResponse(format!("model name: {e}")))
}

fn read_upstream(r: &mut BitReader<'_>) -> Result<String, TonError> {
    cells::read_string(r.reference()?)
        .map_err(|e| TonError::BadResponse(format!("upstream origin: {e}")))
}

fn read_proxy(r: &mut BitReader<'_>) -> Result<(Address, String), TonError> {
    let wallet = r.address()?;
    let endpoint = cells::read_string(r.reference()?)
        .map_err(|e| TonError::BadResponse(format!("proxy endpoint: {e}")))?;
    Ok((wallet, endpoint))
}

/// A `GatewayEntry`: the OHTTP keys (snake) and the credit keys' hash
/// (zero: none).
fn read_gateway(r: &mut BitReader<'_>) -> Result<kokon_pay::KeyRecord, TonError> {
    let ohttp = cells::read_bytes(r.reference()?, kokon_pay::MAX_PUBLISHED_OHTTP)
        .map_err(|e| TonError::BadResponse(format!("gateway keys: {e}")))?;
    let credits: [u8; 32] = r.bytes()?;
    Ok(kokon_pay::KeyRecord {
        ohttp,
        credits: (credits != [0; 32]).then_some(credits),
    })
}

/// The `gateways` get-method's dictionary.
pub async fn read_gateways(
    api: &TonApi,
    address: &Address,
) -> Result<Vec<(PublicKey, kokon_pay::KeyRecord)>, TonError> {
    Ok(dict(
        Stack::new(api.get(address, "gateways", &[]).await?).cell()?,
        read_gateway,
    )?
    .into_iter()
    .map(|(k, v)| (PublicKey(k), v))
    .collect())
}

fn dict<V>(
    root: Option<ArcCell>,
    reader: fn(&mut BitReader<'_>) -> Result<V, TonError>,
) -> Result<Vec<([u8; 32], V)>, TonError> {
    match root {
        Some(root) => bits::dict256(&root, reader),
        None => Ok(Vec::new()),
    }
}

/// The registry's dictionaries as get-methods return them (for fuzzing the
/// parsers with arbitrary cells).
pub fn parse_dicts(cell: &ArcCell) -> Result<(usize, usize, usize, usize), TonError> {
    let images = dict(Some(cell.clone()), read_u8)
        .map(|v| v.len())
        .unwrap_or(0);
    let models = dict(Some(cell.clone()), read_model)
        .map(|v| v.len())
        .unwrap_or(0);
    let gateways = dict(Some(cell.clone()), read_gateway)
        .map(|v| v.len())
        .unwrap_or(0);
    let proxies = dict(Some(cell.clone()), read_proxy)?.len();
    Ok((images, models, proxies, gateways))
}

/// Reads the whole registry at `address`.
pub async fn read(api: &TonApi, address: &Address) -> Result<RegistryState, TonError> {
    let version = Stack::new(api.get(address, "version", &[]).await?).u64()? as u32;
    let owner = Stack::new(api.get(address, "owner", &[]).await?).address()?;
    let mut e = Stack::new(api.get(address, "economics", &[]).await?);
    let commission_bps = e.u64()? as u16;
    let (close, withdraw) = (e.u64()?, e.u64()?);
    let stakes = Stakes {
        min_proxy: e.u128()?,
        min_worker: e.u128()?,
    };
    let prices = e
        .cell()?
        .ok_or_else(|| TonError::BadResponse("no price table".into()))?;
    let base_per_million = BitReader::new(&prices).uint(64)?;
    let images = dict(
        Stack::new(api.get(address, "images", &[]).await?).cell()?,
        read_u8,
    )?;
    let models = dict(
        Stack::new(api.get(address, "models", &[]).await?).cell()?,
        read_model,
    )?;
    let proxies = dict(
        Stack::new(api.get(address, "proxies", &[]).await?).cell()?,
        read_proxy,
    )?
    .into_iter()
    .map(|(k, (wallet, endpoint))| ProxyInfo {
        key: PublicKey(k),
        wallet,
        endpoint,
    })
    .collect();
    let mut upstreams: Vec<String> = dict(
        Stack::new(api.get(address, "upstreams", &[]).await?).cell()?,
        read_upstream,
    )?
    .into_iter()
    .map(|(_, origin)| origin)
    .collect();
    upstreams.sort();
    let td = Stack::new(api.get(address, "tdPolicy", &[]).await?)
        .cell()?
        .ok_or_else(|| TonError::BadResponse("no TD policy cell".into()))?;
    let gateways = read_gateways(api, address).await?;
    Ok(RegistryState {
        gateways,
        td: crate::td_policy::read_td_policy(&td)?,
        upstreams,
        address: *address,
        owner,
        version,
        commission_bps,
        channel_close_delay_secs: close,
        vault_withdraw_delay_secs: withdraw,
        stakes,
        base_per_million,
        images,
        models,
        proxies,
    })
}

/// A change the owner makes.
#[derive(Clone, Debug)]
pub enum Change {
    Economics(kokon_money::Economics, Stakes),
    Image {
        hash: [u8; 32],
        roles: u8,
    },
    /// `name`: the served name the file is allowed under; `None` removes it.
    Model {
        hash: [u8; 32],
        name: Option<String>,
    },
    Proxy {
        key: PublicKey,
        entry: Option<(Address, String)>,
    },
    TdPolicy(kokon_attest::TdPolicy),
    /// Lists (or with `remove`, delists) an upstream origin.
    Upstream {
        origin: String,
        remove: bool,
    },
}

impl Change {
    fn body(&self) -> Result<ArcCell, TonError> {
        Ok(match self {
            Change::Economics(e, s) => body::set_economics(&cells::economics_cell(e, *s)?)?,
            Change::Image { hash, roles } => body::set_image(hash, *roles)?,
            Change::Model { hash, name } => body::set_model(hash, name.as_deref())?,
            Change::Proxy { key, entry } => {
                body::set_proxy(key, entry.as_ref().map(|(w, e)| (w, e.as_str())))?
            }
            Change::TdPolicy(td) => body::set_td_policy(&crate::td_policy::td_policy_cell(td)?)?,
            Change::Upstream { origin, remove } => body::set_upstream(origin, *remove)?,
        })
    }
}

/// Where the registry owned by `owner`'s wallet with these starting
/// economics lives.
pub fn address(
    ton: &TonSettlement,
    owner: &PublicKey,
    economics: &kokon_money::Economics,
    stakes: Stakes,
) -> Result<(Address, ArcCell), TonError> {
    let data = cells::registry_data(
        &ton.wallet_of(owner)?,
        &cells::economics_cell(economics, stakes)?,
    )?;
    Ok((cells::address_of(&cells::REGISTRY_CODE, &data)?, data))
}

/// Deploys the registry (if it is not there yet) with `reserve` nanotons
/// for its storage rent.
pub async fn deploy(
    ton: &TonSettlement,
    owner: &SecretKey,
    economics: &kokon_money::Economics,
    stakes: Stakes,
    reserve: Nanotons,
) -> Result<Address, TonError> {
    let (addr, data) = address(ton, &owner.public(), economics, stakes)?;
    if ton.api().account(&addr).await?.status == crate::api::Status::Active {
        return Ok(addr);
    }
    let out = Outgoing {
        to: addr,
        value: reserve,
        body: std::sync::Arc::new(tonlib_core::cell::Cell::default()),
        init: Some((cells::REGISTRY_CODE.clone(), data)),
        bounce: false,
    };
    ton.submit(owner, out).await?;
    Ok(addr)
}

/// Applies `change` as the registry's owner.
pub async fn apply(
    ton: &TonSettlement,
    owner: &SecretKey,
    registry: &Address,
    change: &Change,
) -> Result<(), TonError> {
    send_as(ton, owner, registry, change.body()?).await
}

/// Sends the message `body` to the registry from `sender`'s wallet (the
/// contract judges who may send what).
pub async fn send_as(
    ton: &TonSettlement,
    sender: &SecretKey,
    registry: &Address,
    body: ArcCell,
) -> Result<(), TonError> {
    let out = Outgoing {
        to: *registry,
        value: GAS,
        body,
        init: None,
        bounce: true,
    };
    ton.submit(sender, out).await?;
    Ok(())
}
