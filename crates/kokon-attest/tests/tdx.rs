//! Real TDX quotes verify offline against Intel's root with cached
//! collateral, and their measurements match the values dcap-qvl's own
//! snapshot records for the same quote.

mod common;

use common::{outdated, sgx, unhex, v4, v5};
use kokon_attest::AttestError;
use kokon_attest::tdx::{Collateral, TdxTrust, parse_quote, verify_quote};

#[test]
fn v4_sample_verifies_with_known_measurements() {
    let s = v4();
    let r = verify_quote(&s.quote, &s.trust(), s.now).unwrap();
    assert_eq!(r.tcb_status, "UpToDate");
    assert!(r.advisory_ids.is_empty());
    assert_eq!(r.fmspc, "b0c06f000000");
    assert_eq!(r.body.version, 4);
    assert_eq!(
        r.body.measurements.mrtd,
        unhex(
            "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
        )
    );
    assert_eq!(
        r.body.measurements.rtmr[0],
        unhex(
            "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"
        )
    );
    assert_eq!(
        r.body.measurements.rtmr[1],
        unhex(
            "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378"
        )
    );
    assert_eq!(
        r.body.measurements.rtmr[2],
        unhex(
            "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132"
        )
    );
    assert_eq!(r.body.measurements.rtmr[3], [0u8; 48]);
    assert_eq!(
        r.body.report_data,
        unhex(
            "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
        )
    );
    assert_eq!(r.body.td.td_attributes, unhex("0000001000000000"));
    // The image hash is SHA-256 over MRTD ‖ RTMR0..3 (docs/ATTESTATION.md).
    let mut all = r.body.measurements.mrtd.to_vec();
    r.body
        .measurements
        .rtmr
        .iter()
        .for_each(|m| all.extend_from_slice(m));
    assert_eq!(r.body.measurements.image_hash(), kokon_attest::sha256(&all));
}

#[test]
fn v5_sample_verifies() {
    let s = v5();
    let r = verify_quote(&s.quote, &s.trust(), s.now).unwrap();
    assert_eq!(r.body.version, 5);
    assert_eq!(r.tcb_status, "UpToDate");
    // Parsing alone (no verification) sees the same fields.
    assert_eq!(parse_quote(&s.quote).unwrap(), r.body);
}

#[test]
fn outdated_platform_matches_no_tcb_level() {
    let s = outdated();
    let err = verify_quote(&s.quote, &s.trust(), s.now).unwrap_err();
    assert_eq!(err, AttestError::TcbLevelNotFound);
}

#[test]
fn collateral_outside_its_window_is_refused() {
    let s = v4();
    for now in [s.now + 120 * 86_400, s.now - 120 * 86_400] {
        let err = verify_quote(&s.quote, &s.trust(), now).unwrap_err();
        assert_eq!(err.reason(), "collateral_expired", "{err}");
    }
}

#[test]
fn missing_collateral_names_the_platform() {
    let s = v4();
    let err = verify_quote(&s.quote, &TdxTrust::default(), s.now).unwrap_err();
    assert_eq!(err, AttestError::CollateralMissing("b0c06f000000".into()));
}

#[test]
fn sgx_quotes_are_not_tdx() {
    let err = parse_quote(&sgx().quote).unwrap_err();
    assert_eq!(err.reason(), "quote_not_tdx", "{err}");
}

#[test]
fn collateral_parse_bounds_its_input() {
    let err = Collateral::parse(&vec![b' '; 300 * 1024]).unwrap_err();
    assert_eq!(err.reason(), "collateral_invalid");
    let err = Collateral::parse(b"{}").unwrap_err();
    assert_eq!(err.reason(), "collateral_invalid");
}

#[test]
fn next_update_is_when_the_collateral_stops_verifying() {
    let s = v4();
    let trust = s.trust();
    let (at, fmspc) = trust.collateral.next_update().expect("dated collateral");
    assert_eq!(fmspc, "b0c06f000000");
    assert!(at > s.now, "the sample's time is inside the window");
    assert!(verify_quote(&s.quote, &trust, at - 60).is_ok());
    let err = verify_quote(&s.quote, &trust, at + 86_400).unwrap_err();
    assert_eq!(err.reason(), "collateral_expired", "{err}");
    assert_eq!(Collateral::default().next_update(), None);
}
