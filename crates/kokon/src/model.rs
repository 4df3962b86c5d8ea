//! `kokon model pull|list`.

use anyhow::Context;
use clap::Subcommand;
use kokon_models::{PullOutcome, kokon_home};

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Download a model into $KOKON_HOME/models and verify its SHA-256 (idempotent).
    Pull {
        /// Model name, e.g. smollm2-135m-instruct.
        #[arg(default_value = kokon_models::DEFAULT_MODEL)]
        name: String,
    },
    /// Show known models, whether they are present, and their hashes.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ModelCmd) -> anyhow::Result<()> {
    let home = kokon_home();
    match cmd {
        ModelCmd::Pull { name } => {
            let outcome =
                tokio::task::spawn_blocking(move || kokon_models::pull(&home, &name, true))
                    .await??;
            match outcome {
                PullOutcome::AlreadyPresent(p) => {
                    println!("already present and verified: {}", p.display())
                }
                PullOutcome::Downloaded(p) => println!("downloaded and verified: {}", p.display()),
            }
        }
        ModelCmd::List { json } => {
            let list = tokio::task::spawn_blocking(move || kokon_models::list(&home)).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).context("encoding")?
                );
                return Ok(());
            }
            println!("{:<24} {:<9} {:>10}  sha256", "NAME", "STATE", "SIZE");
            for m in list {
                let state = match (m.present, m.verified) {
                    (false, _) => "missing",
                    (true, true) => "verified",
                    (true, false) => "CORRUPT",
                };
                println!(
                    "{:<24} {:<9} {:>8}MB  {}",
                    m.name,
                    state,
                    m.size / 1_000_000,
                    m.sha256
                );
            }
        }
    }
    Ok(())
}

/// Makes sure the model is present, pulling it (with progress) if it is not.
pub async fn ensure(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let home = kokon_home();
    let n = name.to_string();
    let found = tokio::task::spawn_blocking({
        let home = home.clone();
        move || kokon_models::locate(&home, &n)
    })
    .await?;
    match found {
        Ok((path, _)) => Ok(path),
        Err(kokon_models::ModelError::Missing { .. }) => {
            eprintln!("model {name} is not here yet; pulling it (about 100 MB)…");
            let n = name.to_string();
            match tokio::task::spawn_blocking(move || kokon_models::pull(&home, &n, true)).await?? {
                PullOutcome::AlreadyPresent(p) | PullOutcome::Downloaded(p) => Ok(p),
            }
        }
        Err(e) => Err(e.into()),
    }
}
