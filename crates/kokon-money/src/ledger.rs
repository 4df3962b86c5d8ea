//! Settlement rules: what a ledger (the devnet's SQLite, TON contracts)
//! does with deposits, vouchers, closes and withdrawals.
//!
//! Each operation takes the rows it touches and either changes them all or
//! none (it checks everything before writing). A backend loads the rows,
//! applies the operation and stores them atomically.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::MoneyError;
use crate::channel::{ChannelTerms, check_voucher};
use crate::keys::PublicKey;
use crate::message::{Address, ChannelVoucher, Signed, WorkerVoucher};
use crate::price::Nanotons;
use crate::vault::check_worker_voucher;

/// The address of the `seq`-th channel from `client` to the vault of `proxy`.
pub fn channel_address(client: &PublicKey, proxy: &PublicKey, seq: u64) -> Address {
    let mut h = Sha256::new();
    h.update(b"kokon/channel/v1");
    h.update(client.0);
    h.update(proxy.0);
    h.update(seq.to_be_bytes());
    Address::new(0, h.finalize().into())
}

/// The address of the vault owned by `owner`.
pub fn vault_address(owner: &PublicKey) -> Address {
    let mut h = Sha256::new();
    h.update(b"kokon/vault/v1");
    h.update(owner.0);
    Address::new(0, h.finalize().into())
}

/// Lifecycle of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ChannelState {
    Open,
    /// A unilateral close by the client; the proxy may claim until `deadline`.
    Closing {
        deadline: u64,
    },
    Closed,
}

/// A channel as the ledger holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRow {
    pub id: Address,
    pub client: PublicKey,
    /// The proxy (vault owner) this channel pays.
    pub proxy: PublicKey,
    #[serde(with = "crate::message::u128_string")]
    pub deposit: Nanotons,
    /// What the proxy has claimed so far (cumulative voucher amount).
    #[serde(with = "crate::message::u128_string")]
    pub claimed: Nanotons,
    #[serde(flatten)]
    pub state: ChannelState,
}

impl ChannelRow {
    pub fn terms(&self) -> ChannelTerms {
        ChannelTerms {
            id: self.id,
            client: self.client,
            deposit: self.deposit,
            open: self.state == ChannelState::Open,
        }
    }

    /// Money still in the channel.
    pub fn balance(&self) -> Nanotons {
        match self.state {
            ChannelState::Closed => 0,
            _ => self.deposit - self.claimed,
        }
    }
}

/// A pending withdrawal by the vault owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    #[serde(with = "crate::message::u128_string")]
    pub amount: Nanotons,
    /// Unix seconds after which it may execute.
    pub not_before: u64,
}

/// A proxy's vault as the ledger holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultRow {
    pub id: Address,
    pub owner: PublicKey,
    #[serde(with = "crate::message::u128_string")]
    pub balance: Nanotons,
    pub withdrawal: Option<Withdrawal>,
}

fn debit(account: &mut Nanotons, amount: Nanotons) -> Result<(), MoneyError> {
    if amount == 0 {
        return Err(MoneyError::ZeroAmount);
    }
    if *account < amount {
        return Err(MoneyError::InsufficientFunds {
            balance: *account,
            needed: amount,
        });
    }
    *account -= amount;
    Ok(())
}

/// Opens the `seq`-th channel from `client` (paying from `payer`) to `vault`.
pub fn open_channel(
    payer: &mut Nanotons,
    client: PublicKey,
    vault: &VaultRow,
    seq: u64,
    amount: Nanotons,
) -> Result<ChannelRow, MoneyError> {
    debit(payer, amount)?;
    Ok(ChannelRow {
        id: channel_address(&client, &vault.owner, seq),
        client,
        proxy: vault.owner,
        deposit: amount,
        claimed: 0,
        state: ChannelState::Open,
    })
}

/// Adds to an open channel's deposit.
pub fn topup(
    payer: &mut Nanotons,
    ch: &mut ChannelRow,
    amount: Nanotons,
) -> Result<(), MoneyError> {
    if ch.state != ChannelState::Open {
        return Err(MoneyError::ChannelNotOpen);
    }
    let deposit = ch.deposit.checked_add(amount).ok_or(MoneyError::Overflow)?;
    debit(payer, amount)?;
    ch.deposit = deposit;
    Ok(())
}

/// The proxy claims a client voucher: the increase moves into its vault.
/// Claiming the same voucher twice fails the second time with
/// `NotAboveLatest`, so a retried claim never credits twice.
pub fn claim_channel(
    ch: &mut ChannelRow,
    vault: &mut VaultRow,
    v: &Signed<ChannelVoucher>,
    now: u64,
) -> Result<Nanotons, MoneyError> {
    match ch.state {
        ChannelState::Closed => return Err(MoneyError::ChannelNotOpen),
        ChannelState::Closing { deadline } if now >= deadline => return Err(MoneyError::DelayOver),
        _ => {}
    }
    if vault.owner != ch.proxy {
        return Err(MoneyError::NotAuthorized("channel's proxy"));
    }
    let amount = check_voucher(v, &ch.terms_any_state(), ch.claimed)?.amount;
    let delta = amount - ch.claimed;
    ch.claimed = amount;
    vault.balance += delta;
    Ok(delta)
}

impl ChannelRow {
    fn terms_any_state(&self) -> ChannelTerms {
        ChannelTerms {
            open: true,
            ..self.terms()
        }
    }
}

/// The client starts a unilateral close; the proxy has `delay` seconds to claim.
pub fn start_close(ch: &mut ChannelRow, now: u64, delay: u64) -> Result<(), MoneyError> {
    if ch.state != ChannelState::Open {
        return Err(MoneyError::ChannelNotOpen);
    }
    ch.state = ChannelState::Closing {
        deadline: now.saturating_add(delay),
    };
    Ok(())
}

/// After the delay, the rest of the deposit returns to the client.
pub fn finish_close(
    ch: &mut ChannelRow,
    client_account: &mut Nanotons,
    now: u64,
) -> Result<Nanotons, MoneyError> {
    let ChannelState::Closing { deadline } = ch.state else {
        return Err(MoneyError::NotClosing);
    };
    if now < deadline {
        return Err(MoneyError::DelayNotOver {
            remaining: deadline - now,
        });
    }
    let refund = ch.balance();
    ch.state = ChannelState::Closed;
    *client_account += refund;
    Ok(refund)
}

/// The proxy closes at once (it is the party an early close could hurt),
/// claiming `last` if given; the rest returns to the client.
pub fn close_cooperative(
    ch: &mut ChannelRow,
    vault: &mut VaultRow,
    client_account: &mut Nanotons,
    last: Option<&Signed<ChannelVoucher>>,
    now: u64,
) -> Result<(Nanotons, Nanotons), MoneyError> {
    let (mut ch2, mut vault2) = (*ch, *vault);
    let claimed = match last {
        Some(v) => match claim_channel(&mut ch2, &mut vault2, v, now) {
            Ok(d) => d,
            Err(MoneyError::NotAboveLatest { .. }) => 0,
            Err(e) => return Err(e),
        },
        None => 0,
    };
    if ch2.state == ChannelState::Closed {
        return Err(MoneyError::ChannelNotOpen);
    }
    let refund = ch2.balance();
    ch2.state = ChannelState::Closed;
    *client_account += refund;
    (*ch, *vault) = (ch2, vault2);
    Ok((claimed, refund))
}

/// Adds to a vault (the proxy's stake).
pub fn vault_deposit(
    payer: &mut Nanotons,
    vault: &mut VaultRow,
    amount: Nanotons,
) -> Result<(), MoneyError> {
    debit(payer, amount)?;
    vault.balance += amount;
    Ok(())
}

/// A worker claims a proxy-signed voucher; `claimed` is what this worker has
/// been paid from this vault so far. Pays the increase into `worker_account`.
pub fn vault_claim(
    vault: &mut VaultRow,
    claimed: &mut Nanotons,
    worker_account: &mut Nanotons,
    v: &Signed<WorkerVoucher>,
    worker: &PublicKey,
) -> Result<Nanotons, MoneyError> {
    let amount = check_worker_voucher(v, vault.id, &vault.owner, worker, *claimed)?.amount;
    let delta = amount - *claimed;
    if vault.balance < delta {
        return Err(MoneyError::VaultShort {
            balance: vault.balance,
            needed: delta,
        });
    }
    vault.balance -= delta;
    *claimed = amount;
    *worker_account += delta;
    Ok(delta)
}

/// The owner asks to withdraw `amount` after `delay` seconds.
pub fn request_withdrawal(
    vault: &mut VaultRow,
    amount: Nanotons,
    now: u64,
    delay: u64,
) -> Result<Withdrawal, MoneyError> {
    if amount == 0 {
        return Err(MoneyError::ZeroAmount);
    }
    let w = Withdrawal {
        amount,
        not_before: now.saturating_add(delay),
    };
    vault.withdrawal = Some(w);
    Ok(w)
}

/// Executes the pending withdrawal once its delay has passed.
pub fn withdraw(
    vault: &mut VaultRow,
    owner_account: &mut Nanotons,
    now: u64,
) -> Result<Nanotons, MoneyError> {
    let w = vault.withdrawal.ok_or(MoneyError::NoWithdrawal)?;
    if now < w.not_before {
        return Err(MoneyError::DelayNotOver {
            remaining: w.not_before - now,
        });
    }
    if vault.balance < w.amount {
        return Err(MoneyError::VaultShort {
            balance: vault.balance,
            needed: w.amount,
        });
    }
    vault.balance -= w.amount;
    vault.withdrawal = None;
    *owner_account += w.amount;
    Ok(w.amount)
}
