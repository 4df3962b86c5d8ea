//! Quotes on TDs whose kernel has no configfs-tsm (Linux before 6.7): a TD
//! report from `/dev/tdx_guest` (`TDX_CMD_GET_REPORT0`), turned into a quote
//! by the host's Quote Generation Service over vsock ([`crate::qgs`]), as
//! Intel's `libtdx_attest` does.
//!
//! The ioctl is the one `unsafe` call in Kokon; it passes a buffer the size
//! and layout the kernel's `struct tdx_report_req` has.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::EvidenceKind;
use crate::evidence::EvidenceSource;
use crate::qgs::QgsError;

/// The host, as seen over vsock.
pub const QGS_CID: u32 = 2;
/// QGS's port unless `/etc/tdx-attest.conf` says `port=…`.
pub const QGS_DEFAULT_PORT: u32 = 4050;
const TDREPORT_LEN: usize = 1024;
/// `_IOWR('T', 1, struct tdx_report_req)`: 64 + 1024 bytes.
const TDX_CMD_GET_REPORT0: u64 = 0xc440_5401;

/// The kernel's `struct tdx_report_req`.
#[repr(C)]
struct ReportReq {
    reportdata: [u8; 64],
    tdreport: [u8; TDREPORT_LEN],
}

/// Why the device path gave no quote.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{path}: {source}")]
    Device {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reach the host's quoting service at vsock {QGS_CID}:{port}: {source}")]
    Connect { port: u32, source: std::io::Error },
    #[error(transparent)]
    Qgs(#[from] QgsError),
}

/// A TD report over `report_data` from the TDX guest device at `device`.
pub fn td_report(device: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, GuestError> {
    let err = |source| GuestError::Device {
        path: device.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(err)?;
    let mut req = ReportReq {
        reportdata: *report_data,
        tdreport: [0; TDREPORT_LEN],
    };
    // SAFETY: `file` is open for the call's duration; `req` is a live,
    // exclusively borrowed `struct tdx_report_req` (repr(C), 1088 bytes, the
    // size encoded in the request number), which the kernel reads and fills.
    // On a file that is not the device the call fails with ENOTTY and
    // touches nothing.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            TDX_CMD_GET_REPORT0 as _,
            &mut req as *mut ReportReq,
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(req.tdreport.to_vec())
}

/// The QGS port from `/etc/tdx-attest.conf` (`port=N`), else the default.
pub fn qgs_port(conf: &str) -> u32 {
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("port"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(QGS_DEFAULT_PORT)
}

/// Quotes from `/dev/tdx_guest` plus the host's QGS over vsock.
#[derive(Debug)]
pub struct TdxGuest {
    device: PathBuf,
    port: u32,
}

impl TdxGuest {
    pub fn new(device: &Path) -> Self {
        let conf = std::fs::read_to_string("/etc/tdx-attest.conf").unwrap_or_default();
        Self {
            device: device.to_path_buf(),
            port: qgs_port(&conf),
        }
    }

    pub fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, GuestError> {
        let report = td_report(&self.device, report_data)?;
        let stream =
            vsock::VsockStream::connect_with_cid_port(QGS_CID, self.port).map_err(|source| {
                GuestError::Connect {
                    port: self.port,
                    source,
                }
            })?;
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
        Ok(crate::qgs::exchange(stream, &report)?)
    }
}

impl EvidenceSource for TdxGuest {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Tdx
    }

    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, String> {
        TdxGuest::quote(self, report_data).map_err(|e| e.to_string())
    }
}
