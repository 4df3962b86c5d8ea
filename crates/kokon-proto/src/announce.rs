//! What a worker offers a proxy, and what a proxy tells clients.

use serde::{Deserialize, Serialize};

/// Largest announce body accepted, in bytes.
pub const MAX_ANNOUNCE: usize = 64 * 1024;

/// A worker's offer, fetched by the proxy right after the link comes up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    pub protocol_version: u16,
    pub models: Vec<ModelOffer>,
    /// Jobs the worker runs at once; the proxy never sends more.
    pub max_jobs: u32,
    /// Price coefficient in thousandths of the registry's base price.
    pub price_milli: u32,
    /// The key the proxy's vault vouchers name, on paid networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout: Option<kokon_money::PublicKey>,
}

/// One model a worker serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOffer {
    pub name: String,
    /// Context window in tokens.
    pub context_len: u32,
    /// SHA-256 of the model (its file for built-in engines), named in receipts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<kokon_money::Hash32>,
}

/// Proxy → client: the models currently served by attested workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelsReply {
    pub models: Vec<ModelOffer>,
}

impl Announce {
    /// Parses and validates an announce body.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.len() > MAX_ANNOUNCE {
            return Err(format!(
                "announce of {} bytes exceeds {MAX_ANNOUNCE}",
                body.len()
            ));
        }
        let a: Announce = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if a.models.is_empty() || a.models.len() > 256 {
            return Err("announce must offer 1 to 256 models".into());
        }
        if let Some(m) = a
            .models
            .iter()
            .find(|m| !crate::header::valid_model(&m.name))
        {
            return Err(format!(
                "announced model name of {} bytes is invalid",
                m.name.len()
            ));
        }
        if a.max_jobs == 0 {
            return Err("announce offers max_jobs = 0".into());
        }
        Ok(a)
    }
}
