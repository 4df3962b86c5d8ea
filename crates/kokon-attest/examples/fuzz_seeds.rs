//! Writes seed inputs for the fuzz targets (valid certificates and evidence,
//! so the fuzzer starts past the parsers' front doors):
//! `cargo run -p kokon-attest --example fuzz_seeds -- fuzz/seeds`

use std::path::PathBuf;

use kokon_attest::{Identity, IdentityParams, Role, registry::simulated_label};

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    for role in [Role::Worker, Role::Proxy, Role::Client] {
        let params = IdentityParams {
            role,
            hpke_public: None,
            engine: (role == Role::Worker)
                .then(|| kokon_proto::EngineDecl::local(kokon_proto::EngineKind::Llama)),
            config_sha256: [3; 32],
            models: vec![[5; 32]],
            lifetime_secs: 3600,
            now: 1_800_000_000, // the fuzz target's fixed "now"
        };
        let id = Identity::simulated(&params, &simulated_label(role)).expect("certificate");
        std::fs::create_dir_all(out.join("certificate"))?;
        std::fs::write(
            out.join("certificate").join(format!("{role}.der")),
            &id.cert_der,
        )?;
        std::fs::create_dir_all(out.join("evidence"))?;
        std::fs::write(
            out.join("evidence").join(format!("{role}.claims")),
            id.claims.to_bytes(),
        )?;
    }
    println!("seeds written under {}", out.display());
    Ok(())
}
