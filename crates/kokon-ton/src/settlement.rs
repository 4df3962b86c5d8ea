//! `Settlement` on TON: every operation is a message from the acting
//! party's wallet to a Kokon contract, confirmed by following the
//! transactions it caused.
//!
//! Before sending, each operation reads the contracts' state and applies the
//! same pure rule the devnet applies (`kokon_money::ledger`), so a doomed
//! operation fails with the precise `MoneyError` and costs no gas; the
//! contract enforces the rule again on chain.
//!
//! Retries are idempotent: an external message carries the wallet's seqno
//! and an expiry, so sending it again cannot apply it twice, and it is only
//! rebuilt (with a fresh seqno) once the old one has expired unapplied.
//! Claims are cumulative, so a claim that did land fails the second time
//! with `NotAboveLatest`, which the books treat as done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kokon_money::ledger::{self, ChannelRow, ChannelState, VaultRow, Withdrawal};
use kokon_money::message::Signable;
use kokon_money::{
    Address, ChannelVoucher, MoneyError, Nanotons, PublicKey, SecretKey, Signed, WorkerVoucher,
};
use kokon_pay::{BoxFuture, Clock, PayError, Settlement};
use num_bigint::BigUint;
use tonlib_core::cell::ArcCell;

use crate::TonError;
use crate::api::{Stack, Status, TonApi};
use crate::cells::{self, Parties, body};
use crate::submit::Trace;
use crate::wallet::{self, Outgoing, WalletKind};

/// Gas attached to each operation on top of the money it moves. The
/// contracts require at least 0.02 TON; what is not spent returns to the
/// sender (claims, closes) or stays as the contract's reserve (opens).
pub const GAS: Nanotons = 50_000_000;

/// What a wallet keeps for its own fees (deploying itself on first use
/// included) when the backend checks it can afford a message.
pub const WALLET_FEES: Nanotons = 20_000_000;

/// Where and how the backend settles.
#[derive(Clone, Debug)]
pub struct TonConfig {
    pub network: crate::Network,
    /// Root of a toncenter v3 API (or the local sandbox).
    pub endpoint: String,
    pub api_key: Option<String>,
    pub wallet: WalletKind,
    /// The registry (root) contract: lists the proxies whose channels
    /// `channels_of` looks for.
    pub registry: Option<Address>,
    /// Delays new channels and vaults get (the registry's economics).
    pub channel_close_secs: u64,
    pub vault_withdraw_secs: u64,
    /// How long to wait for a message's transactions.
    pub confirm_timeout: Duration,
    /// How often to poll for them.
    pub poll: Duration,
}

impl TonConfig {
    pub fn new(network: crate::Network, endpoint: &str) -> Self {
        Self {
            network,
            endpoint: endpoint.to_string(),
            api_key: None,
            wallet: WalletKind::V4r2,
            registry: None,
            channel_close_secs: 3600,
            vault_withdraw_secs: 3600,
            confirm_timeout: Duration::from_secs(90),
            poll: Duration::from_millis(if network == crate::Network::Sandbox {
                20
            } else {
                1500
            }),
        }
    }
}

/// The TON settlement backend. Cheap to clone.
#[derive(Clone)]
pub struct TonSettlement {
    pub(crate) api: TonApi,
    pub(crate) cfg: TonConfig,
    pub(crate) clock: Arc<dyn Clock>,
    /// One message in flight per wallet (seqnos are sequential).
    pub(crate) locks: Arc<Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>>,
    /// Channels and vaults already proven to be Kokon's (deployed, and at
    /// the address our code and their parties give): that never changes.
    genuine: Arc<Mutex<std::collections::HashSet<Address>>>,
}

impl std::fmt::Debug for TonSettlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TonSettlement")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn big(v: &PublicKey) -> BigUint {
    BigUint::from_bytes_be(&v.0)
}

impl TonSettlement {
    pub fn new(cfg: TonConfig, clock: Arc<dyn Clock>) -> Result<Self, TonError> {
        Ok(Self {
            api: TonApi::new(&cfg.endpoint, cfg.api_key.clone())?,
            cfg,
            clock,
            locks: Arc::default(),
            genuine: Arc::default(),
        })
    }

    pub fn api(&self) -> &TonApi {
        &self.api
    }

    pub fn config(&self) -> &TonConfig {
        &self.cfg
    }

    /// The wallet address that holds `key`'s funds.
    pub fn wallet_of(&self, key: &PublicKey) -> Result<Address, TonError> {
        wallet::address(self.cfg.wallet, key)
    }

    /// The address of the vault owned by `owner`.
    pub fn vault_of(&self, owner: &PublicKey) -> Result<Address, TonError> {
        let data = cells::vault_data(owner, &self.wallet_of(owner)?, self.cfg.network.id())?;
        cells::address_of(&cells::VAULT_CODE, &data)
    }

    fn parties(
        &self,
        client: &PublicKey,
        proxy: &PublicKey,
        seq: u64,
    ) -> Result<Parties, TonError> {
        Ok(Parties {
            client: *client,
            proxy: *proxy,
            client_wallet: self.wallet_of(client)?,
            proxy_wallet: self.wallet_of(proxy)?,
            vault: self.vault_of(proxy)?,
            seq,
            network: self.cfg.network.id(),
        })
    }

    fn channel_init(&self, p: &Parties) -> Result<(ArcCell, Address), TonError> {
        let data = cells::channel_data(p)?;
        let addr = cells::address_of(&cells::CHANNEL_CODE, &data)?;
        Ok((data, addr))
    }

    pub(crate) async fn active(&self, a: &Address) -> Result<bool, TonError> {
        Ok(self.api.account(a).await?.status == Status::Active)
    }

    /// A channel's state, if `id` is a Kokon channel: its address must be
    /// the one our channel code and its recorded parties produce, so a
    /// look-alike contract (other code, another vault) is not one.
    pub async fn read_channel(&self, id: &Address) -> Result<Option<ChannelRow>, TonError> {
        let known = self.is_genuine(id);
        if !known && !self.active(id).await? {
            return Ok(None);
        }
        let mut s = Stack::new(self.api.get(id, "channel", &[]).await?);
        let (client, proxy) = (s.key()?, s.key()?);
        let (deposit, claimed) = (s.u128()?, s.u128()?);
        let (close_delay, deadline, closed) = (s.u64()?, s.u64()?, s.bool()?);
        if !known {
            let mut p = Stack::new(self.api.get(id, "parties", &[]).await?);
            let (_, _, _) = (p.address()?, p.address()?, p.address()?);
            let seq = p.u64()?;
            let (_, expected) = self.channel_init(&self.parties(&client, &proxy, seq)?)?;
            if expected != *id {
                return Err(TonError::Invalid(format!(
                    "{id} is not a Kokon channel (its code or parties differ)"
                )));
            }
            self.mark_genuine(id);
        }
        if close_delay > 0 && close_delay < self.cfg.channel_close_secs.min(u64::from(u32::MAX)) {
            return Err(TonError::Invalid(format!(
                "channel {id} has a close delay of {close_delay} s, below the network's {} s",
                self.cfg.channel_close_secs
            )));
        }
        let state = match (closed, deadline) {
            (true, _) => ChannelState::Closed,
            (false, 0) => ChannelState::Open,
            (false, d) => ChannelState::Closing { deadline: d },
        };
        Ok(Some(ChannelRow {
            id: *id,
            client,
            proxy,
            deposit,
            claimed,
            state,
        }))
    }

    fn is_genuine(&self, id: &Address) -> bool {
        self.genuine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    fn mark_genuine(&self, id: &Address) {
        self.genuine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*id);
    }

    pub async fn read_vault(&self, id: &Address) -> Result<Option<VaultRow>, TonError> {
        if !self.is_genuine(id) && !self.active(id).await? {
            return Ok(None);
        }
        let mut s = Stack::new(self.api.get(id, "vault", &[]).await?);
        let owner = s.key()?;
        let _owner_wallet = s.address()?;
        let delay = s.u64()?;
        let balance = s.u128()?;
        let (pending, not_before) = (s.u128()?, s.u64()?);
        if self.vault_of(&owner)? != *id {
            return Err(TonError::Invalid(format!("{id} is not a Kokon vault")));
        }
        // Workers rely on the delay to claim before the owner withdraws.
        if delay < self.cfg.vault_withdraw_secs.min(u64::from(u32::MAX)) {
            return Err(TonError::Invalid(format!(
                "vault {id} has a withdrawal delay of {delay} s, below the network's {} s",
                self.cfg.vault_withdraw_secs
            )));
        }
        self.mark_genuine(id);
        Ok(Some(VaultRow {
            id: *id,
            owner,
            balance,
            withdrawal: (pending > 0).then_some(Withdrawal {
                amount: pending,
                not_before,
            }),
        }))
    }

    /// The proxies the registry lists (their keys).
    pub async fn registered_proxies(&self) -> Result<Vec<PublicKey>, TonError> {
        let Some(reg) = self.cfg.registry else {
            return Ok(Vec::new());
        };
        Ok(crate::registry::read(&self.api, &reg)
            .await?
            .proxies
            .into_iter()
            .map(|p| p.key)
            .collect())
    }

    /// The registry this settlement reads and writes, if configured.
    fn registry(&self) -> Result<Address, PayError> {
        self.cfg.registry.ok_or_else(|| {
            PayError::Backend("no registry configured: its address is in ton.json".into())
        })
    }

    async fn do_publish_keys(
        &self,
        proxy: &SecretKey,
        record: &kokon_pay::KeyRecord,
    ) -> Result<(), PayError> {
        if record.ohttp.len() > kokon_pay::MAX_PUBLISHED_OHTTP {
            return Err(PayError::KeysTooLarge(record.ohttp.len()));
        }
        let body = body::set_gateway_keys(&proxy.public(), Some(record))?;
        self.send(proxy, Self::outgoing(self.registry()?, GAS, body))
            .await?;
        Ok(())
    }

    /// [`Self::submit`] after checking the wallet can pay for it: a wallet
    /// without the funds would have its message dropped unseen, and the
    /// caller would only learn it when the message expires.
    async fn send(&self, key: &SecretKey, out: Outgoing) -> Result<Trace, PayError> {
        self.check_funds(&key.public(), out.value).await?;
        Ok(self.submit(key, out).await?)
    }

    fn outgoing(to: Address, value: Nanotons, body: ArcCell) -> Outgoing {
        Outgoing {
            to,
            value,
            body,
            init: None,
            bounce: true,
        }
    }

    async fn channel_row(&self, id: &Address) -> Result<ChannelRow, PayError> {
        self.read_channel(id).await?.ok_or(PayError::NoChannel(*id))
    }

    async fn vault_row(&self, id: &Address) -> Result<VaultRow, PayError> {
        self.read_vault(id).await?.ok_or(PayError::NoVault(*id))
    }

    /// Checks the wallet can send `value` and pay its own fees.
    async fn check_funds(&self, key: &PublicKey, value: Nanotons) -> Result<(), PayError> {
        let balance = self.api.account(&self.wallet_of(key)?).await?.balance;
        let needed = value + WALLET_FEES;
        if balance < needed {
            return Err(MoneyError::InsufficientFunds { balance, needed }.into());
        }
        Ok(())
    }

    /// What `key`'s wallet can move into a contract: its balance less the
    /// gas attached and the wallet's own fees. The ledger rules debit this,
    /// so their `InsufficientFunds` covers the fees too and the message
    /// needs no second balance check.
    async fn spendable(&self, key: &PublicKey) -> Result<Nanotons, PayError> {
        let balance = self.api.account(&self.wallet_of(key)?).await?.balance;
        Ok(balance.saturating_sub(GAS + WALLET_FEES))
    }

    async fn count_channels(&self, client: &PublicKey, proxy: &PublicKey) -> Result<u64, TonError> {
        let mut seq = 0;
        loop {
            let (_, addr) = self.channel_init(&self.parties(client, proxy, seq)?)?;
            if self.api.account(&addr).await?.status == Status::Nonexist {
                return Ok(seq);
            }
            seq += 1;
        }
    }

    async fn do_open_channel(
        &self,
        client: &SecretKey,
        proxy: PublicKey,
        amount: Nanotons,
    ) -> Result<ChannelRow, PayError> {
        let vault = self.vault_row(&self.vault_of(&proxy)?).await?;
        let mut balance = self.spendable(&client.public()).await?;
        let seq = self.count_channels(&client.public(), &proxy).await?;
        ledger::open_channel(&mut balance, client.public(), &vault, seq, amount)?;
        let (data, id) = self.channel_init(&self.parties(&client.public(), &proxy, seq)?)?;
        let out = Outgoing {
            init: Some((cells::CHANNEL_CODE.clone(), data)),
            ..Self::outgoing(
                id,
                amount + GAS,
                body::open(amount, self.cfg.channel_close_secs)?,
            )
        };
        self.submit(client, out).await?;
        tracing::info!(channel = %id, amount, "opened a channel on TON");
        self.channel_row(&id).await
    }

    async fn do_claim_channel(
        &self,
        proxy: &SecretKey,
        v: Signed<ChannelVoucher>,
    ) -> Result<Nanotons, PayError> {
        let mut ch = self.channel_row(&v.body.channel).await?;
        let mut vault = self.vault_row(&self.vault_of(&proxy.public())?).await?;
        let delta = ledger::claim_channel(&mut ch, &mut vault, &v, self.clock.now_unix())?;
        let voucher = cells::from_bits(&v.body.cell()?)?;
        let msg = body::claim(&v.signature, &voucher)?;
        match self.send(proxy, Self::outgoing(ch.id, GAS, msg)).await {
            Err(PayError::Backend(e)) => {
                Err(self.explain_channel_claim(e, &v, &proxy.public()).await)
            }
            Err(e) => Err(e),
            Ok(_) => Ok(delta),
        }
    }

    /// After an on-chain refusal, the rule's own error on fresh state (a
    /// claim that raced another one says `NotAboveLatest`).
    async fn explain_channel_claim(
        &self,
        e: String,
        v: &Signed<ChannelVoucher>,
        proxy: &PublicKey,
    ) -> PayError {
        if let (Ok(mut ch), Ok(mut vault)) = (
            self.channel_row(&v.body.channel).await,
            async { self.vault_row(&self.vault_of(proxy)?).await }.await,
        ) && let Err(m) = ledger::claim_channel(&mut ch, &mut vault, v, self.clock.now_unix())
        {
            return m.into();
        }
        PayError::Backend(e)
    }

    async fn do_close_cooperative(
        &self,
        proxy: &SecretKey,
        id: Address,
        last: Option<Signed<ChannelVoucher>>,
    ) -> Result<(Nanotons, Nanotons), PayError> {
        let mut ch = self.channel_row(&id).await?;
        if ch.proxy != proxy.public() {
            return Err(MoneyError::NotAuthorized("channel's proxy").into());
        }
        let mut vault = self.vault_row(&self.vault_of(&proxy.public())?).await?;
        let mut refund_to = 0;
        let out = ledger::close_cooperative(
            &mut ch,
            &mut vault,
            &mut refund_to,
            last.as_ref(),
            self.clock.now_unix(),
        )?;
        let voucher = match &last {
            Some(v) if out.0 > 0 => Some((v.signature, cells::from_bits(&v.body.cell()?)?)),
            _ => None,
        };
        let msg = body::close_cooperative(voucher.as_ref().map(|(s, c)| (s, c)))?;
        self.send(proxy, Self::outgoing(id, GAS, msg)).await?;
        Ok(out)
    }

    async fn do_start_close(
        &self,
        client: &SecretKey,
        id: Address,
    ) -> Result<ChannelRow, PayError> {
        let mut ch = self.channel_row(&id).await?;
        if ch.client != client.public() {
            return Err(MoneyError::NotAuthorized("channel's client").into());
        }
        ledger::start_close(&mut ch, self.clock.now_unix(), self.cfg.channel_close_secs)?;
        self.send(client, Self::outgoing(id, GAS, body::start_close()?))
            .await?;
        self.channel_row(&id).await
    }

    async fn do_finish_close(&self, caller: &SecretKey, id: Address) -> Result<Nanotons, PayError> {
        let mut ch = self.channel_row(&id).await?;
        let mut credited = 0;
        let refund = ledger::finish_close(&mut ch, &mut credited, self.clock.now_unix())?;
        self.send(caller, Self::outgoing(id, GAS, body::finish_close()?))
            .await?;
        Ok(refund)
    }

    async fn do_topup(
        &self,
        client: &SecretKey,
        id: Address,
        amount: Nanotons,
    ) -> Result<ChannelRow, PayError> {
        let mut ch = self.channel_row(&id).await?;
        if ch.client != client.public() {
            return Err(MoneyError::NotAuthorized("channel's client").into());
        }
        let mut balance = self.spendable(&client.public()).await?;
        ledger::topup(&mut balance, &mut ch, amount)?;
        self.submit(
            client,
            Self::outgoing(id, amount + GAS, body::top_up(amount)?),
        )
        .await?;
        self.channel_row(&id).await
    }

    async fn do_vault_deposit(
        &self,
        owner: &SecretKey,
        amount: Nanotons,
    ) -> Result<VaultRow, PayError> {
        let id = self.vault_of(&owner.public())?;
        let existing = self.read_vault(&id).await?;
        let mut row = existing.unwrap_or(VaultRow {
            id,
            owner: owner.public(),
            balance: 0,
            withdrawal: None,
        });
        let mut balance = self.spendable(&owner.public()).await?;
        ledger::vault_deposit(&mut balance, &mut row, amount)?;
        let out = if existing.is_some() {
            Self::outgoing(id, amount + GAS, body::deposit(amount)?)
        } else {
            let owner_wallet = self.wallet_of(&owner.public())?;
            let data = cells::vault_data(&owner.public(), &owner_wallet, self.cfg.network.id())?;
            Outgoing {
                init: Some((cells::VAULT_CODE.clone(), data)),
                ..Self::outgoing(
                    id,
                    amount + GAS,
                    body::open_vault(amount, self.cfg.vault_withdraw_secs)?,
                )
            }
        };
        self.submit(owner, out).await?;
        self.vault_row(&id).await
    }

    async fn do_vault_claim(
        &self,
        worker: &SecretKey,
        v: Signed<WorkerVoucher>,
    ) -> Result<Nanotons, PayError> {
        let mut vault = self.vault_row(&v.body.vault).await?;
        let mut claimed = self
            .worker_claimed_on_chain(&v.body.vault, &worker.public())
            .await?;
        let mut credited = 0;
        let delta = ledger::vault_claim(
            &mut vault,
            &mut claimed,
            &mut credited,
            &v,
            &worker.public(),
        )?;
        let voucher = cells::from_bits(&v.body.cell()?)?;
        let pay_to = self.wallet_of(&worker.public())?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(voucher.cell_hash().as_slice());
        let consent = body::payout_consent(&hash, &pay_to)?;
        let mut consent_hash = [0u8; 32];
        consent_hash.copy_from_slice(consent.cell_hash().as_slice());
        let msg = body::worker_claim(&v.signature, &voucher, &pay_to, &worker.sign(&consent_hash))?;
        self.send(worker, Self::outgoing(v.body.vault, GAS, msg))
            .await?;
        Ok(delta)
    }

    async fn worker_claimed_on_chain(
        &self,
        vault: &Address,
        worker: &PublicKey,
    ) -> Result<Nanotons, TonError> {
        if !self.active(vault).await? {
            return Ok(0);
        }
        Stack::new(self.api.get(vault, "workerClaimed", &[big(worker)]).await?).u128()
    }

    async fn do_request_withdrawal(
        &self,
        owner: &SecretKey,
        amount: Nanotons,
    ) -> Result<Withdrawal, PayError> {
        let id = self.vault_of(&owner.public())?;
        let mut vault = self.vault_row(&id).await?;
        ledger::request_withdrawal(
            &mut vault,
            amount,
            self.clock.now_unix(),
            self.cfg.vault_withdraw_secs,
        )?;
        self.send(
            owner,
            Self::outgoing(id, GAS, body::request_withdrawal(amount)?),
        )
        .await?;
        self.vault_row(&id)
            .await?
            .withdrawal
            .ok_or_else(|| PayError::Backend("withdrawal not recorded on chain".into()))
    }

    async fn do_withdraw(&self, owner: &SecretKey) -> Result<Nanotons, PayError> {
        let id = self.vault_of(&owner.public())?;
        let mut vault = self.vault_row(&id).await?;
        let mut credited = 0;
        let out = ledger::withdraw(&mut vault, &mut credited, self.clock.now_unix())?;
        self.send(owner, Self::outgoing(id, GAS, body::withdraw()?))
            .await?;
        Ok(out)
    }

    async fn do_channels_of(&self, client: PublicKey) -> Result<Vec<ChannelRow>, PayError> {
        let mut out = Vec::new();
        for proxy in self.registered_proxies().await? {
            // Sequence numbers are taken while their address exists at all
            // (as in `count_channels`); only deployed channels are listed.
            for seq in 0.. {
                let (_, id) = self.channel_init(&self.parties(&client, &proxy, seq)?)?;
                if self.api.account(&id).await?.status == Status::Nonexist {
                    break;
                }
                if let Some(row) = self.read_channel(&id).await? {
                    out.push(row);
                }
            }
        }
        Ok(out)
    }
}

impl Settlement for TonSettlement {
    fn vault_address(&self, owner: &PublicKey) -> Result<Address, PayError> {
        Ok(self.vault_of(owner)?)
    }

    fn balance(&self, account: PublicKey) -> BoxFuture<'_, Result<Nanotons, PayError>> {
        Box::pin(async move { Ok(self.api.account(&self.wallet_of(&account)?).await?.balance) })
    }

    fn channel(&self, id: Address) -> BoxFuture<'_, Result<Option<ChannelRow>, PayError>> {
        Box::pin(async move { Ok(self.read_channel(&id).await?) })
    }

    fn channels_of(&self, client: PublicKey) -> BoxFuture<'_, Result<Vec<ChannelRow>, PayError>> {
        Box::pin(self.do_channels_of(client))
    }

    fn vault(&self, id: Address) -> BoxFuture<'_, Result<Option<VaultRow>, PayError>> {
        Box::pin(async move { Ok(self.read_vault(&id).await?) })
    }

    fn worker_claimed(
        &self,
        vault: Address,
        worker: PublicKey,
    ) -> BoxFuture<'_, Result<Nanotons, PayError>> {
        Box::pin(async move { Ok(self.worker_claimed_on_chain(&vault, &worker).await?) })
    }

    fn open_channel<'a>(
        &'a self,
        client: &'a SecretKey,
        proxy: PublicKey,
        amount: Nanotons,
    ) -> BoxFuture<'a, Result<ChannelRow, PayError>> {
        Box::pin(self.do_open_channel(client, proxy, amount))
    }

    fn topup<'a>(
        &'a self,
        client: &'a SecretKey,
        channel: Address,
        amount: Nanotons,
    ) -> BoxFuture<'a, Result<ChannelRow, PayError>> {
        Box::pin(self.do_topup(client, channel, amount))
    }

    fn claim_channel<'a>(
        &'a self,
        proxy: &'a SecretKey,
        v: Signed<ChannelVoucher>,
    ) -> BoxFuture<'a, Result<Nanotons, PayError>> {
        Box::pin(self.do_claim_channel(proxy, v))
    }

    fn close_cooperative<'a>(
        &'a self,
        proxy: &'a SecretKey,
        channel: Address,
        last: Option<Signed<ChannelVoucher>>,
    ) -> BoxFuture<'a, Result<(Nanotons, Nanotons), PayError>> {
        Box::pin(self.do_close_cooperative(proxy, channel, last))
    }

    fn start_close<'a>(
        &'a self,
        client: &'a SecretKey,
        channel: Address,
    ) -> BoxFuture<'a, Result<ChannelRow, PayError>> {
        Box::pin(self.do_start_close(client, channel))
    }

    fn finish_close<'a>(
        &'a self,
        client: &'a SecretKey,
        channel: Address,
    ) -> BoxFuture<'a, Result<Nanotons, PayError>> {
        Box::pin(self.do_finish_close(client, channel))
    }

    fn vault_deposit<'a>(
        &'a self,
        owner: &'a SecretKey,
        amount: Nanotons,
    ) -> BoxFuture<'a, Result<VaultRow, PayError>> {
        Box::pin(self.do_vault_deposit(owner, amount))
    }

    fn vault_claim<'a>(
        &'a self,
        worker: &'a SecretKey,
        v: Signed<WorkerVoucher>,
    ) -> BoxFuture<'a, Result<Nanotons, PayError>> {
        Box::pin(self.do_vault_claim(worker, v))
    }

    fn request_withdrawal<'a>(
        &'a self,
        owner: &'a SecretKey,
        amount: Nanotons,
    ) -> BoxFuture<'a, Result<Withdrawal, PayError>> {
        Box::pin(self.do_request_withdrawal(owner, amount))
    }

    fn withdraw<'a>(&'a self, owner: &'a SecretKey) -> BoxFuture<'a, Result<Nanotons, PayError>> {
        Box::pin(self.do_withdraw(owner))
    }

    fn published_keys(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(PublicKey, kokon_pay::KeyRecord)>, PayError>> {
        Box::pin(
            async move { Ok(crate::registry::read_gateways(&self.api, &self.registry()?).await?) },
        )
    }

    fn publish_keys<'a>(
        &'a self,
        proxy: &'a SecretKey,
        record: &'a kokon_pay::KeyRecord,
    ) -> BoxFuture<'a, Result<(), PayError>> {
        Box::pin(self.do_publish_keys(proxy, record))
    }
}
