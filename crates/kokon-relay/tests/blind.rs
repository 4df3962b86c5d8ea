//! The relay cannot read what it carries, by construction: no crate it is
//! built from holds HPKE, an AEAD other than TLS's, X25519, or Kokon's OHTTP
//! and sealing code. Checked on the resolved dependency graph (as
//! `kokon-proxy/tests/blind.rs` does for the proxy), with a control that
//! the same reading finds them where they are.

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "kokon-ohttp",
    "kokon-seal",
    "kokon-worker",
    "kokon-gateway",
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
fn the_relay_is_built_from_no_crate_that_can_open_what_it_carries() {
    let relay = normal_dependencies("kokon-relay");
    assert!(
        relay.iter().any(|n| n == "kokon-link"),
        "the graph was read: {relay:?}"
    );
    for bad in FORBIDDEN {
        assert!(
            !relay.iter().any(|n| n == bad),
            "kokon-relay depends on {bad}"
        );
    }
    // Control: the OHTTP gateway in front of the proxy does hold HPKE.
    let gateway = normal_dependencies("kokon-oblivious");
    assert!(gateway.iter().any(|n| n == "hpke"), "{gateway:?}");
}

#[test]
fn the_media_types_are_the_rfcs() {
    assert_eq!(kokon_relay::OHTTP_REQUEST, kokon_ohttp::media::REQUEST);
    assert_eq!(
        kokon_relay::OHTTP_CHUNKED_REQUEST,
        kokon_ohttp::media::CHUNKED_REQUEST
    );
}
