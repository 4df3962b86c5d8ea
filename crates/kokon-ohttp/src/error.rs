//! What can go wrong, and the HTTP answer each deserves (RFC 9458 §5.2, §5.3).

use http::StatusCode;

/// Why an encapsulated message or a key configuration was refused. The
/// messages name a class of bad input and never contain key material or
/// message content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OhttpError {
    #[error("the message is shorter than its header says")]
    Truncated,
    #[error("no key with identifier {0} (the key configuration changed: fetch it again)")]
    UnknownKey(u8),
    #[error("unsupported algorithms (KEM {kem:#06x}, KDF {kdf:#06x}, AEAD {aead:#06x})")]
    Unsupported { kem: u16, kdf: u16, aead: u16 },
    #[error("the message does not decrypt under this key")]
    Decrypt,
    #[error("the message is larger than {0} bytes")]
    TooLarge(usize),
    #[error("not a valid key configuration: {0}")]
    BadKeyConfig(&'static str),
    #[error("no key configuration offers the supported algorithms")]
    NoUsableKey,
    #[error("not a valid binary HTTP message: {0}")]
    BadMessage(&'static str),
    #[error("the chunked message ended before its final chunk")]
    Unfinished,
    #[error("data after the final chunk")]
    AfterFinal,
}

impl OhttpError {
    /// The status a gateway answers with. A key it does not hold is 422
    /// with the `ohttp-key` problem type (RFC 9458 §5.3), so a client
    /// refetches the configuration; any other encapsulation problem is 400.
    pub fn status(&self) -> StatusCode {
        match self {
            OhttpError::UnknownKey(_) | OhttpError::Unsupported { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            OhttpError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A short identifier, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            OhttpError::Truncated => "truncated",
            OhttpError::UnknownKey(_) => "unknown_key",
            OhttpError::Unsupported { .. } => "unsupported",
            OhttpError::Decrypt => "decrypt",
            OhttpError::TooLarge(_) => "too_large",
            OhttpError::BadKeyConfig(_) => "bad_key_config",
            OhttpError::NoUsableKey => "no_usable_key",
            OhttpError::BadMessage(_) => "bad_message",
            OhttpError::Unfinished => "unfinished",
            OhttpError::AfterFinal => "after_final",
        }
    }

    /// The problem document (RFC 9457) that goes with [`OhttpError::status`]
    /// when it is 422.
    pub fn problem(&self) -> Option<serde_json::Value> {
        (self.status() == StatusCode::UNPROCESSABLE_ENTITY).then(|| {
            serde_json::json!({
                "type": PROBLEM_OHTTP_KEY,
                "title": "key identifier unknown",
            })
        })
    }
}

/// RFC 9458 §5.3's problem type for a key configuration problem.
pub const PROBLEM_OHTTP_KEY: &str = "https://iana.org/assignments/http-problem-types#ohttp-key";
