//! The TON cell layout of signed messages.
//!
//! Vouchers and receipts are signed over the *representation hash* of an
//! ordinary TON cell without references (≤ 1023 data bits), so a TON
//! contract can check the same signature with `CHKSIGNU` over `cell.hash()`.
//! This module builds exactly those bits and hashes them; the layouts are in
//! docs/ECONOMICS.md.

use sha2::{Digest, Sha256};

/// Maximum data bits of one cell.
pub const MAX_BITS: usize = 1023;

/// Largest value `Coins` (VarUInteger 16) can hold: 2^120 - 1.
pub const MAX_COINS: u128 = (1u128 << 120) - 1;

/// A cell's data bits, built most significant bit first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CellBits {
    bytes: Vec<u8>,
    bits: usize,
}

impl CellBits {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of data bits so far.
    pub fn len(&self) -> usize {
        self.bits
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The data, most significant bit first, padded with zero bits to whole bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn push_bit(&mut self, bit: bool) {
        if self.bits.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> (self.bits % 8);
        }
        self.bits += 1;
    }

    /// Appends the low `width` bits of `value`, big-endian (`uintN`).
    pub fn uint(mut self, value: u128, width: usize) -> Self {
        debug_assert!(width <= 128 && (width == 128 || value >> width == 0));
        for i in (0..width).rev() {
            self.push_bit((value >> i) & 1 == 1);
        }
        self
    }

    /// Appends bytes as a bit string (`bitsN` / `uintN` for N = 8·len).
    pub fn bytes(mut self, data: &[u8]) -> Self {
        for b in data {
            self = self.uint(u128::from(*b), 8);
        }
        self
    }

    /// Appends `Coins`: a 4-bit byte length, then that many big-endian bytes.
    /// Callers check `value <= MAX_COINS` first.
    pub fn coins(self, value: u128) -> Self {
        debug_assert!(value <= MAX_COINS);
        let len = (128 - value.leading_zeros()).div_ceil(8) as usize;
        self.uint(len as u128, 4).uint(value, len * 8)
    }

    /// Appends a standard internal address (`addr_std$10 anycast:0 wc:int8 hash:bits256`).
    pub fn std_address(self, workchain: i8, hash: &[u8; 32]) -> Self {
        self.uint(0b10, 2)
            .uint(0, 1)
            .uint(u128::from(workchain as u8), 8)
            .bytes(hash)
    }

    /// The representation hash of the ordinary cell holding these bits and
    /// no references: `sha256(d1 ‖ d2 ‖ padded data)`.
    pub fn repr_hash(&self) -> [u8; 32] {
        assert!(self.bits <= MAX_BITS, "cell of {} bits", self.bits);
        let d1 = 0u8; // no refs, ordinary, level 0
        let d2 = (self.bits / 8 + self.bits.div_ceil(8)) as u8;
        let mut data = self.bytes.clone();
        if !self.bits.is_multiple_of(8) {
            let last = data.len() - 1;
            data[last] |= 0x80 >> (self.bits % 8);
        }
        let mut h = Sha256::new();
        h.update([d1, d2]);
        h.update(&data);
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The well-known hash of the empty cell. Arbitrary layouts are checked
    // against tonlib-core in tests/cells.rs.
    #[test]
    fn empty_cell_hash_matches_ton() {
        assert_eq!(
            hex::encode(CellBits::new().repr_hash()),
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
        );
    }

    #[test]
    fn coins_layout() {
        let c = CellBits::new().coins(0);
        assert_eq!(c.len(), 4);
        let c = CellBits::new().coins(1_000_000_000); // 0x3B9ACA00: 4 bytes
        assert_eq!(c.len(), 4 + 32);
        assert_eq!(c.bytes, vec![0x43, 0xB9, 0xAC, 0xA0, 0x00]);
        assert_eq!(CellBits::new().coins(MAX_COINS).len(), 4 + 120);
    }

    #[test]
    fn address_is_267_bits() {
        assert_eq!(CellBits::new().std_address(0, &[7; 32]).len(), 267);
        assert_eq!(
            CellBits::new().std_address(-1, &[0; 32]).bytes[0],
            0b1001_1111
        );
    }
}
