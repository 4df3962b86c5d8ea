//! Kokon wire protocol: the messages that cross links, and nothing else.
//!
//! Links are HTTP/2 over mutual RA-TLS (see `kokon-tls`). This crate defines
//! what travels inside them:
//!
//! * [`header::JobHeader`]: the small routing header the proxy reads (model,
//!   kind, max price, request id). The job body itself is opaque to the proxy.
//! * [`frame`]: the record layer of a job's response stream (opaque data
//!   chunks, a final `End`, or a typed `Error`), with a bounded decoder.
//! * [`announce::Announce`]: what a worker offers when it joins a proxy.
//! * [`job`]: the end-to-end payload between the client gateway and the worker
//!   (the proxy never parses it), and [`sealed`]: the same payload end-to-end
//!   encrypted to candidate workers, of which the proxy reads the candidate
//!   set only.
//!
//! Everything here is pure: no I/O, and every decoder bounds its input.

pub mod announce;
pub mod control;
pub mod engine;
pub mod error;
pub mod frame;
pub mod header;
pub mod job;
pub mod meter;
pub mod sealed;

/// Version of the Kokon link protocol. Peers with a different version are
/// refused during the TLS handshake (ALPN) and again in the announce.
pub const PROTOCOL_VERSION: u16 = 1;

/// ALPN identifier for [`PROTOCOL_VERSION`]. The version is part of the name so
/// an incompatible peer fails the handshake with `no_application_protocol`.
pub const ALPN: &[u8] = b"kokon/1";

/// Largest job payload (request body) a proxy or worker accepts, in bytes.
pub const MAX_JOB_PAYLOAD: usize = 4 * 1024 * 1024;

/// HTTP paths used on links.
pub mod paths {
    /// Worker → proxy (served by the worker over the link it dialed): what it offers.
    pub const ANNOUNCE: &str = "/kokon/v1/announce";
    /// Submit a job (client → proxy, proxy → worker).
    pub const JOB: &str = "/kokon/v1/job";
    /// Client → proxy: models served by attested workers right now.
    pub const MODELS: &str = "/kokon/v1/models";
    /// Client → proxy: the client's latest channel voucher (JSON).
    pub const VOUCHER: &str = "/kokon/v1/voucher";
    /// Proxy → worker: the worker's latest vault voucher (JSON).
    pub const VAULT_VOUCHER: &str = "/kokon/v1/vault-voucher";
    /// Client → proxy: close the channel cooperatively (JSON [`crate::CloseRequest`]).
    pub const CLOSE: &str = "/kokon/v1/channel/close";
    /// Proxy → worker: why the proxy will not route to it (JSON
    /// [`crate::JobError`]), sent before the proxy closes the link.
    pub const REFUSED: &str = "/kokon/v1/refused";
    /// Client → proxy, proxy → worker: cancel a running job (JSON
    /// [`crate::CancelRequest`]).
    pub const CANCEL: &str = "/kokon/v1/cancel";
    /// Client → proxy: the client refuses a billed receipt (JSON
    /// [`crate::DisputeRequest`]).
    pub const DISPUTE: &str = "/kokon/v1/dispute";
    /// Client → proxy: the channel's billed jobs, to pay any whose `End`
    /// the client missed (JSON [`crate::ReconcileRequest`]).
    pub const RECONCILE: &str = "/kokon/v1/reconcile";
    /// Client → proxy: the certificates of the workers a job for a model
    /// may be sealed to (JSON [`crate::CandidatesRequest`]).
    pub const CANDIDATES: &str = "/kokon/v1/candidates";
    /// Client → proxy: the proxy's credit keys (a [`crate::credit::KeysReply`]).
    pub const CREDIT_KEYS: &str = "/kokon/v1/credits/keys";
    /// Channel holder → proxy: buy credit tokens (JSON [`crate::credit::SaleRequest`]).
    pub const CREDIT_BUY: &str = "/kokon/v1/credits/buy";
    /// Client → proxy: a credit-paid job's change (JSON [`crate::credit::ChangeRequest`]).
    pub const CREDIT_CHANGE: &str = "/kokon/v1/credits/change";
}

pub use announce::{Announce, ModelOffer, ModelsReply};

/// A client asking its proxy to close their channel now: the proxy claims
/// the latest voucher and the ledger refunds the rest to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CloseRequest {
    pub channel: kokon_money::Address,
    /// By the channel's client key over [`CloseRequest::signing_hash`].
    pub signature: kokon_money::Signature,
    /// The client's latest voucher: the proxy closes only a channel whose
    /// bills are paid, so a client that owes brings the voucher that pays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher: Option<kokon_money::Signed<kokon_money::ChannelVoucher>>,
}

impl CloseRequest {
    pub fn signing_hash(channel: &kokon_money::Address) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"kokon/close/v1\0");
        h.update([channel.workchain as u8]);
        h.update(channel.hash);
        h.finalize().into()
    }
}

/// The proxy's answer to a [`CloseRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CloseReply {
    #[serde(with = "kokon_money::message::u128_string")]
    pub claimed: u128,
    #[serde(with = "kokon_money::message::u128_string")]
    pub refunded: u128,
}
pub use control::{
    BilledJob, CancelRequest, CandidatesReply, CandidatesRequest, DisputeRequest, JobAuth,
    ReconcileReply, ReconcileRequest,
};
pub use engine::{EngineDecl, EngineKind};
pub use error::{ErrorCode, JobError};
pub use frame::{Frame, FrameDecoder, FrameError};
pub mod credit;
pub use header::{
    AuthScope, CreditPayment, HeaderError, JobHeader, JobKind, MAX_CREDIT_TOKENS, Payment,
};
pub use job::{ChatMessage, Chunk, FinishReason, JobEnd, JobRequest, ReceiptEnvelope, Usage};
pub use meter::OutputMeter;
pub use sealed::{SealedError, SealedJob};
