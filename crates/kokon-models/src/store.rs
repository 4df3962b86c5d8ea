//! Where models live and whether they are intact.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{CATALOG, CatalogEntry, ModelError, find, io_err};

/// The Kokon home: `$KOKON_HOME`, else `~/.kokon`.
pub fn kokon_home() -> PathBuf {
    if let Some(h) = std::env::var_os("KOKON_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".kokon")
}

pub(crate) fn model_path(home: &Path, e: &CatalogEntry) -> PathBuf {
    home.join("models").join(e.name).join(e.file)
}

/// What `kokon model list` shows for one model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub path: PathBuf,
    pub present: bool,
    pub verified: bool,
    pub sha256: String,
    pub size: u64,
}

/// Hash cache next to a model file, keyed by size and mtime, so a worker does
/// not re-hash 100 MB on every start.
#[derive(Serialize, Deserialize, PartialEq)]
struct HashStamp {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

fn stamp_path(p: &Path) -> PathBuf {
    p.with_extension("gguf.sha256.json")
}

fn file_key(p: &Path) -> Result<(u64, u128), ModelError> {
    let m = std::fs::metadata(p).map_err(io_err(p))?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos());
    Ok((m.len(), mtime.unwrap_or(0)))
}

/// SHA-256 of a file, streamed.
pub(crate) fn hash_file(p: &Path, mut progress: impl FnMut(u64)) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(p).map_err(io_err(p))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(p))?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
        progress(n as u64);
    }
}

/// The file's hash, from the stamp when size and mtime still match.
pub(crate) fn cached_hash(p: &Path) -> Result<String, ModelError> {
    let (size, mtime_ns) = file_key(p)?;
    let stamp = stamp_path(p);
    if let Ok(s) = std::fs::read(&stamp)
        && let Ok(s) = serde_json::from_slice::<HashStamp>(&s)
        && s.size == size
        && s.mtime_ns == mtime_ns
    {
        return Ok(s.sha256);
    }
    let sha256 = hash_file(p, |_| {})?;
    let s = HashStamp {
        size,
        mtime_ns,
        sha256: sha256.clone(),
    };
    // The stamp is only a cache; failing to write it is not an error.
    let _ = std::fs::write(&stamp, serde_json::to_vec(&s).unwrap_or_default());
    Ok(sha256)
}

/// Finds a model and checks its hash. The error says how to fix a missing
/// or corrupt file.
pub fn locate(home: &Path, name: &str) -> Result<(PathBuf, &'static CatalogEntry), ModelError> {
    let e = find(name).ok_or_else(|| ModelError::Unknown(name.into()))?;
    let path = model_path(home, e);
    if !path.is_file() {
        return Err(ModelError::Missing {
            name: name.into(),
            path,
        });
    }
    let actual = cached_hash(&path)?;
    if actual != e.sha256 {
        return Err(ModelError::Corrupt {
            name: name.into(),
            path,
            actual,
            expected: e.sha256.into(),
        });
    }
    Ok((path, e))
}

/// Every catalog model with its local state.
pub fn list(home: &Path) -> Vec<ModelStatus> {
    CATALOG
        .iter()
        .map(|e| {
            let path = model_path(home, e);
            let present = path.is_file();
            let hash = if present {
                cached_hash(&path).ok()
            } else {
                None
            };
            ModelStatus {
                name: e.name.into(),
                verified: hash.as_deref() == Some(e.sha256),
                sha256: hash.unwrap_or_else(|| e.sha256.into()),
                size: e.size,
                present,
                path,
            }
        })
        .collect()
}
