//! TDX quotes from inside a TD, through the kernel's configfs-tsm interface
//! (`/sys/kernel/config/tsm/report`, Linux 6.7 and later).
//!
//! The interface is files: make (or reuse) an entry directory, check that
//! `provider` reads `tdx_guest`, read `generation`, write exactly 64 bytes of
//! report data to `inblob`, read the quote from `outblob` (the read blocks
//! while the kernel asks the host's quoting service), and read `generation`
//! again: if it moved by more than one write, another process wrote `inblob`
//! meanwhile and the quote may carry its report data, so try again.
//!
//! Writers in this process are serialised by a mutex; other processes are
//! caught by the generation check.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::EvidenceKind;
use crate::evidence::EvidenceSource;

/// Where the kernel mounts configfs-tsm reports.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";
/// The older TDX guest device, which yields TD reports but not quotes.
pub const TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";
/// The entry this process makes under the root (reused when it exists).
const ENTRY: &str = "kokon";
/// Generation races tolerated before giving up.
const ATTEMPTS: u32 = 8;
/// Largest quote read back from the kernel.
const MAX_QUOTE: u64 = crate::tdx::MAX_QUOTE as u64;

/// Why the TD could not produce a quote.
#[derive(Debug, thiserror::Error)]
pub enum TsmError {
    #[error(
        "not inside a TDX guest: neither {0} (configfs-tsm) nor {TDX_GUEST_DEVICE} exists (on other machines use --evidence simulated on a test network)"
    )]
    NotATd(PathBuf),
    #[error("configfs-tsm provider is `{0}`, not `tdx_guest`: this is not a TDX guest")]
    WrongProvider(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("`generation` at {path} is not a number: {text:?}")]
    BadGeneration { path: PathBuf, text: String },
    #[error("another process kept writing the report entry; gave up after {0} attempts")]
    Contended(u32),
    #[error("the kernel returned an empty quote")]
    EmptyQuote,
    #[error("the kernel returned more than {MAX_QUOTE} bytes")]
    QuoteTooLarge,
}

/// This TD's quote source: configfs-tsm under `root` where the kernel has
/// it, else `/dev/tdx_guest` with the host's quoting service (older
/// kernels), else an error saying this is not a TD.
pub fn open_tdx(root: &Path) -> Result<std::sync::Arc<dyn EvidenceSource>, TsmError> {
    if root.is_dir() {
        return Ok(std::sync::Arc::new(ConfigfsTsm::open(root)?));
    }
    let device = Path::new(TDX_GUEST_DEVICE);
    if device.exists() {
        tracing::info!("no configfs-tsm; quoting through {TDX_GUEST_DEVICE} and the host's QGS");
        return Ok(std::sync::Arc::new(crate::tdx_guest::TdxGuest::new(device)));
    }
    Err(TsmError::NotATd(root.to_path_buf()))
}

/// Quotes from configfs-tsm under `root`.
#[derive(Debug)]
pub struct ConfigfsTsm {
    entry: PathBuf,
    lock: Mutex<()>,
}

impl ConfigfsTsm {
    /// Opens the interface under `root` (normally [`DEFAULT_ROOT`]), making
    /// the entry directory and checking the provider is TDX.
    pub fn open(root: &Path) -> Result<Self, TsmError> {
        if !root.is_dir() {
            return Err(TsmError::NotATd(root.to_path_buf()));
        }
        let entry = root.join(ENTRY);
        match std::fs::create_dir(&entry) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(&entry, e)),
            _ => {}
        }
        let provider = read_text(&entry.join("provider"))?;
        if provider.trim() != "tdx_guest" {
            return Err(TsmError::WrongProvider(provider.trim().to_string()));
        }
        Ok(Self {
            entry,
            lock: Mutex::new(()),
        })
    }

    /// A quote whose report data is `report_data`. Blocks.
    pub fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, TsmError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..ATTEMPTS {
            let before = self.generation()?;
            let inblob = self.entry.join("inblob");
            std::fs::write(&inblob, report_data).map_err(|e| io_err(&inblob, e))?;
            let quote = self.read_outblob()?;
            if self.generation()? == before + 1 {
                return match quote.is_empty() {
                    true => Err(TsmError::EmptyQuote),
                    false => Ok(quote),
                };
            }
            tracing::debug!("configfs-tsm generation moved under us; retrying");
        }
        Err(TsmError::Contended(ATTEMPTS))
    }

    fn generation(&self) -> Result<u64, TsmError> {
        let path = self.entry.join("generation");
        let text = read_text(&path)?;
        text.trim()
            .parse()
            .map_err(|_| TsmError::BadGeneration { path, text })
    }

    fn read_outblob(&self) -> Result<Vec<u8>, TsmError> {
        let path = self.entry.join("outblob");
        let quote = crate::read_at_most(&path, MAX_QUOTE).map_err(|e| io_err(&path, e))?;
        if quote.len() as u64 > MAX_QUOTE {
            return Err(TsmError::QuoteTooLarge);
        }
        Ok(quote)
    }
}

impl EvidenceSource for ConfigfsTsm {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Tdx
    }

    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, String> {
        ConfigfsTsm::quote(self, report_data).map_err(|e| e.to_string())
    }
}

/// A small attribute file (`provider`, `generation`), bounded.
fn read_text(path: &Path) -> Result<String, TsmError> {
    let bytes = crate::read_at_most(path, 4096).map_err(|e| io_err(path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn io_err(path: &Path, source: io::Error) -> TsmError {
    TsmError::Io {
        path: path.to_path_buf(),
        source,
    }
}
