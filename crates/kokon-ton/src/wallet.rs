//! Standard TON wallets for Kokon's Ed25519 keys.
//!
//! A Kokon key (the 32-byte Ed25519 seed a daemon keeps) is also a TON wallet
//! key: its wallet is the standard v4r2 or v5r1 contract for that public key,
//! so the same funds show up in Tonkeeper or any other wallet app. A key can
//! come from a 24-word TON mnemonic ([`key_from_mnemonic`]).

use std::sync::Arc;

use kokon_money::{Address, Nanotons, PublicKey, SecretKey};
use num_bigint::BigUint;
use tonlib_core::cell::{ArcCell, Cell, TonCellError};
use tonlib_core::tlb_types::block::coins::{CurrencyCollection, Grams};
use tonlib_core::tlb_types::block::message::{CommonMsgInfo, IntMsgInfo, Message};
use tonlib_core::tlb_types::block::msg_address::MsgAddress;
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::wallet::mnemonic::{KeyPair, Mnemonic};
use tonlib_core::wallet::ton_wallet::TonWallet;
use tonlib_core::wallet::wallet_version::WalletVersion;

use crate::TonError;
use crate::cells::{kokon_address, ton_address};

/// Which standard wallet contract holds a key's funds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalletKind {
    #[default]
    V4r2,
    V5r1,
}

impl std::str::FromStr for WalletKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v4r2" => Ok(Self::V4r2),
            "v5r1" => Ok(Self::V5r1),
            _ => Err(format!("unknown wallet `{s}` (v4r2 or v5r1)")),
        }
    }
}

impl WalletKind {
    fn version(self) -> WalletVersion {
        match self {
            Self::V4r2 => WalletVersion::V4R2,
            Self::V5r1 => WalletVersion::V5R1,
        }
    }
}

/// The Kokon key of a 24-word TON mnemonic (as wallet apps derive it).
pub fn key_from_mnemonic(phrase: &str) -> Result<SecretKey, TonError> {
    let words: Vec<&str> = phrase.split_whitespace().collect();
    if words.len() != 24 {
        return Err(TonError::Mnemonic(format!(
            "expected 24 words, got {}",
            words.len()
        )));
    }
    let pair = Mnemonic::new(words, &None)
        .and_then(|m| m.to_key_pair())
        .map_err(|e| TonError::Mnemonic(e.to_string()))?;
    let seed: [u8; 32] = pair.secret_key[..32]
        .try_into()
        .map_err(|_| TonError::Mnemonic("derived key is not 32 bytes".into()))?;
    Ok(SecretKey::from_bytes(seed))
}

fn key_pair_of_public(public: &PublicKey) -> KeyPair {
    // Only the public half is needed for the address.
    KeyPair {
        public_key: public.0.to_vec(),
        secret_key: Vec::new(),
    }
}

/// The wallet of `key` (its address is all a reader needs).
pub fn address(kind: WalletKind, key: &PublicKey) -> Result<Address, TonError> {
    let w = TonWallet::new(kind.version(), key_pair_of_public(key))?;
    Ok(kokon_address(&w.address))
}

/// A wallet that can sign: builds its external messages.
pub struct Wallet {
    inner: TonWallet,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

/// One internal message a wallet sends.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub to: Address,
    pub value: Nanotons,
    pub body: ArcCell,
    /// Code and data, to deploy the destination.
    pub init: Option<(ArcCell, ArcCell)>,
    pub bounce: bool,
}

impl Wallet {
    pub fn new(kind: WalletKind, key: &SecretKey) -> Result<Self, TonError> {
        let public = key.public();
        let mut secret = key.to_bytes().to_vec();
        secret.extend_from_slice(&public.0);
        let pair = KeyPair {
            public_key: public.0.to_vec(),
            secret_key: secret,
        };
        Ok(Self {
            inner: TonWallet::new(kind.version(), pair)?,
        })
    }

    pub fn address(&self) -> Address {
        kokon_address(&self.inner.address)
    }

    /// A signed external message carrying `out`; deploys the wallet itself
    /// when `seqno` is 0.
    pub fn external(&self, seqno: u32, expire_at: u32, out: &Outgoing) -> Result<Cell, TonError> {
        let msg = internal(out)?;
        Ok(self
            .inner
            .create_external_msg(expire_at, seqno, seqno == 0, [msg])?)
    }
}

fn internal(out: &Outgoing) -> Result<ArcCell, TonCellError> {
    let info = CommonMsgInfo::Int(IntMsgInfo {
        ihr_disabled: true,
        bounce: out.bounce,
        bounced: false,
        src: MsgAddress::NONE,
        dest: ton_address(&out.to).to_msg_address(),
        value: CurrencyCollection::new(BigUint::from(out.value)),
        ihr_fee: Grams::new(BigUint::ZERO),
        fwd_fee: Grams::new(BigUint::ZERO),
        created_lt: 0,
        created_at: 0,
    });
    let mut msg = Message::new(info, out.body.clone());
    if let Some((code, data)) = &out.init {
        msg.with_state_init(StateInit::new(code.clone(), data.clone()));
    }
    Ok(Arc::new(msg.to_cell()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    // tonlib-core's own test mnemonic and the v4r2 address wallet apps show for it.
    const PHRASE: &str = "fancy carpet hello mandate penalty trial consider property top vicious exit rebuild tragic profit urban major total month holiday sudden rib gather media vicious";

    #[test]
    fn mnemonic_gives_the_wallet_apps_key() {
        let key = key_from_mnemonic(PHRASE).unwrap();
        let w = Wallet::new(WalletKind::V4r2, &key).unwrap();
        assert_eq!(
            w.address(),
            address(WalletKind::V4r2, &key.public()).unwrap()
        );
        let shown: tonlib_core::TonAddress = "EQCDM_QGggZ3qMa_f3lRPk4_qLDnLTqdi6OkMAV2NB9r5TG3"
            .parse()
            .unwrap();
        assert_eq!(w.address(), kokon_address(&shown));
        assert_ne!(
            address(WalletKind::V4r2, &key.public()).unwrap(),
            address(WalletKind::V5r1, &key.public()).unwrap()
        );
    }

    #[test]
    fn mnemonic_of_wrong_length_is_refused() {
        assert!(matches!(
            key_from_mnemonic("fancy carpet"),
            Err(TonError::Mnemonic(_))
        ));
    }
}
