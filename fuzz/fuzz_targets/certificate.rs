//! A peer's certificate through the whole verifier (X.509, extensions,
//! claims, evidence, binding, policy): never panics.
#![no_main]

use std::sync::OnceLock;

use kokon_attest::{Policy, Registry, Role, verify_certificate};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Registry::local_test_network().policy().expect("valid registry"))
}

fuzz_target!(|data: &[u8]| {
    let _ = verify_certificate(data, policy(), &[Role::Worker, Role::Proxy, Role::Client], 1_800_000_000);
});
