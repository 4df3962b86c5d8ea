//! The Privacy Pass messages of issuance protocol 2 (RFC 9578 §6) and the
//! token and challenge they are for (RFC 9577 §2), byte for byte.
//!
//! ```text
//! TokenChallenge { u16 token_type; opaque issuer_name<1..2^16-1>;
//!                  opaque redemption_context<0..32>; opaque origin_info<0..2^16-1> }
//! TokenRequest   { u16 token_type = 0x0002; u8 truncated_token_key_id; u8 blinded_msg[Nk] }
//! TokenResponse  { u8 blind_sig[Nk] }
//! Token          { u16 token_type = 0x0002; u8 nonce[32]; u8 challenge_digest[32];
//!                  u8 token_key_id[32]; u8 authenticator[Nk] }
//! ```
//! Every decoder takes exactly its length: nothing more, nothing less.

use sha2::{Digest, Sha256};

use crate::CreditError;

/// Blind RSA (2048-bit), RSABSSA-SHA384-PSS-Deterministic.
pub const TOKEN_TYPE: u16 = 0x0002;
/// Bytes of an RSA-2048 signature or blinded message.
pub const NK: usize = 256;
/// Bytes of an encoded [`TokenRequest`].
pub const REQUEST_LEN: usize = 2 + 1 + NK;
/// Bytes of an encoded [`Token`].
pub const TOKEN_LEN: usize = 2 + 32 + 32 + 32 + NK;

fn malformed(what: &'static str, why: &'static str) -> CreditError {
    CreditError::Malformed { what, why }
}

/// The challenge every token of an issuer answers: its name, no
/// redemption context and no origin (tokens are good for any job at this
/// issuer, so they carry nothing of the client's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenChallenge {
    pub issuer_name: Vec<u8>,
    pub redemption_context: Vec<u8>,
    pub origin_info: Vec<u8>,
}

impl TokenChallenge {
    pub fn for_issuer(name: &str) -> Self {
        Self {
            issuer_name: name.as_bytes().to_vec(),
            redemption_context: Vec::new(),
            origin_info: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = TOKEN_TYPE.to_be_bytes().to_vec();
        out.extend_from_slice(&(self.issuer_name.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.issuer_name);
        out.push(self.redemption_context.len() as u8);
        out.extend_from_slice(&self.redemption_context);
        out.extend_from_slice(&(self.origin_info.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.origin_info);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CreditError> {
        let what = "token challenge";
        let mut r = Reader { b, what };
        let ty = r.u16()?;
        if ty != TOKEN_TYPE {
            return Err(CreditError::TokenType(ty));
        }
        let n = r.u16()? as usize;
        if n == 0 {
            return Err(malformed(what, "empty issuer name"));
        }
        let issuer_name = r.take(n)?.to_vec();
        let n = r.u8()? as usize;
        if n != 0 && n != 32 {
            return Err(malformed(
                what,
                "redemption context is neither empty nor 32 bytes",
            ));
        }
        let redemption_context = r.take(n)?.to_vec();
        let n = r.u16()? as usize;
        let origin_info = r.take(n)?.to_vec();
        r.end()?;
        Ok(Self {
            issuer_name,
            redemption_context,
            origin_info,
        })
    }

    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

/// What the client sends to have one token signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub truncated_token_key_id: u8,
    pub blinded_msg: Vec<u8>,
}

impl TokenRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = TOKEN_TYPE.to_be_bytes().to_vec();
        out.push(self.truncated_token_key_id);
        out.extend_from_slice(&self.blinded_msg);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CreditError> {
        let mut r = Reader {
            b,
            what: "token request",
        };
        let ty = r.u16()?;
        if ty != TOKEN_TYPE {
            return Err(CreditError::TokenType(ty));
        }
        let truncated_token_key_id = r.u8()?;
        let blinded_msg = r.take(NK)?.to_vec();
        r.end()?;
        Ok(Self {
            truncated_token_key_id,
            blinded_msg,
        })
    }
}

/// The issuer's blind signature of one [`TokenRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenResponse {
    pub blind_sig: Vec<u8>,
}

impl TokenResponse {
    pub fn encode(&self) -> Vec<u8> {
        self.blind_sig.clone()
    }

    pub fn decode(b: &[u8]) -> Result<Self, CreditError> {
        if b.len() != NK {
            return Err(malformed("token response", "not 256 bytes"));
        }
        Ok(Self {
            blind_sig: b.to_vec(),
        })
    }
}

/// A token: what is redeemed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub nonce: [u8; 32],
    pub challenge_digest: [u8; 32],
    pub token_key_id: [u8; 32],
    pub authenticator: Vec<u8>,
}

impl Token {
    /// What the issuer signed (blindly): type ‖ nonce ‖ challenge digest ‖ key id.
    pub fn input(nonce: &[u8; 32], challenge_digest: &[u8; 32], key_id: &[u8; 32]) -> Vec<u8> {
        [
            &TOKEN_TYPE.to_be_bytes()[..],
            nonce,
            challenge_digest,
            key_id,
        ]
        .concat()
    }

    pub fn token_input(&self) -> Vec<u8> {
        Self::input(&self.nonce, &self.challenge_digest, &self.token_key_id)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.token_input();
        out.extend_from_slice(&self.authenticator);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CreditError> {
        let mut r = Reader { b, what: "token" };
        let ty = r.u16()?;
        if ty != TOKEN_TYPE {
            return Err(CreditError::TokenType(ty));
        }
        let token = Self {
            nonce: r.array()?,
            challenge_digest: r.array()?,
            token_key_id: r.array()?,
            authenticator: r.take(NK)?.to_vec(),
        };
        r.end()?;
        Ok(token)
    }
}

/// A bounded reader over one message.
struct Reader<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CreditError> {
        if self.b.len() < n {
            return Err(malformed(self.what, "truncated"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, CreditError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, CreditError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn array(&mut self) -> Result<[u8; 32], CreditError> {
        let mut out = [0; 32];
        out.copy_from_slice(self.take(32)?);
        Ok(out)
    }

    fn end(&self) -> Result<(), CreditError> {
        if !self.b.is_empty() {
            return Err(malformed(self.what, "trailing bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_round_trips_and_bounds() {
        let c = TokenChallenge::for_issuer("kokon proxy ab12");
        assert_eq!(TokenChallenge::decode(&c.encode()).unwrap(), c);
        let mut bad = c.encode();
        bad.push(0);
        assert!(TokenChallenge::decode(&bad).is_err());
        assert!(TokenChallenge::decode(&c.encode()[..5]).is_err());
    }

    #[test]
    fn every_truncation_and_extension_of_a_token_is_refused() {
        let t = Token {
            nonce: [1; 32],
            challenge_digest: [2; 32],
            token_key_id: [3; 32],
            authenticator: vec![4; NK],
        };
        let b = t.encode();
        assert_eq!(b.len(), TOKEN_LEN);
        assert_eq!(Token::decode(&b).unwrap(), t);
        for n in 0..b.len() {
            assert!(Token::decode(&b[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Token::decode(&long).is_err());
        let mut other = b;
        other[1] = 1;
        assert_eq!(Token::decode(&other), Err(CreditError::TokenType(1)));
    }
}
