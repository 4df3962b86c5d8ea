//! The registry's TD policy as a cell (the contract stores it as the owner
//! sets it and returns it from `tdPolicy`):
//!
//! ```text
//! td_policy$_ min_tee_tcb_svn:(Maybe bits128)
//!             xfam:(Maybe ^Bytes) td_attributes:(Maybe ^Bytes)
//!             mr_seam:(Maybe ^Bytes) host_ids:(Maybe ^Bytes) = TdPolicy;
//! ```
//!
//! `Bytes` is a snake of bytes (continued in the first reference): the list's
//! values back to back (8 bytes per XFAM or TD attributes value, 48 per
//! MRSEAM); `host_ids` is MRCONFIGID ‖ MROWNER ‖ MROWNERCONFIG (absent: all
//! zero). An absent list pins nothing. The empty cell (the contract's initial
//! value) is the default policy.

use kokon_attest::TdPolicy;
use tonlib_core::cell::{ArcCell, Cell, CellBuilder};

use crate::TonError;
use crate::bits::BitReader;
use crate::cells::{R, bytes_cell};

fn read_bytes(c: &Cell, max: usize) -> R<Vec<u8>> {
    crate::cells::read_bytes(c, max).map_err(|e| bad(&e.to_string()))
}

/// Most values one list may hold.
pub const MAX_PINS: usize = 64;

fn bad(why: &str) -> TonError {
    TonError::BadResponse(format!("TD policy cell: {why}"))
}

/// `policy` as the registry contract stores it.
pub fn td_policy_cell(policy: &TdPolicy) -> R<ArcCell> {
    let mut b = CellBuilder::new();
    b.store_bit(policy.min_tee_tcb_svn.is_some())?;
    if let Some(svn) = &policy.min_tee_tcb_svn {
        b.store_slice(svn)?;
    }
    let lists = [
        flat(&policy.xfam),
        flat(&policy.td_attributes),
        flat(&policy.mr_seam),
        host_ids(policy),
    ];
    for list in lists {
        b.store_bit(list.is_some())?;
        if let Some(bytes) = list {
            b.store_reference(&bytes_cell(&bytes)?)?;
        }
    }
    Ok(std::sync::Arc::new(b.build()?))
}

fn flat<const N: usize>(list: &Option<Vec<[u8; N]>>) -> Option<Vec<u8>> {
    list.as_ref().map(|l| l.concat())
}

fn host_ids(p: &TdPolicy) -> Option<Vec<u8>> {
    let ids = [p.mr_config_id, p.mr_owner, p.mr_owner_config].concat();
    ids.iter().any(|b| *b != 0).then_some(ids)
}

/// Reads a TD policy cell (from a get-method: bounded, never panics).
pub fn read_td_policy(cell: &Cell) -> R<TdPolicy> {
    let mut p = TdPolicy::default();
    if cell.bit_len() == 0 && cell.references().is_empty() {
        return Ok(p);
    }
    let mut r = BitReader::new(cell);
    if r.bit()? {
        p.min_tee_tcb_svn = Some(r.bytes::<16>()?);
    }
    p.xfam = maybe_list(&mut r)?;
    p.td_attributes = maybe_list(&mut r)?;
    p.mr_seam = maybe_list(&mut r)?;
    if r.bit()? {
        let ids = read_bytes(r.reference()?, 144)?;
        let ids: [u8; 144] = ids
            .try_into()
            .map_err(|_| bad("host IDs are not 144 bytes"))?;
        let part = |i: usize| ids[i * 48..(i + 1) * 48].try_into().unwrap_or([0; 48]);
        (p.mr_config_id, p.mr_owner, p.mr_owner_config) = (part(0), part(1), part(2));
    }
    if r.remaining() != 0 {
        return Err(bad("trailing bits"));
    }
    Ok(p)
}

fn maybe_list<const N: usize>(r: &mut BitReader<'_>) -> R<Option<Vec<[u8; N]>>> {
    if !r.bit()? {
        return Ok(None);
    }
    let bytes = read_bytes(r.reference()?, N * MAX_PINS)?;
    if !bytes.len().is_multiple_of(N) {
        return Err(bad(&format!(
            "a list of {N}-byte values holds {} bytes",
            bytes.len()
        )));
    }
    let values = bytes.chunks(N).map(|c| c.try_into().unwrap_or([0; N]));
    Ok(Some(values.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned() -> TdPolicy {
        TdPolicy {
            xfam: Some(vec![
                kokon_attest::td::COMMON_XFAM,
                [3, 0, 0, 0, 0, 0, 0, 0],
            ]),
            td_attributes: Some(vec![]),
            mr_seam: Some((0..5).map(|i| [i; 48]).collect()),
            mr_config_id: [0; 48],
            mr_owner: [7; 48],
            mr_owner_config: [0; 48],
            min_tee_tcb_svn: Some([3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        }
    }

    #[test]
    fn round_trips_and_the_empty_cell_is_the_default() {
        for p in [pinned(), TdPolicy::default()] {
            let cell = td_policy_cell(&p).unwrap();
            assert_eq!(read_td_policy(&cell).unwrap(), p);
        }
        let empty = CellBuilder::new().build().unwrap();
        assert_eq!(read_td_policy(&empty).unwrap(), TdPolicy::default());
    }

    #[test]
    fn malformed_cells_are_refused_not_misread() {
        // A list of XFAMs whose length is not a multiple of 8.
        let mut b = CellBuilder::new();
        let r = bytes_cell(&[1, 2, 3]).unwrap();
        b.store_bit(false).unwrap().store_bit(true).unwrap();
        b.store_reference(&r).unwrap();
        b.store_bits(3, &[0]).unwrap();
        assert!(read_td_policy(&b.build().unwrap()).is_err());
        // Too many MRSEAM values.
        let mut many = pinned();
        many.mr_seam = Some(vec![[1; 48]; MAX_PINS + 1]);
        let cell = td_policy_cell(&many).unwrap();
        let err = read_td_policy(&cell).unwrap_err().to_string();
        assert!(err.contains("over"), "{err}");
        // Trailing bits after the last flag.
        let mut b = CellBuilder::new();
        b.store_bits(6, &[0]).unwrap();
        assert!(read_td_policy(&b.build().unwrap()).is_err());
    }
}
