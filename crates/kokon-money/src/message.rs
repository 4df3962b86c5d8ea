//! Signed money messages: client vouchers, worker vouchers, receipts.
//!
//! Each is signed over the representation hash of its TON cell (see
//! [`crate::cell`]); the first 32 bits of every cell are a tag that separates
//! the three kinds from each other and from wallet messages.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::MoneyError;
use crate::cell::{CellBits, MAX_COINS};
use crate::keys::{Hash32, PublicKey, SecretKey, Signature};
use crate::price::{Nanotons, TokenUsage};

/// Cell tag of a client → proxy channel voucher ("kvc1").
pub const TAG_CHANNEL_VOUCHER: u32 = 0x6b76_6331;
/// Cell tag of a proxy → worker vault voucher ("kvw1").
pub const TAG_WORKER_VOUCHER: u32 = 0x6b76_7731;
/// Cell tag of a worker's job receipt ("krc1").
pub const TAG_RECEIPT: u32 = 0x6b72_6331;

/// An on-ledger object's address: a TON standard address (workchain, hash).
/// Channels and vaults are contracts on TON; the devnet derives the same shape.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub workchain: i8,
    pub hash: [u8; 32],
}

impl Address {
    pub fn new(workchain: i8, hash: [u8; 32]) -> Self {
        Self { workchain, hash }
    }

    /// Parses the raw form `wc:hex64`.
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        let (wc, h) = s.split_once(':').ok_or(MoneyError::BadAddress)?;
        let workchain = wc.parse::<i8>().map_err(|_| MoneyError::BadAddress)?;
        let hash = PublicKey::from_hex(h)
            .map_err(|_| MoneyError::BadAddress)?
            .0;
        Ok(Self { workchain, hash })
    }

    /// The first 8 hex digits of the hash, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.hash[..4])
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.workchain, hex::encode(self.hash))
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Address::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A message with a fixed cell layout that can be signed.
pub trait Signable {
    /// The cell's data bits, or an error if a field cannot be encoded.
    fn cell(&self) -> Result<CellBits, MoneyError>;

    /// The 32 bytes that get signed: the cell's representation hash.
    fn signing_hash(&self) -> Result<[u8; 32], MoneyError> {
        Ok(self.cell()?.repr_hash())
    }
}

fn coins(amount: Nanotons) -> Result<u128, MoneyError> {
    if amount > MAX_COINS {
        return Err(MoneyError::Overflow);
    }
    Ok(amount)
}

/// The client's promise: the proxy may take `amount` in total from `channel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelVoucher {
    pub channel: Address,
    /// Cumulative nanotons.
    #[serde(with = "u128_string")]
    pub amount: Nanotons,
}

impl Signable for ChannelVoucher {
    fn cell(&self) -> Result<CellBits, MoneyError> {
        Ok(CellBits::new()
            .uint(TAG_CHANNEL_VOUCHER.into(), 32)
            .std_address(self.channel.workchain, &self.channel.hash)
            .coins(coins(self.amount)?))
    }
}

/// The proxy's promise: `worker` may take `amount` in total from `vault`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerVoucher {
    pub vault: Address,
    pub worker: PublicKey,
    /// Cumulative nanotons.
    #[serde(with = "u128_string")]
    pub amount: Nanotons,
}

impl Signable for WorkerVoucher {
    fn cell(&self) -> Result<CellBits, MoneyError> {
        Ok(CellBits::new()
            .uint(TAG_WORKER_VOUCHER.into(), 32)
            .std_address(self.vault.workchain, &self.vault.hash)
            .bytes(&self.worker.0)
            .coins(coins(self.amount)?))
    }
}

/// What a worker did for one job, signed with its attested key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// SHA-256 of the job's request id.
    pub request: Hash32,
    /// SHA-256 of the model the worker ran.
    pub model: Hash32,
    pub usage: TokenUsage,
    /// The worker's price coefficient, in thousandths.
    pub price_milli: u32,
    /// What the worker charges for this job, per the registry's price table.
    #[serde(with = "u128_string")]
    pub cost: Nanotons,
}

impl Signable for Receipt {
    fn cell(&self) -> Result<CellBits, MoneyError> {
        let u = &self.usage;
        Ok(CellBits::new()
            .uint(TAG_RECEIPT.into(), 32)
            .bytes(&self.request.0)
            .bytes(&self.model.0)
            .uint(u.prompt.into(), 64)
            .uint(u.cached_prompt.into(), 64)
            .uint(u.completion.into(), 64)
            .uint(u.reasoning.into(), 64)
            .uint(self.price_milli.into(), 32)
            .coins(coins(self.cost)?))
    }
}

/// A message and its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    #[serde(flatten)]
    pub body: T,
    pub signature: Signature,
}

impl<T: Signable> Signed<T> {
    pub fn sign(body: T, key: &SecretKey) -> Result<Self, MoneyError> {
        let signature = key.sign(&body.signing_hash()?);
        Ok(Self { body, signature })
    }

    /// Checks the signature against `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<&T, MoneyError> {
        key.verify(&self.body.signing_hash()?, &self.signature)?;
        Ok(&self.body)
    }
}

/// JSON numbers lose precision above 2⁵³; amounts travel as decimal strings.
pub mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom("amount must be a decimal string"));
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan() -> Address {
        Address::new(0, [5; 32])
    }

    #[test]
    fn voucher_cell_is_303_bits_plus_amount() {
        let v = ChannelVoucher {
            channel: chan(),
            amount: 1_000_000_000,
        };
        assert_eq!(v.cell().unwrap().len(), 32 + 267 + 4 + 32);
    }

    #[test]
    fn receipt_fits_one_cell() {
        let r = Receipt {
            request: Hash32([1; 32]),
            model: Hash32([2; 32]),
            usage: TokenUsage {
                prompt: u64::MAX,
                cached_prompt: u64::MAX,
                completion: u64::MAX,
                reasoning: u64::MAX,
            },
            price_milli: u32::MAX,
            cost: MAX_COINS,
        };
        assert!(r.cell().unwrap().len() <= crate::cell::MAX_BITS);
        assert_eq!(
            Receipt {
                cost: MAX_COINS + 1,
                ..r
            }
            .cell(),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn signed_round_trip_and_tamper() {
        let k = SecretKey::from_bytes([3; 32]);
        let s = Signed::sign(
            ChannelVoucher {
                channel: chan(),
                amount: 42,
            },
            &k,
        )
        .unwrap();
        s.verify(&k.public()).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"amount\":\"42\""), "{json}");
        let back: Signed<ChannelVoucher> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let mut forged = s;
        forged.body.amount = 43;
        assert_eq!(forged.verify(&k.public()), Err(MoneyError::BadSignature));
    }

    #[test]
    fn kinds_do_not_collide() {
        // A voucher signature is never valid as a worker voucher or receipt:
        // the tags differ, so the hashes differ.
        let v = ChannelVoucher {
            channel: chan(),
            amount: 7,
        };
        let w = WorkerVoucher {
            vault: chan(),
            worker: PublicKey([0; 32]),
            amount: 7,
        };
        assert_ne!(v.signing_hash().unwrap(), w.signing_hash().unwrap());
    }

    #[test]
    fn address_parse() {
        let a = Address::parse(&format!("-1:{}", "ab".repeat(32))).unwrap();
        assert_eq!(a.workchain, -1);
        assert_eq!(Address::parse(&a.to_string()).unwrap(), a);
        assert!(Address::parse("0:zz").is_err());
        assert!(Address::parse("nocolon").is_err());
        assert!(
            serde_json::from_str::<ChannelVoucher>(&format!(
                "{{\"channel\":\"{a}\",\"amount\":\"-1\"}}"
            ))
            .is_err()
        );
    }
}
