//! The issuer's keys (one RSA-2048 key per denomination) and what the
//! client does with their public halves: blind, unblind, verify.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blind_rsa_signatures::{
    BlindMessage, BlindSignature, BlindingResult, DefaultRng, KeyPairSha384PSSDeterministic,
    PublicKeySha384PSSDeterministic, Secret, SecretKeySha384PSSDeterministic, Signature,
};
use sha2::{Digest, Sha256};

use crate::wire::{NK, Token, TokenChallenge, TokenRequest, TokenResponse};
use crate::{CreditError, Nanotons, Schedule};

type RsaKeyPair = KeyPairSha384PSSDeterministic;
type RsaPublic = PublicKeySha384PSSDeterministic;
type RsaSecret = SecretKeySha384PSSDeterministic;

/// Attempts at a key set whose truncated key ids (one byte) all differ.
const KEYGEN_ATTEMPTS: usize = 64;

fn keys_err(e: impl std::fmt::Display) -> CreditError {
    CreditError::Keys(e.to_string())
}

/// The `token_key_id` of a public key: SHA-256 of its SPKI (RSASSA-PSS OID).
pub fn key_id(spki: &[u8]) -> [u8; 32] {
    Sha256::digest(spki).into()
}

/// One denomination's public key.
#[derive(Clone, Debug)]
struct PublicEntry {
    spki: Vec<u8>,
    id: [u8; 32],
    key: RsaPublic,
}

impl PublicEntry {
    fn new(key: RsaPublic) -> Result<Self, CreditError> {
        let spki = key.to_spki().map_err(keys_err)?;
        Ok(Self {
            id: key_id(&spki),
            spki,
            key,
        })
    }

    fn truncated(&self) -> u8 {
        self.id[31]
    }
}

/// `GET credits/keys`: an issuer's name, unit and one public key (SPKI,
/// base64) per denomination, the smallest first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysDocument {
    pub issuer: String,
    /// Nanotons, decimal.
    pub unit: String,
    pub keys: Vec<String>,
}

/// An issuer's published keys, as clients use them.
#[derive(Clone, Debug)]
pub struct PublicKeys {
    issuer: String,
    schedule: Schedule,
    challenge_digest: [u8; 32],
    keys: Vec<PublicEntry>,
}

impl PublicKeys {
    fn new(issuer: &str, unit: Nanotons, keys: Vec<PublicEntry>) -> Result<Self, CreditError> {
        let levels = u8::try_from(keys.len()).map_err(|_| keys_err("too many keys"))?;
        let schedule = Schedule { unit, levels };
        schedule.check()?;
        let mut truncated: Vec<u8> = keys.iter().map(PublicEntry::truncated).collect();
        truncated.sort_unstable();
        truncated.dedup();
        if truncated.len() != keys.len() {
            return Err(keys_err("two denominations share a truncated key id"));
        }
        if issuer.is_empty() || issuer.len() > 256 {
            return Err(keys_err("the issuer name must be 1 to 256 bytes"));
        }
        Ok(Self {
            issuer: issuer.to_string(),
            schedule,
            challenge_digest: TokenChallenge::for_issuer(issuer).digest(),
            keys,
        })
    }

    /// Reads a published document; every key must be an RSA-2048 PSS key.
    pub fn from_document(doc: &KeysDocument) -> Result<Self, CreditError> {
        let unit = doc
            .unit
            .parse()
            .map_err(|_| keys_err("the unit is not a number of nanotons"))?;
        let mut keys = Vec::with_capacity(doc.keys.len());
        for k in doc.keys.iter().take(usize::from(crate::MAX_LEVELS) + 1) {
            let spki = B64.decode(k).map_err(|_| keys_err("a key is not base64"))?;
            let key = RsaPublic::from_spki(&spki).map_err(keys_err)?;
            if key.components().n().len() != NK {
                return Err(keys_err("a key is not 2048-bit"));
            }
            keys.push(PublicEntry::new(key)?);
        }
        Self::new(&doc.issuer, unit, keys)
    }

    pub fn document(&self) -> KeysDocument {
        KeysDocument {
            issuer: self.issuer.clone(),
            unit: self.schedule.unit.to_string(),
            keys: self.keys.iter().map(|k| B64.encode(&k.spki)).collect(),
        }
    }

    /// What the proxy publishes in the registry for these keys (so each
    /// client checks it pins the keys everyone else was given): SHA-256 of
    /// a context string, the issuer name, the unit and every key's id, in
    /// denomination order, each length-prefixed.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"kokon credit keys v1\0");
        for part in [self.issuer.as_bytes(), &self.schedule.unit.to_be_bytes()] {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part);
        }
        for k in &self.keys {
            h.update(k.id);
        }
        h.finalize().into()
    }

    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The denomination whose key has this truncated id.
    pub fn level_of(&self, truncated: u8) -> Option<u8> {
        let i = self.keys.iter().position(|k| k.truncated() == truncated)?;
        u8::try_from(i).ok()
    }

    fn entry(&self, level: u8) -> Result<&PublicEntry, CreditError> {
        self.keys
            .get(usize::from(level))
            .ok_or(CreditError::NoSuchLevel {
                level,
                levels: self.schedule.levels,
            })
    }

    /// A fresh, blinded request for one token of `level`.
    pub fn blind(&self, level: u8) -> Result<Blinded, CreditError> {
        let entry = self.entry(level)?;
        let mut nonce = [0u8; 32];
        rand_fill(&mut nonce);
        let input = Token::input(&nonce, &self.challenge_digest, &entry.id);
        let b = entry
            .key
            .blind(&mut DefaultRng, &input)
            .map_err(|_| CreditError::BadIssuance)?;
        Ok(Blinded {
            level,
            nonce,
            secret: b.secret.0,
            request: TokenRequest {
                truncated_token_key_id: entry.truncated(),
                blinded_msg: b.blind_message.0,
            },
        })
    }
}

fn rand_fill(out: &mut [u8]) {
    blind_rsa_signatures::reexports::rand::fill(out);
}

/// A token request and what unblinds its answer: kept (durably) by the
/// client between asking and being answered, so a crash in between loses
/// nothing (the same request is asked again; the issuer's answer to it is
/// the same, RSA signatures being deterministic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blinded {
    pub level: u8,
    pub nonce: [u8; 32],
    pub secret: Vec<u8>,
    pub request: TokenRequest,
}

impl Blinded {
    /// Unblinds the issuer's answer into a token, which must verify under
    /// the denomination's published key.
    pub fn finish(&self, keys: &PublicKeys, resp: &TokenResponse) -> Result<Token, CreditError> {
        let entry = keys.entry(self.level)?;
        let input = Token::input(&self.nonce, &keys.challenge_digest, &entry.id);
        let blinding = BlindingResult {
            blind_message: BlindMessage(self.request.blinded_msg.clone()),
            secret: Secret(self.secret.clone()),
            msg_randomizer: None,
        };
        let sig = entry
            .key
            .finalize(&BlindSignature(resp.blind_sig.clone()), &blinding, &input)
            .map_err(|_| CreditError::BadIssuance)?;
        Ok(Token {
            nonce: self.nonce,
            challenge_digest: keys.challenge_digest,
            token_key_id: entry.id,
            authenticator: sig.0,
        })
    }
}

/// A token that verified: its denomination and the id under which it is
/// recorded as spent (derived from the token alone, so nothing of its
/// issuance can be found from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redeemed {
    pub level: u8,
    pub value: Nanotons,
    pub spent_id: [u8; 32],
}

/// The spent-set id of a token: SHA-256 over a context, its key id and nonce.
pub fn spent_id(token: &Token) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"kokon credit spent v1\0");
    h.update(token.token_key_id);
    h.update(token.nonce);
    h.finalize().into()
}

/// The issuer: one secret key per denomination.
pub struct Issuer {
    secrets: Vec<RsaSecret>,
    public: PublicKeys,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.public.issuer)
            .field("schedule", &self.public.schedule)
            .finish_non_exhaustive()
    }
}

/// An issuer's secret keys as stored (PKCS#1 DER, base64), the smallest
/// denomination first.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSecrets {
    pub issuer: String,
    pub unit: String,
    pub keys: Vec<String>,
}

impl std::fmt::Debug for IssuerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerSecrets")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// New keys for `schedule`, named `issuer` (every token's challenge).
    pub fn generate(issuer: &str, schedule: Schedule) -> Result<Self, CreditError> {
        schedule.check()?;
        for _ in 0..KEYGEN_ATTEMPTS {
            let mut pairs = Vec::new();
            for _ in 0..schedule.levels {
                pairs.push(RsaKeyPair::generate(&mut DefaultRng, 2048).map_err(keys_err)?);
            }
            let entries = pairs
                .iter()
                .map(|p| PublicEntry::new(p.pk.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            if let Ok(public) = PublicKeys::new(issuer, schedule.unit, entries) {
                let secrets = pairs.into_iter().map(|p| p.sk).collect();
                return Ok(Self { secrets, public });
            }
        }
        Err(keys_err("no key set with distinct truncated ids"))
    }

    pub fn from_secrets(s: &IssuerSecrets) -> Result<Self, CreditError> {
        let unit = s
            .unit
            .parse()
            .map_err(|_| keys_err("the unit is not a number of nanotons"))?;
        let mut secrets = Vec::new();
        let mut entries = Vec::new();
        for k in s.keys.iter().take(usize::from(crate::MAX_LEVELS) + 1) {
            let der = B64.decode(k).map_err(|_| keys_err("a key is not base64"))?;
            let sk = RsaSecret::from_der(&der).map_err(keys_err)?;
            entries.push(PublicEntry::new(sk.public_key().map_err(keys_err)?)?);
            secrets.push(sk);
        }
        let public = PublicKeys::new(&s.issuer, unit, entries)?;
        Ok(Self { secrets, public })
    }

    pub fn secrets(&self) -> Result<IssuerSecrets, CreditError> {
        let keys = self
            .secrets
            .iter()
            .map(|k| k.to_der().map(|d| B64.encode(d)).map_err(keys_err))
            .collect::<Result<_, _>>()?;
        Ok(IssuerSecrets {
            issuer: self.public.issuer.clone(),
            unit: self.public.schedule.unit.to_string(),
            keys,
        })
    }

    pub fn public(&self) -> &PublicKeys {
        &self.public
    }

    /// The denomination a request asks for (by its truncated key id).
    pub fn level_of(&self, req: &TokenRequest) -> Result<u8, CreditError> {
        self.public
            .level_of(req.truncated_token_key_id)
            .ok_or_else(|| CreditError::UnknownKey(format!("{:#04x}", req.truncated_token_key_id)))
    }

    /// Signs one request blindly. The same request always gets the same
    /// answer, so answering a retried request again issues nothing new.
    pub fn sign(&self, req: &TokenRequest) -> Result<TokenResponse, CreditError> {
        let level = self.level_of(req)?;
        let sig = self.secrets[usize::from(level)]
            .blind_sign(&req.blinded_msg)
            .map_err(|_| CreditError::Malformed {
                what: "token request",
                why: "the blinded message is not below the key's modulus",
            })?;
        Ok(TokenResponse { blind_sig: sig.0 })
    }

    /// Checks a token: made for this issuer, by one of its keys. Whether it
    /// was spent before is the spent set's business ([`Redeemed::spent_id`]).
    pub fn redeem(&self, token: &Token) -> Result<Redeemed, CreditError> {
        if token.challenge_digest != self.public.challenge_digest {
            return Err(CreditError::WrongChallenge);
        }
        let level = self.verify(token)?;
        Ok(Redeemed {
            level,
            value: self.public.schedule.value(level)?,
            spent_id: spent_id(token),
        })
    }

    /// The denomination of a token whose signature verifies under one of
    /// this issuer's keys, whatever challenge it answers.
    pub fn verify(&self, token: &Token) -> Result<u8, CreditError> {
        let level = self
            .public
            .keys
            .iter()
            .position(|k| k.id == token.token_key_id)
            .ok_or_else(|| CreditError::UnknownKey(hex_short(&token.token_key_id)))?;
        self.public.keys[level]
            .key
            .verify(
                &Signature(token.authenticator.clone()),
                None,
                token.token_input(),
            )
            .map_err(|_| CreditError::BadSignature)?;
        u8::try_from(level).map_err(|_| CreditError::BadSignature)
    }
}

fn hex_short(b: &[u8]) -> String {
    b.iter().take(4).map(|x| format!("{x:02x}")).collect()
}
