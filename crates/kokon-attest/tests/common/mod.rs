//! Real TDX sample quotes with their collateral (from dcap-qvl's test data,
//! MIT; see testdata/tdx/LICENSE-dcap-qvl), and times inside each
//! collateral's validity window.
#![allow(dead_code)]

use std::collections::HashMap;

use kokon_attest::tdx::{Collateral, TdxTrust};
use kokon_attest::{Policy, Role, RolePolicy, SimulatedQuote};

/// A production policy admitting the simulated images labelled "worker" and
/// "proxy" (so the test can switch simulated evidence on or leave it off).
pub fn production_policy() -> Policy {
    let img = |l: &str| Some(vec![SimulatedQuote::measurements_for(l).image_hash()]);
    let mut roles = HashMap::new();
    roles.insert(
        Role::Worker,
        RolePolicy {
            images: img("worker"),
        },
    );
    roles.insert(
        Role::Proxy,
        RolePolicy {
            images: img("proxy"),
        },
    );
    roles.insert(Role::Client, RolePolicy { images: None });
    Policy::new(roles)
}

pub struct Sample {
    pub quote: Vec<u8>,
    pub collateral: Vec<u8>,
    /// A unix time inside the collateral's validity window.
    pub now: u64,
}

fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/tdx/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sample(name: &str, now: u64) -> Sample {
    Sample {
        quote: read(name),
        collateral: read(&format!("{name}_collateral.json")),
        now,
    }
}

/// TDX v4 quote, TD 1.0 report, platform UpToDate (2025-07-01).
pub fn v4() -> Sample {
    sample("tdx_quote", 1_751_328_000)
}

/// TDX v5 quote with a TD 1.5 report (2026-10-20).
pub fn v5() -> Sample {
    sample("tdx_quote_td15ex", 1_792_454_400)
}

/// TDX v5 quote whose platform TCB matches no level (2026-03-01).
pub fn outdated() -> Sample {
    sample("tdx_quote_outdated", 1_772_323_200)
}

/// An SGX (not TDX) quote.
pub fn sgx() -> Sample {
    sample("sgx_quote", 1_751_328_000)
}

impl Sample {
    pub fn trust(&self) -> TdxTrust {
        let mut c = Collateral::default();
        let (fmspc, coll) = Collateral::parse(&self.collateral).unwrap();
        c.insert(fmspc, coll);
        TdxTrust::intel(c)
    }
}

pub fn unhex<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}
