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
