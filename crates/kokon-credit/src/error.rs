//! What can go wrong with a credit token, on either side.

/// A credit operation that failed. Nothing is spent or issued when one is
/// returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("not a Privacy Pass {what}: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
    #[error("token type {0:#06x} is not blind RSA (0x0002)")]
    TokenType(u16),
    #[error("no credit key has id {0}")]
    UnknownKey(String),
    #[error("the token was made for another issuer (its challenge does not match)")]
    WrongChallenge,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the issuer's answer does not verify under its published key")]
    BadIssuance,
    #[error("denomination {level} does not exist (this issuer has {levels})")]
    NoSuchLevel { level: u8, levels: u8 },
    #[error("{0} is not a whole number of credit units")]
    NotWholeUnits(u128),
    #[error("{got} tokens given, at most {most} allowed")]
    TooMany { got: usize, most: usize },
    #[error("credit keys: {0}")]
    Keys(String),
}
