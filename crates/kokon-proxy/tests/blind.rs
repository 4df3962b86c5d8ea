//! The proxy cannot open a sealed job by construction: no crate it is built
//! from holds HPKE, an AEAD, X25519 or Kokon's sealing code, so no path
//! leads from its types to a worker's secret key (those live in
//! `kokon_worker::JobKeys`, which it does not depend on either). Checked on
//! the resolved dependency graph, so a new dependency that pulls one in
//! fails here, whichever crate it comes through.

use std::process::Command;

/// Crates that would let the proxy decrypt (or that hold the worker's keys).
const FORBIDDEN: &[&str] = &[
    "kokon-seal",
    "kokon-worker",
    "kokon-engine",
    "hpke",
    "x25519-dalek",
    "aes-gcm",
    "chacha20poly1305",
];

fn normal_dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_proxy_is_built_from_no_crate_that_can_open_a_sealed_job() {
    let proxy = normal_dependencies("kokon-proxy");
    assert!(
        proxy.iter().any(|n| n == "kokon-proto"),
        "the graph was read: {proxy:?}"
    );
    for bad in FORBIDDEN {
        assert!(
            !proxy.iter().any(|n| n == bad),
            "kokon-proxy depends on {bad}"
        );
    }
    // The check sees such a dependency where there is one.
    let worker = normal_dependencies("kokon-worker");
    for present in ["kokon-seal", "hpke"] {
        assert!(
            worker.iter().any(|n| n == present),
            "{present} missing from {worker:?}"
        );
    }
}
