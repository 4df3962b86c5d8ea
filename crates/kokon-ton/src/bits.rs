//! Reading cells that come from outside (get-method results): a bounds-
//! checked bit reader, standard addresses, and `Hashmap 256` dictionaries.
//!
//! tonlib-core's cell parser and dictionary parser panic on some malformed
//! cells (found by the `ton_api` fuzz target: a zero-width integer in a
//! dictionary label), so nothing from a TON API goes through them; every
//! read here returns an error instead.

use kokon_money::Address;
use tonlib_core::cell::{ArcCell, Cell};

use crate::TonError;

/// Most entries read from one dictionary.
pub const MAX_ENTRIES: usize = 4096;

fn bad(why: &str) -> TonError {
    TonError::BadResponse(format!("malformed cell: {why}"))
}

/// Reads a cell's data bits and references in order.
pub struct BitReader<'a> {
    cell: &'a Cell,
    bit: usize,
    next_ref: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(cell: &'a Cell) -> Self {
        Self {
            cell,
            bit: 0,
            next_ref: 0,
        }
    }

    pub fn remaining(&self) -> usize {
        self.cell.bit_len() - self.bit
    }

    pub fn bit(&mut self) -> Result<bool, TonError> {
        if self.bit >= self.cell.bit_len() {
            return Err(bad("read past the end of the data"));
        }
        let byte = self.cell.data()[self.bit / 8];
        let v = byte & (0x80 >> (self.bit % 8)) != 0;
        self.bit += 1;
        Ok(v)
    }

    /// An unsigned integer of `width` ≤ 64 bits.
    pub fn uint(&mut self, width: usize) -> Result<u64, TonError> {
        if width > 64 {
            return Err(bad("integer wider than 64 bits"));
        }
        (0..width).try_fold(0u64, |acc, _| Ok((acc << 1) | u64::from(self.bit()?)))
    }

    pub fn bytes<const N: usize>(&mut self) -> Result<[u8; N], TonError> {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.uint(8)? as u8;
        }
        Ok(out)
    }

    pub fn reference(&mut self) -> Result<&'a ArcCell, TonError> {
        let r = self
            .cell
            .references()
            .get(self.next_ref)
            .ok_or_else(|| bad("missing reference"))?;
        self.next_ref += 1;
        Ok(r)
    }

    /// A standard internal address (`addr_std$10 anycast:0 wc:int8 hash:bits256`).
    pub fn address(&mut self) -> Result<Address, TonError> {
        if self.uint(2)? != 0b10 {
            return Err(bad("not a standard address"));
        }
        if self.bit()? {
            return Err(bad("anycast addresses are not used"));
        }
        let wc = self.uint(8)? as u8 as i8;
        Ok(Address::new(wc, self.bytes::<32>()?))
    }
}

/// Bits needed for a number up to `max` (`#<= max`).
fn len_bits(max: usize) -> usize {
    (usize::BITS - max.leading_zeros()) as usize
}

/// An `HmLabel ~l m`: returns the label's bits.
fn label(r: &mut BitReader<'_>, m: usize) -> Result<Vec<bool>, TonError> {
    if !r.bit()? {
        // hml_short$0: unary length, then the bits.
        let mut n = 0;
        while r.bit()? {
            n += 1;
            if n > m {
                return Err(bad("label longer than the key"));
            }
        }
        return (0..n).map(|_| r.bit()).collect();
    }
    if !r.bit()? {
        // hml_long$10
        let n = r.uint(len_bits(m))? as usize;
        if n > m {
            return Err(bad("label longer than the key"));
        }
        return (0..n).map(|_| r.bit()).collect();
    }
    // hml_same$11
    let v = r.bit()?;
    let n = r.uint(len_bits(m))? as usize;
    if n > m {
        return Err(bad("label longer than the key"));
    }
    Ok(vec![v; n])
}

/// A 256-bit-keyed dictionary whose root cell is `root` (what a get-method
/// returns for a `map`), each value read by `value`. Sorted by key.
pub fn dict256<V>(
    root: &Cell,
    value: fn(&mut BitReader<'_>) -> Result<V, TonError>,
) -> Result<Vec<([u8; 32], V)>, TonError> {
    let mut out = Vec::new();
    walk(root, 256, &mut Vec::with_capacity(256), value, &mut out)?;
    out.sort_by_key(|e| e.0);
    Ok(out)
}

fn walk<V>(
    cell: &Cell,
    n: usize,
    prefix: &mut Vec<bool>,
    value: fn(&mut BitReader<'_>) -> Result<V, TonError>,
    out: &mut Vec<([u8; 32], V)>,
) -> Result<(), TonError> {
    let mut r = BitReader::new(cell);
    let l = label(&mut r, n)?;
    let depth = prefix.len();
    prefix.extend_from_slice(&l);
    let m = n - l.len();
    if m == 0 {
        if out.len() >= MAX_ENTRIES {
            return Err(bad("dictionary over 4096 entries"));
        }
        let mut key = [0u8; 32];
        for (i, b) in prefix.iter().enumerate() {
            key[i / 8] |= u8::from(*b) << (7 - i % 8);
        }
        out.push((key, value(&mut r)?));
    } else {
        let (left, right) = (r.reference()?, r.reference()?);
        for (bit, child) in [(false, left), (true, right)] {
            prefix.push(bit);
            walk(child, m - 1, prefix, value, out)?;
            prefix.pop();
        }
    }
    prefix.truncate(depth);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    use tonlib_core::TonHash;
    use tonlib_core::cell::CellBuilder;

    #[test]
    fn reads_what_tonlib_writes() {
        let mut map: HashMap<num_bigint::BigUint, u8> = HashMap::new();
        for k in [1u8, 2, 200, 255] {
            let key = TonHash::from([k; 32]);
            map.insert(num_bigint::BigUint::from_bytes_be(key.as_slice()), k);
        }
        let mut b = CellBuilder::new();
        fn write(b: &mut CellBuilder, v: u8) -> Result<(), tonlib_core::cell::TonCellError> {
            b.store_u8(8, v).map(|_| ())
        }
        b.store_dict_data(256, write, map).unwrap();
        let root = b.build().unwrap();
        let got = dict256(&root, |r| Ok(r.uint(8)? as u8)).unwrap();
        assert_eq!(
            got,
            vec![
                ([1; 32], 1),
                ([2; 32], 2),
                ([200; 32], 200),
                ([255; 32], 255)
            ]
        );
    }

    #[test]
    fn malformed_cells_are_errors() {
        let mut b = CellBuilder::new();
        b.store_u8(2, 0b10).unwrap(); // a long label with no length
        let c = b.build().unwrap();
        assert!(dict256(&c, |r| r.bit()).is_err());
        let mut b = CellBuilder::new();
        b.store_bit(false).unwrap().store_u8(8, 0).unwrap(); // fork without references
        assert!(dict256(&b.build().unwrap(), |r| r.bit()).is_err());
        let empty = Arc::new(Cell::default());
        assert!(BitReader::new(&empty).address().is_err());
        assert!(BitReader::new(&empty).uint(65).is_err());
    }
}
