//! The TD itself, beyond the measurements of its code: the configuration a
//! TD report states (TDX module, TD attributes, XFAM, host-chosen IDs, TCB
//! SVN) and the registry's rules for it. Pure: a [`TdConfig`] and a
//! [`TdPolicy`] in, a verdict out.

use crate::AttestError;

/// A TD's configuration, as its report states it. Both evidence kinds carry
/// it: a TDX quote's TD report, and the simulated quote's copy of its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdConfig {
    /// TEE_TCB_SVN: the TDX module's security version, component by component.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: the measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// TD attributes (debug, SEPT_VE_DISABLE, migration, …), as in the report.
    pub td_attributes: [u8; 8],
    /// XFAM: the extended CPU features (XSAVE components) the TD may use.
    pub xfam: [u8; 8],
    /// MRCONFIGID, MROWNER, MROWNERCONFIG: set by the host when it creates
    /// the TD, not measured code. Kokon's images use none of them.
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
}

/// A [`TdConfig`] in hex, the way a registry's `[attestation.td]` table
/// spells it (so an operator can pin what `kokon attest` prints).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TdConfigView {
    pub tee_tcb_svn: String,
    pub mr_seam: String,
    pub td_attributes: String,
    pub xfam: String,
    pub mr_config_id: String,
    pub mr_owner: String,
    pub mr_owner_config: String,
}

impl From<&TdConfig> for TdConfigView {
    fn from(td: &TdConfig) -> Self {
        Self {
            tee_tcb_svn: hex::encode(td.tee_tcb_svn),
            mr_seam: hex::encode(td.mr_seam),
            td_attributes: hex::encode(td.td_attributes),
            xfam: hex::encode(td.xfam),
            mr_config_id: hex::encode(td.mr_config_id),
            mr_owner: hex::encode(td.mr_owner),
            mr_owner_config: hex::encode(td.mr_owner_config),
        }
    }
}

/// The XFAM of a TD with x87, SSE, AVX, AVX-512, PKRU and AMX (the usual
/// configuration of current Xeons), as the report stores it (little-endian).
pub const COMMON_XFAM: [u8; 8] = [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0];

impl TdConfig {
    /// A non-debug TD with [`COMMON_XFAM`] and every other field zero: what
    /// simulated evidence states unless told otherwise.
    pub fn simulated() -> Self {
        Self {
            tee_tcb_svn: [0; 16],
            mr_seam: [0; 48],
            td_attributes: [0; 8],
            xfam: COMMON_XFAM,
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
        }
    }

    pub fn is_debug(&self) -> bool {
        crate::evidence::td_is_debug(&self.td_attributes)
    }
}

/// XFAM bits the TDX module allows a TD to have (its `XFAM_FIXED0`) and
/// must have (`XFAM_FIXED1`: x87 and SSE).
const XFAM_ALLOWED: u64 = 0x0006_DBE7;
const XFAM_REQUIRED: u64 = 0x3;
const XFAM_AVX: u64 = 1 << 2;
const XFAM_AVX512: u64 = 0b111 << 5;
const XFAM_CET: u64 = 0b11 << 11;
const XFAM_AMX: u64 = 0b11 << 17;

/// Why an XFAM is not one the TDX module's rules allow; `None` if it is.
pub fn xfam_flaw(xfam: &[u8; 8]) -> Option<&'static str> {
    let x = u64::from_le_bytes(*xfam);
    let all_or_none = |group: u64| x & group == 0 || x & group == group;
    if x & !XFAM_ALLOWED != 0 {
        Some("it enables features a TD may not have")
    } else if x & XFAM_REQUIRED != XFAM_REQUIRED {
        Some("x87 and SSE are not both enabled")
    } else if !all_or_none(XFAM_AVX512) || (x & XFAM_AVX512 != 0 && x & XFAM_AVX == 0) {
        Some("AVX-512 is enabled in part, or without AVX")
    } else if !all_or_none(XFAM_CET) {
        Some("CET is enabled for one privilege level only")
    } else if !all_or_none(XFAM_AMX) {
        Some("AMX tile configuration and tile data differ")
    } else {
        None
    }
}

/// The registry's rules for the TD (its `[attestation.td]` table). A field
/// left `None` (or empty) pins nothing; the defaults are in
/// docs/ATTESTATION.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdPolicy {
    /// Accepted XFAM values. Always: the TDX module's own XFAM rules.
    pub xfam: Option<Vec<[u8; 8]>>,
    /// Accepted TD attributes. Always: no debug or profiling bits (unless
    /// the policy allows debug TDs).
    pub td_attributes: Option<Vec<[u8; 8]>>,
    /// Accepted TDX modules (MRSEAM values; Intel publishes them per release).
    pub mr_seam: Option<Vec<[u8; 48]>>,
    /// The exact MRCONFIGID, MROWNER and MROWNERCONFIG [default: all zero].
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    /// Lowest accepted TEE_TCB_SVN, compared component by component.
    pub min_tee_tcb_svn: Option<[u8; 16]>,
}

impl Default for TdPolicy {
    fn default() -> Self {
        Self {
            xfam: None,
            td_attributes: None,
            mr_seam: None,
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            min_tee_tcb_svn: None,
        }
    }
}

impl TdPolicy {
    /// Checks `td` against these rules; `allow_debug`: debug TDs pass (test
    /// networks). Each rule refuses with its own variant.
    pub fn check(&self, td: &TdConfig, allow_debug: bool) -> Result<(), AttestError> {
        if td.is_debug() && !allow_debug {
            return Err(AttestError::DebugTdRefused);
        }
        if let Some(flaw) = xfam_flaw(&td.xfam) {
            return Err(AttestError::XfamRefused {
                xfam: hex::encode(td.xfam),
                why: flaw.into(),
            });
        }
        if !listed(&self.xfam, &td.xfam) {
            return Err(AttestError::XfamRefused {
                xfam: hex::encode(td.xfam),
                why: "the registry pins other values".into(),
            });
        }
        if !listed(&self.td_attributes, &td.td_attributes) {
            return Err(AttestError::TdAttributesNotAllowed(hex::encode(
                td.td_attributes,
            )));
        }
        if !listed(&self.mr_seam, &td.mr_seam) {
            return Err(AttestError::MrSeamNotAllowed(hex::encode(td.mr_seam)));
        }
        self.check_host_ids(td)?;
        match &self.min_tee_tcb_svn {
            Some(min) if !at_least(&td.tee_tcb_svn, min) => Err(AttestError::TeeTcbSvnTooLow {
                svn: hex::encode(td.tee_tcb_svn),
                min: hex::encode(min),
            }),
            _ => Ok(()),
        }
    }

    fn check_host_ids(&self, td: &TdConfig) -> Result<(), AttestError> {
        if td.mr_config_id != self.mr_config_id {
            return Err(AttestError::MrConfigIdMismatch(hex::encode(
                td.mr_config_id,
            )));
        }
        if td.mr_owner != self.mr_owner {
            return Err(AttestError::MrOwnerMismatch(hex::encode(td.mr_owner)));
        }
        if td.mr_owner_config != self.mr_owner_config {
            return Err(AttestError::MrOwnerConfigMismatch(hex::encode(
                td.mr_owner_config,
            )));
        }
        Ok(())
    }
}

fn listed<const N: usize>(pins: &Option<Vec<[u8; N]>>, value: &[u8; N]) -> bool {
    pins.as_ref().is_none_or(|list| list.contains(value))
}

/// Whether every component of `svn` is at least that of `min`.
fn at_least(svn: &[u8; 16], min: &[u8; 16]) -> bool {
    svn.iter().zip(min).all(|(have, need)| have >= need)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xfam(x: u64) -> [u8; 8] {
        x.to_le_bytes()
    }

    #[test]
    fn xfam_rules_follow_the_tdx_module() {
        assert_eq!(xfam_flaw(&COMMON_XFAM), None);
        assert_eq!(xfam_flaw(&xfam(0x3)), None, "x87 and SSE alone");
        assert_eq!(xfam_flaw(&xfam(0x3 | 0b11 << 11)), None, "CET both levels");
        for (bad, why) in [
            (0x1, "x87 and SSE"),
            (0x2e7 | 1 << 3, "features a TD may not have"), // MPX
            (0x2e7 | 1 << 40, "features a TD may not have"),
            (0x3 | 1 << 5, "AVX-512"),
            (0x3 | 0b111 << 5, "AVX-512"), // without AVX
            (0x3 | 1 << 11, "CET"),
            (0x3 | 1 << 17, "AMX"),
        ] {
            let flaw = xfam_flaw(&xfam(bad)).unwrap_or_else(|| panic!("{bad:#x} passed"));
            assert!(flaw.contains(why), "{bad:#x}: {flaw}");
        }
    }

    #[test]
    fn tcb_svn_is_compared_component_by_component() {
        let min = [3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut svn = min;
        assert!(at_least(&svn, &min));
        svn[0] = 9;
        assert!(at_least(&svn, &min));
        svn[2] = 1; // higher major, lower minor: still refused
        assert!(!at_least(&svn, &min));
    }

    #[test]
    fn each_rule_refuses_with_its_own_variant() {
        let td = TdConfig::simulated();
        let p = TdPolicy::default();
        p.check(&td, false).unwrap();
        let refuse = |p: &TdPolicy, td: &TdConfig| p.check(td, false).unwrap_err().reason();
        let mut debug = td.clone();
        debug.td_attributes[0] = 1;
        assert_eq!(refuse(&p, &debug), "debug_td_refused");
        assert!(p.check(&debug, true).is_ok());
        let pinned = |f: fn(&mut TdPolicy)| {
            let mut p = TdPolicy::default();
            f(&mut p);
            refuse(&p, &td)
        };
        assert_eq!(pinned(|p| p.xfam = Some(vec![xfam(3)])), "xfam_refused");
        assert_eq!(
            pinned(|p| p.td_attributes = Some(vec![[0, 0, 0, 0x10, 0, 0, 0, 0]])),
            "td_attributes_not_allowed"
        );
        assert_eq!(
            pinned(|p| p.mr_seam = Some(vec![[7; 48]])),
            "mr_seam_not_allowed"
        );
        assert_eq!(
            pinned(|p| p.mr_config_id = [1; 48]),
            "mr_config_id_mismatch"
        );
        assert_eq!(pinned(|p| p.mr_owner = [1; 48]), "mr_owner_mismatch");
        assert_eq!(
            pinned(|p| p.mr_owner_config = [1; 48]),
            "mr_owner_config_mismatch"
        );
        assert_eq!(
            pinned(|p| p.min_tee_tcb_svn = Some([1; 16])),
            "tee_tcb_svn_too_low"
        );
        let mut broken = td.clone();
        broken.xfam = xfam(1);
        assert_eq!(refuse(&p, &broken), "xfam_refused");
    }
}
