//! Intel's Quote Generation Service protocol (QGS, `qgs_msg_lib`): how a TD
//! without configfs-tsm turns a TD report into a quote, by asking the host
//! over vsock. Pure encoding and decoding, plus one exchange over any byte
//! stream (tests use a Unix socket pair).
//!
//! Each message travels as a 4-byte big-endian length, then the message: a
//! 16-byte header (`major_version` u16 = 1, `minor_version` u16 = 0, `type`
//! u32, `size` u32 of the whole message, `error_code` u32; little-endian),
//! then for GET_QUOTE_REQ (type 0) `report_size` u32, `id_list_size` u32 and
//! the report; for GET_QUOTE_RESP (type 1) `selected_id_size` u32,
//! `quote_size` u32, the selected id and the quote.

use std::io::{Read, Write};

const HEADER: usize = 16;
const GET_QUOTE_REQ: u32 = 0;
const GET_QUOTE_RESP: u32 = 1;
/// Largest response accepted (a quote is at most ~8 KiB).
pub const MAX_MESSAGE: u32 = 64 * 1024;

/// Why the quoting service gave no quote.
#[derive(Debug, thiserror::Error)]
pub enum QgsError {
    #[error("talking to the quoting service: {0}")]
    Io(#[from] std::io::Error),
    #[error("quoting service message of {0} bytes exceeds the limit")]
    TooLarge(u32),
    #[error("quoting service message is malformed: {0}")]
    Malformed(&'static str),
    #[error("quoting service speaks version {0}, we speak 1")]
    Version(u16),
    #[error("quoting service answered with message type {0}, not a quote")]
    WrongType(u32),
    #[error("quoting service refused: error code {0:#x}")]
    Service(u32),
}

/// A GET_QUOTE_REQ for `report` (a 1024-byte TD report), length-prefixed.
pub fn quote_request(report: &[u8]) -> Vec<u8> {
    let size = (HEADER + 8 + report.len()) as u32;
    let mut out = Vec::with_capacity(4 + size as usize);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&GET_QUOTE_REQ.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(report.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(report);
    out
}

fn u32_at(msg: &[u8], at: usize) -> Result<u32, QgsError> {
    msg.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(QgsError::Malformed("truncated"))
}

/// The quote in a GET_QUOTE_RESP message (without its length prefix).
pub fn parse_quote_response(msg: &[u8]) -> Result<Vec<u8>, QgsError> {
    if msg.len() < HEADER + 8 {
        return Err(QgsError::Malformed("shorter than a response header"));
    }
    let major = u16::from_le_bytes([msg[0], msg[1]]);
    if major != 1 {
        return Err(QgsError::Version(major));
    }
    let kind = u32_at(msg, 4)?;
    if kind != GET_QUOTE_RESP {
        return Err(QgsError::WrongType(kind));
    }
    if u32_at(msg, 8)? as usize != msg.len() {
        return Err(QgsError::Malformed("size field disagrees with the message"));
    }
    let code = u32_at(msg, 12)?;
    if code != 0 {
        return Err(QgsError::Service(code));
    }
    let id_size = u32_at(msg, 16)? as usize;
    let quote_size = u32_at(msg, 20)? as usize;
    let start = HEADER + 8 + id_size;
    if start.checked_add(quote_size) != Some(msg.len()) || quote_size == 0 {
        return Err(QgsError::Malformed(
            "id and quote sizes disagree with the message",
        ));
    }
    Ok(msg[start..].to_vec())
}

/// Sends a quote request for `report` on `stream` and reads the quote back.
pub fn exchange(mut stream: impl Read + Write, report: &[u8]) -> Result<Vec<u8>, QgsError> {
    stream.write_all(&quote_request(report))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_MESSAGE {
        return Err(QgsError::TooLarge(len));
    }
    let mut msg = vec![0u8; len as usize];
    stream.read_exact(&mut msg)?;
    parse_quote_response(&msg)
}
