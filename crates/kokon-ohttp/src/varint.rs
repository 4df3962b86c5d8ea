//! QUIC variable-length integers (RFC 9000 §16), which binary HTTP and
//! chunked OHTTP use for every length.

/// Largest value a variable-length integer holds.
pub const MAX: u64 = (1 << 62) - 1;

/// Appends `v` (at most [`MAX`]) in its shortest encoding.
pub fn put(out: &mut Vec<u8>, v: u64) {
    debug_assert!(v <= MAX);
    match v {
        0..=0x3f => out.push(v as u8),
        0x40..=0x3fff => out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

/// Reads one integer from the front of `b`: its value and encoded length,
/// or `None` if `b` holds only part of it.
pub fn get(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    Some((v, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_9000_examples() {
        // RFC 9000 Appendix A.1.
        for (hex_in, v) in [
            ("c2197c5eff14e88c", 151_288_809_941_952_652u64),
            ("9d7f3e7d", 494_878_333),
            ("7bbd", 15_293),
            ("25", 37),
        ] {
            let b = hex::decode(hex_in).unwrap();
            assert_eq!(get(&b), Some((v, b.len())));
            let mut out = Vec::new();
            put(&mut out, v);
            assert_eq!(out, b);
        }
        assert_eq!(get(&[0x40]), None, "a two-byte integer cut short");
        assert_eq!(get(&[]), None);
    }

    proptest::proptest! {
        #[test]
        fn round_trip(v in 0..=MAX) {
            let mut out = Vec::new();
            put(&mut out, v);
            proptest::prop_assert_eq!(get(&out), Some((v, out.len())));
        }
    }
}
