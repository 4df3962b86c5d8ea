//! The contracts' code, initial data, addresses and message bodies, bit for
//! bit as `contracts/src/*.tolk` lays them out (and `contracts/lib/kokon.js`
//! builds them for the sandbox tests).

use std::sync::{Arc, LazyLock};

use kokon_money::cell::CellBits;
use kokon_money::{Address, Economics, Nanotons, PublicKey, Signature};
use num_bigint::BigUint;
use tonlib_core::TonAddress;
use tonlib_core::cell::{ArcCell, BagOfCells, Cell, CellBuilder, TonCellError};

/// Compiled code, committed by `npm run build` in `contracts/`.
const REGISTRY_BOC: &[u8] = include_bytes!("../../../contracts/build/registry.code.boc");
const CHANNEL_BOC: &[u8] = include_bytes!("../../../contracts/build/channel.code.boc");
const VAULT_BOC: &[u8] = include_bytes!("../../../contracts/build/vault.code.boc");

fn load(boc: &[u8]) -> ArcCell {
    BagOfCells::parse(boc)
        .and_then(BagOfCells::single_root)
        .expect("committed contract code is a valid bag of cells")
}

pub static REGISTRY_CODE: LazyLock<ArcCell> = LazyLock::new(|| load(REGISTRY_BOC));
pub static CHANNEL_CODE: LazyLock<ArcCell> = LazyLock::new(|| load(CHANNEL_BOC));
pub static VAULT_CODE: LazyLock<ArcCell> = LazyLock::new(|| load(VAULT_BOC));

/// Operation codes (the `struct (0x…)` prefixes in the Tolk sources).
pub mod op {
    pub const OPEN_VAULT: u32 = 0x4b4f_0101;
    pub const DEPOSIT: u32 = 0x4b4f_0102;
    pub const WORKER_CLAIM: u32 = 0x4b4f_0103;
    pub const REQUEST_WITHDRAWAL: u32 = 0x4b4f_0104;
    pub const WITHDRAW: u32 = 0x4b4f_0105;
    pub const OPEN: u32 = 0x4b4f_0201;
    pub const TOP_UP: u32 = 0x4b4f_0202;
    pub const CLAIM: u32 = 0x4b4f_0203;
    pub const CLOSE_COOPERATIVE: u32 = 0x4b4f_0204;
    pub const START_CLOSE: u32 = 0x4b4f_0205;
    pub const FINISH_CLOSE: u32 = 0x4b4f_0206;
    pub const SET_ECONOMICS: u32 = 0x4b4f_0301;
    pub const SET_IMAGE: u32 = 0x4b4f_0302;
    pub const SET_MODEL: u32 = 0x4b4f_0303;
    pub const SET_PROXY: u32 = 0x4b4f_0304;
    pub const SET_TD_POLICY: u32 = 0x4b4f_0306;
    pub const SET_UPSTREAM: u32 = 0x4b4f_0307;
    pub const SET_GATEWAY_KEYS: u32 = 0x4b4f_0308;
}

/// Tag of the worker's payout consent cell ("kvp1").
pub const TAG_PAYOUT: u32 = 0x6b76_7031;

pub type R<T> = Result<T, crate::TonError>;

pub fn ton_address(a: &Address) -> TonAddress {
    TonAddress::new(i32::from(a.workchain), a.hash.into())
}

pub fn kokon_address(a: &TonAddress) -> Address {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(a.hash_part.as_slice());
    Address::new(a.workchain as i8, hash)
}

fn coins(b: &mut CellBuilder, v: Nanotons) -> R<&mut CellBuilder> {
    Ok(b.store_coins(&BigUint::from(v))?)
}

fn key<'a>(b: &'a mut CellBuilder, k: &PublicKey) -> R<&'a mut CellBuilder> {
    Ok(b.store_slice(&k.0)?)
}

fn arc(mut b: CellBuilder) -> R<ArcCell> {
    Ok(Arc::new(b.build()?))
}

/// A cell holding exactly the bits `kokon-money` signs (vouchers, receipts).
pub fn from_bits(bits: &CellBits) -> R<ArcCell> {
    let mut b = CellBuilder::new();
    b.store_bits(bits.len(), bits.as_bytes())?;
    arc(b)
}

/// The address of a contract with this code and initial data.
pub fn address_of(code: &ArcCell, data: &ArcCell) -> R<Address> {
    Ok(kokon_address(&TonAddress::derive(
        0,
        code.clone(),
        data.clone(),
    )?))
}

/// A vault's initial data: its owner (the proxy's key) and owner wallet.
/// `network`: [`crate::Network::id`], part of the vault's address.
pub fn vault_data(owner: &PublicKey, owner_wallet: &Address, network: i32) -> R<ArcCell> {
    let mut b = CellBuilder::new();
    key(&mut b, owner)?.store_address(&ton_address(owner_wallet))?;
    b.store_i32(32, network)?;
    b.store_u32(32, 0)?;
    coins(&mut b, 0)?;
    coins(&mut b, 0)?;
    b.store_u32(32, 0)?.store_bit(false)?;
    arc(b)
}

/// Who a channel is between; part of its initial data, so of its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parties {
    pub client: PublicKey,
    pub proxy: PublicKey,
    pub client_wallet: Address,
    pub proxy_wallet: Address,
    pub vault: Address,
    pub seq: u64,
    /// [`crate::Network::id`]: a channel belongs to one network.
    pub network: i32,
}

pub fn channel_data(p: &Parties) -> R<ArcCell> {
    let mut parties = CellBuilder::new();
    parties
        .store_address(&ton_address(&p.client_wallet))?
        .store_address(&ton_address(&p.proxy_wallet))?
        .store_address(&ton_address(&p.vault))?
        .store_u64(64, p.seq)?
        .store_i32(32, p.network)?;
    let mut b = CellBuilder::new();
    key(&mut b, &p.client)?;
    key(&mut b, &p.proxy)?;
    coins(&mut b, 0)?;
    coins(&mut b, 0)?;
    b.store_u32(32, 0)?
        .store_u32(32, 0)?
        .store_bit(false)?
        .store_reference(&arc(parties)?)?;
    arc(b)
}

/// The registry's price table cell (kokon_money::PriceTable); per-model
/// prices are not on chain yet (the base price applies to every model).
pub fn prices_cell(e: &Economics) -> R<ArcCell> {
    let (p, m) = (&e.prices, &e.prices.multipliers);
    let mut b = CellBuilder::new();
    b.store_u64(64, p.base_per_million)?
        .store_u32(32, m.prompt)?
        .store_u32(32, m.cached_prompt)?
        .store_u32(32, m.completion)?
        .store_u32(32, m.reasoning)?
        .store_bit(false)?;
    arc(b)
}

/// Stakes the registry asks of proxies and workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stakes {
    pub min_proxy: Nanotons,
    pub min_worker: Nanotons,
}

pub fn economics_cell(e: &Economics, stakes: Stakes) -> R<ArcCell> {
    let mut b = CellBuilder::new();
    b.store_u16(16, e.commission_bps)?
        .store_u32(32, delay(e.channel_close_delay_secs))?
        .store_u32(32, delay(e.vault_withdraw_delay_secs))?;
    coins(&mut b, stakes.min_proxy)?;
    coins(&mut b, stakes.min_worker)?;
    b.store_reference(&prices_cell(e)?)?;
    arc(b)
}

/// Delays are `uint32` seconds on chain.
pub fn delay(secs: u64) -> u32 {
    secs.min(u64::from(u32::MAX)) as u32
}

pub fn registry_data(owner: &Address, economics: &ArcCell) -> R<ArcCell> {
    // Trust: no images, no models, the default TD policy (an empty cell),
    // no upstreams.
    let mut trust = CellBuilder::new();
    trust
        .store_bit(false)?
        .store_bit(false)?
        .store_reference(&arc(CellBuilder::new())?)?
        .store_bit(false)?;
    let mut b = CellBuilder::new();
    b.store_address(&ton_address(owner))?
        .store_u32(32, 0)?
        .store_reference(economics)?
        .store_reference(&arc(trust)?)?
        // No proxies, no gateway keys.
        .store_bit(false)?
        .store_bit(false)?;
    arc(b)
}

fn head(op: u32) -> R<CellBuilder> {
    let mut b = CellBuilder::new();
    b.store_u32(32, op)?.store_u64(64, 0)?;
    Ok(b)
}

/// Message bodies, one per operation.
pub mod body {
    use super::*;

    pub fn open_vault(amount: Nanotons, withdraw_delay: u64) -> R<ArcCell> {
        let mut b = head(op::OPEN_VAULT)?;
        coins(&mut b, amount)?.store_u32(32, delay(withdraw_delay))?;
        arc(b)
    }

    pub fn deposit(amount: Nanotons) -> R<ArcCell> {
        let mut b = head(op::DEPOSIT)?;
        coins(&mut b, amount)?;
        arc(b)
    }

    /// The cell a worker signs to name where its money goes.
    pub fn payout_consent(voucher_hash: &[u8; 32], pay_to: &Address) -> R<ArcCell> {
        let mut b = CellBuilder::new();
        b.store_u32(32, TAG_PAYOUT)?
            .store_slice(voucher_hash)?
            .store_address(&ton_address(pay_to))?;
        arc(b)
    }

    pub fn worker_claim(
        proxy_sig: &Signature,
        voucher: &ArcCell,
        pay_to: &Address,
        worker_sig: &Signature,
    ) -> R<ArcCell> {
        let mut payout = CellBuilder::new();
        payout
            .store_address(&ton_address(pay_to))?
            .store_slice(&worker_sig.0)?;
        let mut b = head(op::WORKER_CLAIM)?;
        b.store_slice(&proxy_sig.0)?
            .store_reference(voucher)?
            .store_reference(&arc(payout)?)?;
        arc(b)
    }

    pub fn request_withdrawal(amount: Nanotons) -> R<ArcCell> {
        let mut b = head(op::REQUEST_WITHDRAWAL)?;
        coins(&mut b, amount)?;
        arc(b)
    }

    pub fn withdraw() -> R<ArcCell> {
        arc(head(op::WITHDRAW)?)
    }

    pub fn open(amount: Nanotons, close_delay: u64) -> R<ArcCell> {
        let mut b = head(op::OPEN)?;
        coins(&mut b, amount)?.store_u32(32, delay(close_delay))?;
        arc(b)
    }

    pub fn top_up(amount: Nanotons) -> R<ArcCell> {
        let mut b = head(op::TOP_UP)?;
        coins(&mut b, amount)?;
        arc(b)
    }

    pub fn claim(sig: &Signature, voucher: &ArcCell) -> R<ArcCell> {
        let mut b = head(op::CLAIM)?;
        b.store_slice(&sig.0)?.store_reference(voucher)?;
        arc(b)
    }

    pub fn close_cooperative(last: Option<(&Signature, &ArcCell)>) -> R<ArcCell> {
        let mut b = head(op::CLOSE_COOPERATIVE)?;
        match last {
            Some((sig, voucher)) => {
                b.store_slice(&sig.0)?
                    .store_bit(true)?
                    .store_reference(voucher)?;
            }
            None => {
                b.store_slice(&[0u8; 64])?.store_bit(false)?;
            }
        }
        arc(b)
    }

    pub fn start_close() -> R<ArcCell> {
        arc(head(op::START_CLOSE)?)
    }

    pub fn finish_close() -> R<ArcCell> {
        arc(head(op::FINISH_CLOSE)?)
    }

    pub fn set_economics(economics: &ArcCell) -> R<ArcCell> {
        let mut b = head(op::SET_ECONOMICS)?;
        b.store_reference(economics)?;
        arc(b)
    }

    /// `td`: a [`crate::td_policy::td_policy_cell`].
    pub fn set_td_policy(td: &ArcCell) -> R<ArcCell> {
        let mut b = head(op::SET_TD_POLICY)?;
        b.store_reference(td)?;
        arc(b)
    }

    /// `roles` is a bitmask (1 proxy, 2 worker); 0 removes the image.
    pub fn set_image(image: &[u8; 32], roles: u8) -> R<ArcCell> {
        let mut b = head(op::SET_IMAGE)?;
        b.store_slice(image)?.store_u8(8, roles)?;
        arc(b)
    }

    /// Lists `origin` (an upstream engines may forward to) under the key
    /// SHA-256(origin); `remove` delists it.
    pub fn set_upstream(origin: &str, remove: bool) -> R<ArcCell> {
        let mut b = head(op::SET_UPSTREAM)?;
        b.store_slice(&kokon_attest::sha256(origin.as_bytes()))?;
        if remove {
            b.store_bit(false)?;
        } else {
            let mut e = CellBuilder::new();
            e.store_reference(&string_cell(origin)?)?;
            b.store_bit(true)?.store_reference(&arc(e)?)?;
        }
        arc(b)
    }

    /// `name`: the name the model may be served under; `None` removes it.
    pub fn set_model(model: &[u8; 32], name: Option<&str>) -> R<ArcCell> {
        let mut b = head(op::SET_MODEL)?;
        b.store_slice(model)?;
        match name {
            Some(name) => {
                let mut e = CellBuilder::new();
                e.store_reference(&string_cell(name)?)?;
                b.store_bit(true)?.store_reference(&arc(e)?)?;
            }
            None => {
                b.store_bit(false)?;
            }
        }
        arc(b)
    }

    /// What the proxy `proxy` publishes of its gateway's keys (sent from its
    /// wallet); `None` withdraws them.
    pub fn set_gateway_keys(proxy: &PublicKey, entry: Option<&kokon_pay::KeyRecord>) -> R<ArcCell> {
        let mut b = head(op::SET_GATEWAY_KEYS)?;
        b.store_slice(&proxy.0)?;
        match entry {
            Some(k) => {
                let mut e = CellBuilder::new();
                e.store_reference(&bytes_cell(&k.ohttp)?)?
                    .store_slice(&k.credits.unwrap_or([0; 32]))?;
                b.store_bit(true)?.store_reference(&arc(e)?)?;
            }
            None => {
                b.store_bit(false)?;
            }
        }
        arc(b)
    }

    /// `entry` = (wallet, endpoint); `None` removes the proxy.
    pub fn set_proxy(proxy: &PublicKey, entry: Option<(&Address, &str)>) -> R<ArcCell> {
        let mut b = head(op::SET_PROXY)?;
        b.store_slice(&proxy.0)?;
        match entry {
            Some((wallet, endpoint)) => {
                let mut e = CellBuilder::new();
                e.store_address(&ton_address(wallet))?
                    .store_reference(&string_cell(endpoint)?)?;
                b.store_bit(true)?.store_reference(&arc(e)?)?;
            }
            None => {
                b.store_bit(false)?;
            }
        }
        arc(b)
    }
}

/// A string as a snake cell (bytes, continued in the first reference).
pub fn string_cell(s: &str) -> R<ArcCell> {
    bytes_cell(s.as_bytes())
}

/// Bytes as a snake cell (127 per cell, continued in the first reference).
pub fn bytes_cell(bytes: &[u8]) -> R<ArcCell> {
    let mut tail: Option<ArcCell> = None;
    for chunk in bytes.chunks(127).rev() {
        let mut b = CellBuilder::new();
        b.store_slice(chunk)?;
        if let Some(t) = &tail {
            b.store_reference(t)?;
        }
        tail = Some(arc(b)?);
    }
    tail.map_or_else(|| arc(CellBuilder::new()), Ok)
}

/// Reads a snake string cell back (at most 4 KiB).
pub fn read_string(c: &Cell) -> Result<String, TonCellError> {
    let out = read_bytes(c, 4096)?;
    String::from_utf8(out).map_err(|_| TonCellError::CellParserError("string is not UTF-8".into()))
}

/// Reads a snake of whole bytes back, at most `max` of them.
pub fn read_bytes(c: &Cell, max: usize) -> Result<Vec<u8>, TonCellError> {
    let bad = |why: String| TonCellError::CellParserError(why);
    let mut out = Vec::new();
    let mut cur = c;
    loop {
        if !cur.bit_len().is_multiple_of(8) {
            return Err(bad("a byte string holds a partial byte".into()));
        }
        out.extend_from_slice(&c_data(cur));
        if out.len() > max {
            return Err(bad(format!("a byte string is over {max} bytes")));
        }
        match cur.references() {
            [] => return Ok(out),
            [next] => cur = next,
            _ => return Err(bad("a byte string cell has more than one reference".into())),
        }
    }
}

fn c_data(c: &Cell) -> Vec<u8> {
    c.data()[..c.bit_len() / 8].to_vec()
}
