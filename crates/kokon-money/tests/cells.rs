//! Our cell layouts and hashes against tonlib-core, an independent TON
//! implementation: the same fields must give the same representation hash,
//! which is what a TON contract's `cell.hash()` returns.

use kokon_money::message::{TAG_CHANNEL_VOUCHER, TAG_RECEIPT, TAG_WORKER_VOUCHER};
use kokon_money::{
    Address, ChannelVoucher, Hash32, PublicKey, Receipt, Signable, TokenUsage, WorkerVoucher,
};
use num_bigint::BigUint;
use proptest::prelude::*;
use tonlib_core::TonAddress;
use tonlib_core::cell::CellBuilder;

fn ton_addr(a: &Address) -> TonAddress {
    TonAddress::new(i32::from(a.workchain), a.hash.into())
}

fn hash(b: &mut CellBuilder) -> [u8; 32] {
    b.build().unwrap().cell_hash().into()
}

fn address() -> impl Strategy<Value = Address> {
    (any::<i8>(), any::<[u8; 32]>()).prop_map(|(wc, h)| Address::new(wc, h))
}

fn coins() -> impl Strategy<Value = u128> {
    prop_oneof![
        Just(0u128),
        0u128..1_000_000,
        0u128..=kokon_money::cell::MAX_COINS
    ]
}

proptest! {
    #[test]
    fn channel_voucher_matches_tonlib(channel in address(), amount in coins()) {
        let ours = ChannelVoucher { channel, amount }.signing_hash().unwrap();
        let theirs = hash(CellBuilder::new()
            .store_u32(32, TAG_CHANNEL_VOUCHER).unwrap()
            .store_raw_address(&ton_addr(&channel)).unwrap()
            .store_coins(&BigUint::from(amount)).unwrap());
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn worker_voucher_matches_tonlib(vault in address(), worker in any::<[u8; 32]>(), amount in coins()) {
        let ours = WorkerVoucher { vault, worker: PublicKey(worker), amount }.signing_hash().unwrap();
        let theirs = hash(CellBuilder::new()
            .store_u32(32, TAG_WORKER_VOUCHER).unwrap()
            .store_raw_address(&ton_addr(&vault)).unwrap()
            .store_slice(&worker).unwrap()
            .store_coins(&BigUint::from(amount)).unwrap());
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn receipt_matches_tonlib(
        request in any::<[u8; 32]>(), model in any::<[u8; 32]>(),
        u in any::<[u64; 4]>(), price in any::<u32>(), cost in coins(),
    ) {
        let usage = TokenUsage { prompt: u[0], cached_prompt: u[1], completion: u[2], reasoning: u[3] };
        let r = Receipt { request: Hash32(request), model: Hash32(model), usage, price_milli: price, cost };
        let theirs = hash(CellBuilder::new()
            .store_u32(32, TAG_RECEIPT).unwrap()
            .store_slice(&request).unwrap()
            .store_slice(&model).unwrap()
            .store_u64(64, u[0]).unwrap()
            .store_u64(64, u[1]).unwrap()
            .store_u64(64, u[2]).unwrap()
            .store_u64(64, u[3]).unwrap()
            .store_u32(32, price).unwrap()
            .store_coins(&BigUint::from(cost)).unwrap());
        prop_assert_eq!(r.signing_hash().unwrap(), theirs);
    }
}
