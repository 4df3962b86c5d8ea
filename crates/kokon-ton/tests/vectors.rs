//! Cross-language vectors: what the Rust crates compute and sign, written to
//! `contracts/vectors/rust.json`, which the sandbox tests
//! (`contracts/test/vectors.test.js`) feed to the real contracts.
//!
//! This test fails when the committed file differs from what Rust computes
//! now; `KOKON_BLESS=1 cargo test -p kokon-ton --test vectors` rewrites it.

use kokon_money::message::Signable;
use kokon_money::{
    Address, ChannelVoucher, Hash32, Receipt, SecretKey, Signed, TokenUsage, WorkerVoucher,
};
use kokon_ton::cells::{self, Parties};
use kokon_ton::wallet::{self, WalletKind};
use serde_json::json;

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../contracts/vectors/rust.json"
);

fn boc_hex(c: &tonlib_core::cell::ArcCell) -> String {
    let b = tonlib_core::cell::BagOfCells::from_root(c.as_ref().clone());
    hex::encode(b.serialize(false).unwrap())
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes([n; 32])
}

fn vectors() -> serde_json::Value {
    let (client, proxy, worker) = (key(1), key(2), key(3));
    let w = |k: &SecretKey| wallet::address(WalletKind::V4r2, &k.public()).unwrap();
    let network = kokon_ton::Network::Sandbox.id();
    let vault_data = cells::vault_data(&proxy.public(), &w(&proxy), network).unwrap();
    let vault = cells::address_of(&cells::VAULT_CODE, &vault_data).unwrap();
    let parties = Parties {
        client: client.public(),
        proxy: proxy.public(),
        client_wallet: w(&client),
        proxy_wallet: w(&proxy),
        vault,
        seq: 0,
        network,
    };
    let channel_data = cells::channel_data(&parties).unwrap();
    let channel = cells::address_of(&cells::CHANNEL_CODE, &channel_data).unwrap();

    let cv = Signed::sign(
        ChannelVoucher {
            channel,
            amount: 1_000_000_000,
        },
        &client,
    )
    .unwrap();
    let tampered = ChannelVoucher {
        amount: 2_000_000_000,
        ..cv.body
    };
    let wv = Signed::sign(
        WorkerVoucher {
            vault,
            worker: worker.public(),
            amount: 500_000_000,
        },
        &proxy,
    )
    .unwrap();
    let wv_cell = cells::from_bits(&wv.body.cell().unwrap()).unwrap();
    let mut wv_hash = [0u8; 32];
    wv_hash.copy_from_slice(wv_cell.cell_hash().as_slice());
    let consent = cells::body::payout_consent(&wv_hash, &w(&worker)).unwrap();
    let mut consent_hash = [0u8; 32];
    consent_hash.copy_from_slice(consent.cell_hash().as_slice());
    let receipt = Signed::sign(
        Receipt {
            request: Hash32::of(b"request-1"),
            model: Hash32::of(b"model"),
            usage: TokenUsage {
                prompt: 46,
                cached_prompt: 0,
                completion: 12,
                reasoning: 0,
            },
            price_milli: 1000,
            cost: 820,
        },
        &worker,
    )
    .unwrap();
    let signed = |bits: kokon_money::cell::CellBits, sig: &kokon_money::Signature| {
        json!({
            "hash": hex::encode(bits.repr_hash()),
            "boc": boc_hex(&cells::from_bits(&bits).unwrap()),
            "signature": hex::encode(sig.0),
        })
    };
    let addr = |a: &Address| a.to_string();
    json!({
        "about": "Computed and signed by Rust (crates/kokon-ton/tests/vectors.rs); checked against the contracts by contracts/test/vectors.test.js.",
        "keys": {
            "client": {"seed": client.to_hex(), "public": client.public().to_hex()},
            "proxy": {"seed": proxy.to_hex(), "public": proxy.public().to_hex()},
            "worker": {"seed": worker.to_hex(), "public": worker.public().to_hex()},
        },
        "wallets_v4r2": {"client": addr(&w(&client)), "proxy": addr(&w(&proxy)), "worker": addr(&w(&worker))},
        "vault": {"address": addr(&vault), "data": boc_hex(&vault_data)},
        "channel": {"address": addr(&channel), "data": boc_hex(&channel_data), "seq": 0},
        "channel_voucher": {"amount": cv.body.amount.to_string(), "signed": signed(cv.body.cell().unwrap(), &cv.signature)},
        "tampered_channel_voucher": {"amount": tampered.amount.to_string(), "signed": signed(tampered.cell().unwrap(), &cv.signature)},
        "worker_voucher": {"amount": wv.body.amount.to_string(), "signed": signed(wv.body.cell().unwrap(), &wv.signature)},
        "payout": {"pay_to": addr(&w(&worker)), "consent_hash": hex::encode(consent_hash), "signature": hex::encode(worker.sign(&consent_hash).0)},
        "receipt": {"cost": receipt.body.cost.to_string(), "signed": signed(receipt.body.cell().unwrap(), &receipt.signature)},
    })
}

#[test]
fn committed_vectors_match_what_rust_computes() {
    let now = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("KOKON_BLESS").is_some() {
        std::fs::write(PATH, &now).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(PATH)
        .unwrap_or_else(|e| panic!("{PATH}: {e} (KOKON_BLESS=1 writes it)"));
    assert!(
        committed == now,
        "contracts/vectors/rust.json is stale; rerun with KOKON_BLESS=1 and rerun the sandbox tests"
    );
}

#[test]
fn kokon_money_cells_equal_tonlib_cells() {
    // The signing hash kokon-money computes by hand equals tonlib-core's
    // representation hash of the same bits.
    let v = ChannelVoucher {
        channel: Address::new(0, [9; 32]),
        amount: 123_456_789,
    };
    let bits = v.cell().unwrap();
    let c = cells::from_bits(&bits).unwrap();
    assert_eq!(c.cell_hash().as_slice(), bits.repr_hash());
}

#[test]
fn a_channel_and_a_vault_have_one_address_per_network() {
    use kokon_ton::Network;
    let (client, proxy) = (key(1), key(2));
    let w = |k: &SecretKey| wallet::address(WalletKind::V4r2, &k.public()).unwrap();
    let addresses = |network: Network| {
        let vault_data = cells::vault_data(&proxy.public(), &w(&proxy), network.id()).unwrap();
        let vault = cells::address_of(&cells::VAULT_CODE, &vault_data).unwrap();
        let parties = Parties {
            client: client.public(),
            proxy: proxy.public(),
            client_wallet: w(&client),
            proxy_wallet: w(&proxy),
            vault,
            seq: 0,
            network: network.id(),
        };
        let data = cells::channel_data(&parties).unwrap();
        (
            vault,
            cells::address_of(&cells::CHANNEL_CODE, &data).unwrap(),
        )
    };
    let (tv, tc) = addresses(Network::Testnet);
    let (mv, mc) = addresses(Network::Mainnet);
    let (sv, sc) = addresses(Network::Sandbox);
    // A voucher names its channel (or vault): signed on one network, it is
    // for an address that does not exist on another.
    assert!(tv != mv && mv != sv && tv != sv);
    assert!(tc != mc && mc != sc && tc != sc);
}
