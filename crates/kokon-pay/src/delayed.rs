//! A settlement backend whose every call takes a fixed extra time: a
//! devnet (or any ledger) behaving like a slow chain. Benchmarks and tests
//! use it to show that money I/O stays off the hot path (a claim on TON
//! waits seconds for its trace; admission and billing must not).

use std::sync::Arc;
use std::time::Duration;

use kokon_money::ledger::{ChannelRow, VaultRow, Withdrawal};
use kokon_money::{Address, ChannelVoucher, Nanotons, PublicKey, SecretKey, Signed, WorkerVoucher};

use crate::settlement::BoxFuture;
use crate::{KeyRecord, PayError, Settlement};

type R<'a, T> = BoxFuture<'a, Result<T, PayError>>;

/// `inner`, with `delay` added before every call.
pub struct Delayed {
    inner: Arc<dyn Settlement>,
    delay: Duration,
}

impl Delayed {
    pub fn new(inner: Arc<dyn Settlement>, delay: Duration) -> Self {
        Self { inner, delay }
    }

    fn after<'a, T: Send + 'a>(&'a self, call: R<'a, T>) -> R<'a, T> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            call.await
        })
    }
}

impl Settlement for Delayed {
    fn vault_address(&self, owner: &PublicKey) -> Result<Address, PayError> {
        self.inner.vault_address(owner)
    }
    fn balance(&self, account: PublicKey) -> R<'_, Nanotons> {
        self.after(self.inner.balance(account))
    }
    fn channel(&self, id: Address) -> R<'_, Option<ChannelRow>> {
        self.after(self.inner.channel(id))
    }
    fn channels_of(&self, client: PublicKey) -> R<'_, Vec<ChannelRow>> {
        self.after(self.inner.channels_of(client))
    }
    fn vault(&self, id: Address) -> R<'_, Option<VaultRow>> {
        self.after(self.inner.vault(id))
    }
    fn worker_claimed(&self, vault: Address, worker: PublicKey) -> R<'_, Nanotons> {
        self.after(self.inner.worker_claimed(vault, worker))
    }
    fn open_channel<'a>(
        &'a self,
        client: &'a SecretKey,
        proxy: PublicKey,
        amount: Nanotons,
    ) -> R<'a, ChannelRow> {
        self.after(self.inner.open_channel(client, proxy, amount))
    }
    fn topup<'a>(
        &'a self,
        client: &'a SecretKey,
        channel: Address,
        amount: Nanotons,
    ) -> R<'a, ChannelRow> {
        self.after(self.inner.topup(client, channel, amount))
    }
    fn claim_channel<'a>(
        &'a self,
        proxy: &'a SecretKey,
        v: Signed<ChannelVoucher>,
    ) -> R<'a, Nanotons> {
        self.after(self.inner.claim_channel(proxy, v))
    }
    fn close_cooperative<'a>(
        &'a self,
        proxy: &'a SecretKey,
        channel: Address,
        last: Option<Signed<ChannelVoucher>>,
    ) -> R<'a, (Nanotons, Nanotons)> {
        self.after(self.inner.close_cooperative(proxy, channel, last))
    }
    fn start_close<'a>(&'a self, client: &'a SecretKey, channel: Address) -> R<'a, ChannelRow> {
        self.after(self.inner.start_close(client, channel))
    }
    fn finish_close<'a>(&'a self, client: &'a SecretKey, channel: Address) -> R<'a, Nanotons> {
        self.after(self.inner.finish_close(client, channel))
    }
    fn vault_deposit<'a>(&'a self, owner: &'a SecretKey, amount: Nanotons) -> R<'a, VaultRow> {
        self.after(self.inner.vault_deposit(owner, amount))
    }
    fn vault_claim<'a>(
        &'a self,
        worker: &'a SecretKey,
        v: Signed<WorkerVoucher>,
    ) -> R<'a, Nanotons> {
        self.after(self.inner.vault_claim(worker, v))
    }
    fn request_withdrawal<'a>(
        &'a self,
        owner: &'a SecretKey,
        amount: Nanotons,
    ) -> R<'a, Withdrawal> {
        self.after(self.inner.request_withdrawal(owner, amount))
    }
    fn withdraw<'a>(&'a self, owner: &'a SecretKey) -> R<'a, Nanotons> {
        self.after(self.inner.withdraw(owner))
    }
    fn published_keys(&self) -> R<'_, Vec<(PublicKey, KeyRecord)>> {
        self.after(self.inner.published_keys())
    }
    fn publish_keys<'a>(&'a self, proxy: &'a SecretKey, record: &'a KeyRecord) -> R<'a, ()> {
        self.after(self.inner.publish_keys(proxy, record))
    }
}
