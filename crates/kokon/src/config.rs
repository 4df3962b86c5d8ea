//! Configuration sources, in order of precedence: command-line flag, then
//! `KOKON_*` environment variable (clap reads both), then the TOML file given
//! with `--config`, then the documented default.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kokon_attest::Registry;
use serde::de::DeserializeOwned;

/// Reads a TOML config file. Unknown keys are errors that name the key.
pub fn load_file<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))
}

/// Takes each field from the flag/env value, else from the file.
macro_rules! merge {
    ($cli:expr, $file:expr, $($field:ident),+ $(,)?) => {
        $( if $cli.$field.is_none() { $cli.$field = $file.$field.take(); } )+
    };
}
pub(crate) use merge;

/// The registry path: the given one, else `$KOKON_HOME/registry.toml`.
pub fn registry_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| kokon_models::kokon_home().join("registry.toml"))
}

/// Loads the registry file, with an error that says how to make one.
pub fn load_registry(path: &Path) -> anyhow::Result<Registry> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no registry at {}; create a local test-network one with `kokon registry init`",
            path.display()
        )
    })?;
    Ok(Registry::parse(&text)?)
}
