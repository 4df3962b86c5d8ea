//! The session-evidence exchange that follows every handshake (see
//! [`kokon_attest::session`]): each side sends one frame, a 4-byte
//! big-endian length and an evidence encoding, and reads the other's; then
//! each sends its verdict on the other's (one byte), so that a refused side
//! learns it was refused rather than seeing the link close.

use kokon_attest::evidence::MAX_EVIDENCE;
use kokon_attest::session::{EXPORTER_LABEL, Side};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// `side`'s report data in the session of `conn`.
pub(crate) fn binding<D>(conn: &rustls::ConnectionCommon<D>, side: Side) -> [u8; 64] {
    conn.export_keying_material([0u8; 64], EXPORTER_LABEL, Some(side.exporter_context()))
        .expect("a completed TLS 1.3 handshake can export keying material")
}

/// Why the peer's frame could not be read.
pub(crate) enum ExchangeError {
    Io(std::io::Error),
    /// The peer announced a frame longer than any evidence.
    TooLarge(usize),
}

impl From<std::io::Error> for ExchangeError {
    fn from(e: std::io::Error) -> Self {
        ExchangeError::Io(e)
    }
}

/// Sends `ours`, then reads the peer's frame (at most [`MAX_EVIDENCE`] bytes).
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    ours: &[u8],
) -> Result<Vec<u8>, ExchangeError> {
    let len = u32::try_from(ours.len()).expect("evidence is far below 4 GiB");
    let mut frame = Vec::with_capacity(4 + ours.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(ours);
    stream.write_all(&frame).await?;
    stream.flush().await?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_EVIDENCE {
        return Err(ExchangeError::TooLarge(len));
    }
    let mut theirs = vec![0u8; len];
    stream.read_exact(&mut theirs).await?;
    Ok(theirs)
}

const ACCEPTED: u8 = 0;
const REFUSED: u8 = 1;

/// Tells the peer whether its session evidence passed.
pub(crate) async fn send_verdict<S: AsyncWrite + Unpin>(
    stream: &mut S,
    accepted: bool,
) -> std::io::Result<()> {
    let byte = if accepted { ACCEPTED } else { REFUSED };
    stream.write_all(&[byte]).await?;
    stream.flush().await
}

/// Whether the peer accepted ours (anything but the accepting byte is a
/// refusal).
pub(crate) async fn read_verdict<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<bool> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    Ok(byte[0] == ACCEPTED)
}
