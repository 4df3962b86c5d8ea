//! Runs the local TON chain (`contracts/sandbox/server.js`: @ton/sandbox
//! behind a toncenter v3 API) as a child process, for `kokon up
//! --settlement ton-sandbox` and for tests. Needs Node.js and the npm
//! packages in `contracts/node_modules` (`scripts/setup` installs them).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::TonError;

/// The running sandbox chain; stopped when dropped.
#[derive(Debug)]
pub struct SandboxChain {
    child: Child,
    url: String,
}

/// Where the contracts directory is: `$KOKON_CONTRACTS`, else `contracts/`
/// next to the source tree this binary was built from, else `./contracts`.
pub fn contracts_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KOKON_CONTRACTS") {
        return PathBuf::from(d);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    if built.join("sandbox/server.js").exists() {
        return built;
    }
    PathBuf::from("contracts")
}

impl SandboxChain {
    /// Starts the chain on a free loopback port; `state` makes it durable.
    pub async fn start(contracts: &Path, state: Option<&Path>) -> Result<Self, TonError> {
        let server = contracts.join("sandbox/server.js");
        if !contracts.join("node_modules/@ton/sandbox").exists() {
            return Err(TonError::Invalid(format!(
                "the TON sandbox needs its npm packages: run `npm ci` in {} (scripts/setup does)",
                contracts.display()
            )));
        }
        let mut cmd = Command::new("node");
        cmd.arg(&server)
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(contracts)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(s) = state {
            cmd.arg("--state").arg(s);
        }
        let mut child = cmd.spawn().map_err(|e| {
            TonError::Invalid(format!("cannot start node ({e}); is Node.js installed?"))
        })?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .map_err(|_| TonError::Invalid("the TON sandbox did not start within 60 s".into()))?
            .map_err(|e| TonError::Invalid(format!("reading the TON sandbox's output: {e}")))?
            .ok_or_else(|| TonError::Invalid("the TON sandbox exited at start".into()))?;
        let url = line
            .strip_prefix("listening on ")
            .ok_or_else(|| TonError::Invalid(format!("unexpected sandbox output: {line}")))?
            .to_string();
        // Keep draining its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the chain now (a durable one resumes from its state file).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
