//! The Kokon link layer. Every HTTP/2 client and server that Kokon nodes
//! speak to each other, every public HTTP server, their keep-alives and
//! limits, and one typed call per link path live here; daemons never build
//! a hyper connection or encode a link path themselves.
//!
//! * [`limits`]: [`LinkLimits`] (node ↔ node) and [`PublicLimits`] (public
//!   ports), with documented defaults.
//! * [`client`]: [`dial`] and [`LinkClient`]'s typed calls (announce, job,
//!   models, voucher, close, vault voucher).
//! * [`server`]: [`serve_link`] and [`read_call`], which turns each request
//!   into a typed [`Call`] within size and time bounds.
//! * [`frames`]: [`FrameStream`], the one reader of a job's frame stream.
//! * [`public`]: [`serve_public`], bounded HTTP/1 + HTTP/2 with a drain.
//! * [`tally`]: [`JobEvents`], per-job events logged as aggregates only.

pub mod body;
pub mod cancels;
pub mod client;
pub mod frames;
pub mod limits;
pub mod public;
pub mod server;
pub mod tally;

pub use body::{Body, error_body, error_reply, frames_body, full_body, json_reply};
pub use cancels::{Cancellable, Cancels};
pub use client::{BodyError, CallTransport, LinkClient, ReplyBody, dial};
pub use frames::{FrameStream, StreamError};
pub use limits::{LinkLimits, MAX_CANDIDATES_REPLY, MAX_RECONCILE_REPLY, PublicLimits};
pub use public::{PeerAddr, serve_public, serve_public_tls};
pub use server::{Call, CallBody, CallError, read_body, read_call, serve_link};
pub use tally::JobEvents;
