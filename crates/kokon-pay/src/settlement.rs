//! The interface every settlement backend implements.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use kokon_attest::Clock;

use kokon_money::ledger::{ChannelRow, VaultRow, Withdrawal};
use kokon_money::{Address, ChannelVoucher, Nanotons, PublicKey, SecretKey, Signed, WorkerVoucher};

use crate::PayError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type R<'a, T> = BoxFuture<'a, Result<T, PayError>>;

/// A ledger that holds accounts, channels and vaults and applies the rules
/// of `kokon_money::ledger`. Keys passed in sign (or, on the devnet,
/// authorise) the operation as that party.
///
/// Claims are idempotent by construction: a voucher already settled fails
/// with `MoneyError::NotAboveLatest` and moves nothing.
pub trait Settlement: Send + Sync + 'static {
    /// Where the vault of `owner` lives. On the devnet a hash of the key; on
    /// TON the address of the vault contract's initial state.
    fn vault_address(&self, owner: &PublicKey) -> Result<Address, PayError> {
        Ok(kokon_money::ledger::vault_address(owner))
    }

    /// Free balance of an account (wallet).
    fn balance(&self, account: PublicKey) -> R<'_, Nanotons>;
    fn channel(&self, id: Address) -> R<'_, Option<ChannelRow>>;
    /// Channels opened by `client`, oldest first.
    fn channels_of(&self, client: PublicKey) -> R<'_, Vec<ChannelRow>>;
    fn vault(&self, id: Address) -> R<'_, Option<VaultRow>>;
    /// What `worker` has been paid from `vault` so far.
    fn worker_claimed(&self, vault: Address, worker: PublicKey) -> R<'_, Nanotons>;

    /// Opens a new channel from `client` to the vault of `proxy`.
    fn open_channel<'a>(
        &'a self,
        client: &'a SecretKey,
        proxy: PublicKey,
        amount: Nanotons,
    ) -> R<'a, ChannelRow>;
    fn topup<'a>(
        &'a self,
        client: &'a SecretKey,
        channel: Address,
        amount: Nanotons,
    ) -> R<'a, ChannelRow>;
    /// The proxy claims a client voucher into its vault; returns the increase.
    fn claim_channel<'a>(
        &'a self,
        proxy: &'a SecretKey,
        v: Signed<ChannelVoucher>,
    ) -> R<'a, Nanotons>;
    /// The proxy closes a channel now, claiming `last` first; returns (claimed, refunded).
    fn close_cooperative<'a>(
        &'a self,
        proxy: &'a SecretKey,
        channel: Address,
        last: Option<Signed<ChannelVoucher>>,
    ) -> R<'a, (Nanotons, Nanotons)>;
    /// The client starts a unilateral close.
    fn start_close<'a>(&'a self, client: &'a SecretKey, channel: Address) -> R<'a, ChannelRow>;
    /// After the delay: refunds the rest to the client.
    fn finish_close<'a>(&'a self, client: &'a SecretKey, channel: Address) -> R<'a, Nanotons>;

    /// Adds to the vault of `owner`, creating it on first use.
    fn vault_deposit<'a>(&'a self, owner: &'a SecretKey, amount: Nanotons) -> R<'a, VaultRow>;
    /// A worker claims a proxy-signed voucher; returns the increase.
    fn vault_claim<'a>(
        &'a self,
        worker: &'a SecretKey,
        v: Signed<WorkerVoucher>,
    ) -> R<'a, Nanotons>;
    fn request_withdrawal<'a>(
        &'a self,
        owner: &'a SecretKey,
        amount: Nanotons,
    ) -> R<'a, Withdrawal>;
    fn withdraw<'a>(&'a self, owner: &'a SecretKey) -> R<'a, Nanotons>;

    /// What each proxy published of the keys its gateway hands out, by
    /// proxy key (the registry's `gateways`; docs/VPN.md, "Key consistency").
    fn published_keys(&self) -> R<'_, Vec<(PublicKey, KeyRecord)>>;
    /// Publishes `record` as what the proxy `proxy` hands out now, in place
    /// of what it published before. On TON only a proxy the registry lists
    /// may, from its own wallet.
    fn publish_keys<'a>(&'a self, proxy: &'a SecretKey, record: &'a KeyRecord) -> R<'a, ()>;
}

/// Largest `application/ohttp-keys` body a proxy publishes (about twenty
/// configurations; Kokon's gateways hold two).
pub const MAX_PUBLISHED_OHTTP: usize = 1024;

/// The keys a proxy's gateway hands out to everyone, as it publishes them
/// in the registry so that each client can check it was given the same
/// keys as all others: a key handed to one client alone would name that
/// client's requests (OHTTP) or its tokens (credits).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRecord {
    /// The `application/ohttp-keys` body its gateway serves (at most
    /// [`MAX_PUBLISHED_OHTTP`] bytes); empty: it runs no gateway.
    pub ohttp: Vec<u8>,
    /// `kokon_credit::PublicKeys::fingerprint` of its credit issuer; `None`:
    /// it sells no credits.
    pub credits: Option<[u8; 32]>,
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicU64);

impl ManualClock {
    pub fn new(now: u64) -> Self {
        Self(AtomicU64::new(now))
    }

    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
