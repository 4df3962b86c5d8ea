//! A peer's certificate through the whole verifier (X.509, the Kokon
//! extensions and their parsers, claims, evidence of both kinds, binding,
//! policy): never panics. TDX evidence is checked against the sample
//! collateral, so quotes inside certificates reach the DCAP verifier.
#![no_main]

use std::sync::OnceLock;

use kokon_attest::tdx::{Collateral, TdxTrust};
use kokon_attest::{Policy, Registry, Role, verify_certificate};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = Registry::local_test_network().policy().expect("valid registry");
        let json = include_bytes!("../../crates/kokon-attest/testdata/tdx/tdx_quote_collateral.json");
        let (fmspc, coll) = Collateral::parse(json).expect("sample collateral");
        let mut c = Collateral::default();
        c.insert(fmspc, coll);
        p.tdx = Some(TdxTrust::intel(c));
        p
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = verify_certificate(data, policy(), &[Role::Worker, Role::Proxy, Role::Client], 1_800_000_000);
});
