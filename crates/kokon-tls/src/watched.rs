//! Links that live only as long as the policy in force allows their peer.
//!
//! Every stream [`crate::RaTls::connect`] and [`crate::RaTls::accept`] hand
//! out is a [`Watched`] one: it carries the peer's certificate and is
//! judged again at each policy change. Once the policy refuses the peer,
//! every read and write fails with [`PeerRevoked`], so whatever runs on the
//! link (HTTP/2 and its streams, however many tasks drive them) ends at
//! once; nothing above has to remember to check.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use kokon_attest::AttestError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The error every read and write of a revoked link returns (inside an
/// `io::Error` of kind `PermissionDenied`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the registry no longer allows this link's peer: {0}")]
pub struct PeerRevoked(pub AttestError);

type Judge = Pin<Box<dyn Future<Output = AttestError> + Send>>;

/// A link stream that fails once the policy in force refuses its peer.
pub struct Watched<S> {
    inner: S,
    cert: Vec<u8>,
    judge: Judge,
    verdict: Arc<OnceLock<AttestError>>,
}

/// Why a link was revoked, readable after the link ended (the stream
/// itself may have moved into a connection task).
#[derive(Clone, Debug, Default)]
pub struct Revocation(Arc<OnceLock<AttestError>>);

impl Revocation {
    /// The refusal that ended the link, if one did.
    pub fn get(&self) -> Option<&AttestError> {
        self.0.get()
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Watched<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .field("revoked", &self.verdict.get())
            .finish_non_exhaustive()
    }
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, cert: Vec<u8>, judge: Judge) -> Self {
        Self {
            inner,
            cert,
            judge,
            verdict: Arc::default(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The certificate (DER) the peer presented in the handshake.
    pub fn peer_certificate(&self) -> &[u8] {
        &self.cert
    }

    /// Where the link's revocation, if any, can be read later.
    pub fn revocation(&self) -> Revocation {
        Revocation(self.verdict.clone())
    }

    /// The refusal, once there is one (polling the judge registers the
    /// task's waker, so a link blocked on I/O is woken by a revocation).
    fn revoked(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        if self.verdict.get().is_none()
            && let Poll::Ready(why) = self.judge.as_mut().poll(cx)
        {
            let _ = self.verdict.set(why);
        }
        let why = self.verdict.get()?.clone();
        Some(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            PeerRevoked(why),
        ))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.revoked(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.revoked(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.revoked(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.revoked(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The revocation inside `err` (or any error it wraps), if there is one.
pub fn revoked_by(err: &(dyn std::error::Error + 'static)) -> Option<AttestError> {
    crate::causes(err).find_map(|e| e.downcast_ref::<PeerRevoked>().map(|r| r.0.clone()))
}
