//! Key files: one hex Ed25519 seed per file, readable by the owner only.

use std::path::Path;

use kokon_money::SecretKey;

use crate::PayError;

/// Loads the key at `path`, creating a fresh one (mode 0600) if absent.
pub fn load_or_create(path: &Path) -> Result<SecretKey, PayError> {
    match std::fs::read_to_string(path) {
        Ok(s) => load_str(path, &s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            write_new(path, &key)?;
            Ok(key)
        }
        Err(e) => Err(PayError::Storage(format!("{}: {e}", path.display()))),
    }
}

/// Loads an existing key.
pub fn load(path: &Path) -> Result<SecretKey, PayError> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| PayError::Storage(format!("{}: {e}", path.display())))?;
    load_str(path, &s)
}

fn load_str(path: &Path, s: &str) -> Result<SecretKey, PayError> {
    if s.len() > 256 {
        return Err(PayError::Storage(format!(
            "{}: not a key file",
            path.display()
        )));
    }
    SecretKey::from_hex(s).map_err(|_| {
        PayError::Storage(format!(
            "{}: not a key file (64 hex digits expected)",
            path.display()
        ))
    })
}

/// Stores `key` at `path` (mode 0600); refuses to overwrite a key.
pub fn write_new(path: &Path, key: &SecretKey) -> Result<(), PayError> {
    use std::io::Write;
    let io = |e: std::io::Error| PayError::Storage(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(format!("{}\n", key.to_hex()).as_bytes())
        .map_err(io)?;
    f.sync_all().map_err(io)
}

/// Longest credit key file read (24 RSA-2048 keys, PKCS#1, base64).
const MAX_CREDIT_KEYS_FILE: u64 = 256 * 1024;

/// The proxy's credit issuer: its keys from `path`, or new keys for
/// `schedule` written there (mode 0600, fsynced) if the file is absent. The
/// keys must outlive every token they signed: a proxy that lost them
/// could redeem none of the tokens it sold.
pub fn credit_issuer(
    path: &Path,
    issuer: &str,
    schedule: kokon_credit::Schedule,
) -> Result<kokon_credit::Issuer, PayError> {
    use std::io::{Read, Write};
    let io = |e: std::io::Error| PayError::Storage(format!("{}: {e}", path.display()));
    let bad = |e: String| PayError::Storage(format!("{}: {e}", path.display()));
    match std::fs::File::open(path) {
        Ok(f) => {
            let mut s = String::new();
            f.take(MAX_CREDIT_KEYS_FILE)
                .read_to_string(&mut s)
                .map_err(io)?;
            let secrets: kokon_credit::IssuerSecrets =
                serde_json::from_str(&s).map_err(|e| bad(format!("not a credit key file: {e}")))?;
            if secrets.issuer != issuer {
                return Err(bad(format!(
                    "the keys are issuer {:?}'s, not {issuer:?}",
                    secrets.issuer
                )));
            }
            kokon_credit::Issuer::from_secrets(&secrets).map_err(|e| bad(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let new =
                kokon_credit::Issuer::generate(issuer, schedule).map_err(|e| bad(e.to_string()))?;
            let secrets = new.secrets().map_err(|e| bad(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let tmp = path.with_extension("new");
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(
                serde_json::to_string(&secrets)
                    .unwrap_or_default()
                    .as_bytes(),
            )
            .map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io)?;
            }
            Ok(new)
        }
        Err(e) => Err(io(e)),
    }
}
