//! Bounded parsing of bags of cells from outside (a TON API's answers).
//!
//! tonlib-core's parser trusts the header: a cell count of 2³² reserves
//! memory for that many cells, and a reference past the last cell panics
//! (found by the `ton_api` fuzz target). [`parse`] walks the serialized
//! layout first (`serialized_boc#b5ee9c72`) and hands tonlib-core only bags
//! whose counts fit the bytes and whose references and roots point at
//! cells that exist.

use tonlib_core::cell::{ArcCell, BagOfCells};

use crate::TonError;

/// Largest bag of cells accepted (get-method results and contract states
/// are far smaller).
pub const MAX_BOC: usize = 1 << 20;

const MAGIC: u32 = 0xb5ee_9c72;

fn bad(why: &str) -> TonError {
    TonError::BadResponse(format!("malformed bag of cells: {why}"))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], TonError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| bad("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<usize, TonError> {
        if n > 8 {
            return Err(bad("integer wider than 8 bytes"));
        }
        let v = self
            .bytes(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        usize::try_from(v).map_err(|_| bad("integer out of range"))
    }

    fn left(&self) -> usize {
        self.b.len() - self.at
    }
}

/// Checks the layout of `bytes` as a bag of cells.
pub fn check(bytes: &[u8]) -> Result<(), TonError> {
    if bytes.len() > MAX_BOC {
        return Err(bad("over 1 MiB"));
    }
    let mut r = Reader { b: bytes, at: 0 };
    if r.uint(4)? != MAGIC as usize {
        return Err(bad("not the generic magic b5ee9c72"));
    }
    let flags = r.uint(1)?;
    let (has_idx, size) = (flags & 0x80 != 0, flags & 0x07);
    if size == 0 || size > 4 {
        return Err(bad("reference size not 1..4"));
    }
    let off_bytes = r.uint(1)?;
    if off_bytes == 0 || off_bytes > 8 {
        return Err(bad("offset size not 1..8"));
    }
    let (cells, roots, absent) = (r.uint(size)?, r.uint(size)?, r.uint(size)?);
    let _total = r.uint(off_bytes)?;
    // Every cell takes at least its two descriptor bytes.
    if cells == 0 || cells > r.left() / 2 || roots == 0 || roots > cells || absent > cells {
        return Err(bad("counts do not fit the bytes"));
    }
    for _ in 0..roots {
        if r.uint(size)? >= cells {
            return Err(bad("root index past the last cell"));
        }
    }
    if has_idx {
        r.bytes(
            cells
                .checked_mul(off_bytes)
                .ok_or_else(|| bad("index size"))?,
        )?;
    }
    for i in 0..cells {
        let (d1, d2) = (r.uint(1)?, r.uint(1)?);
        let refs = d1 & 7;
        if refs > 4 {
            return Err(bad("more than 4 references"));
        }
        if d1 & 0x10 != 0 {
            return Err(bad("cells with stored hashes are not supported"));
        }
        r.bytes(d2.div_ceil(2))?;
        for _ in 0..refs {
            let to = r.uint(size)?;
            if to <= i || to >= cells {
                return Err(bad("reference not to a later cell"));
            }
        }
    }
    Ok(())
}

/// The single root of a checked bag of cells.
pub fn parse(bytes: &[u8]) -> Result<ArcCell, TonError> {
    check(bytes)?;
    Ok(BagOfCells::parse(bytes)?.single_root()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonlib_core::cell::CellBuilder;

    fn sample() -> Vec<u8> {
        let mut child = CellBuilder::new();
        child.store_u32(32, 7).unwrap();
        let child = std::sync::Arc::new(child.build().unwrap());
        let mut root = CellBuilder::new();
        root.store_u8(8, 1)
            .unwrap()
            .store_reference(&child)
            .unwrap();
        BagOfCells::from_root(root.build().unwrap())
            .serialize(true)
            .unwrap()
    }

    #[test]
    fn a_real_bag_passes_and_parses() {
        let b = sample();
        check(&b).unwrap();
        assert_eq!(parse(&b).unwrap().references().len(), 1);
    }

    #[test]
    fn lies_in_the_header_are_refused_before_tonlib_sees_them() {
        let b = sample();
        // Layout: magic(4) flags(1) off_bytes(1) cells roots absent (size 1 each) total ...
        let mut huge = b.clone();
        huge[6] = 0xff; // 255 cells in a few bytes
        assert!(check(&huge).is_err());
        let mut dangling = b.clone();
        // The root cell's reference (its last byte before the child cell) points past the end.
        let root_ref = 4 + 1 + 1 + 3 + 1 + 1 + 2 + 1;
        dangling[root_ref] = 9;
        assert!(check(&dangling).is_err());
        assert!(parse(&dangling).is_err());
        assert!(check(&b[..b.len() - 7]).is_err());
        assert!(check(b"").is_err());
    }
}
