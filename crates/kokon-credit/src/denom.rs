//! Denominations: each credit key signs tokens of one value, `unit · 2^level`.
//!
//! A blind signer cannot see what it signs, so a token's value can only be
//! its key's: one key per denomination. Powers of two let any whole number
//! of units be paid, or given back as change, in at most one token per
//! level.

use crate::CreditError;

/// Nanotons (10⁻⁹ TON).
pub type Nanotons = u128;

/// The denominations of an issuer: `levels` keys, worth `unit · 2^k` for
/// `k < levels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub unit: Nanotons,
    pub levels: u8,
}

/// Most denominations an issuer may have (tokens up to `unit · 2^23`).
pub const MAX_LEVELS: u8 = 24;

impl Default for Schedule {
    /// 1 nanoton up to 2^23 of them (0.0084 TON), so change is exact: a
    /// chat job at the default prices costs 10¹–10⁵ nanotons, and a unit
    /// of 1 000 would keep up to 12× the cost of the smallest.
    fn default() -> Self {
        Self {
            unit: 1,
            levels: MAX_LEVELS,
        }
    }
}

impl Schedule {
    pub fn check(&self) -> Result<(), CreditError> {
        if self.unit == 0 || self.levels == 0 || self.levels > MAX_LEVELS {
            return Err(CreditError::Keys(format!(
                "a schedule needs a unit above 0 and 1 to {MAX_LEVELS} levels, not {} × {}",
                self.unit, self.levels
            )));
        }
        Ok(())
    }

    /// What a token of `level` is worth.
    pub fn value(&self, level: u8) -> Result<Nanotons, CreditError> {
        if level >= self.levels {
            return Err(CreditError::NoSuchLevel {
                level,
                levels: self.levels,
            });
        }
        Ok(self.unit << level)
    }

    /// The tokens (levels, largest first) that make up `amount` exactly:
    /// the binary digits of `amount / unit`, the top level repeated for
    /// what is above it. `amount` must be a whole number of units, and
    /// need fewer than [`crate::MAX_REQUESTS_PER_CALL`] top tokens.
    pub fn decompose(&self, amount: Nanotons) -> Result<Vec<u8>, CreditError> {
        if !amount.is_multiple_of(self.unit) {
            return Err(CreditError::NotWholeUnits(amount));
        }
        let units = amount / self.unit;
        let top = self.levels - 1;
        let top_units = 1u128 << top;
        // Whole top tokens beyond what the binary digits below can make.
        let repeats = (units / top_units).saturating_sub(1);
        let most = crate::MAX_REQUESTS_PER_CALL;
        let count =
            usize::try_from(repeats)
                .ok()
                .filter(|c| *c < most)
                .ok_or(CreditError::TooMany {
                    got: usize::MAX,
                    most,
                })?;
        let mut out = vec![top; count];
        let units = units - repeats * top_units;
        for level in (0..=top).rev() {
            if units & (1 << level) != 0 {
                out.push(level);
            }
        }
        Ok(out)
    }

    /// The change owed on a job prepaid `prepaid` and billed `billed`: what
    /// is left, rounded down to whole units (the issuer keeps less than one
    /// unit), and the tokens that make it up.
    pub fn change(
        &self,
        prepaid: Nanotons,
        billed: Nanotons,
    ) -> Result<(Nanotons, Vec<u8>), CreditError> {
        let left = prepaid.saturating_sub(billed);
        let whole = left - left % self.unit;
        Ok((whole, self.decompose(whole)?))
    }

    /// The sum of tokens of `levels`.
    pub fn total(&self, levels: &[u8]) -> Result<Nanotons, CreditError> {
        levels.iter().try_fold(0u128, |sum, l| {
            self.value(*l).map(|v| sum.saturating_add(v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Units of 1 000 nanotons, 16 levels (the arithmetic reads easier).
    const S: Schedule = Schedule {
        unit: 1_000,
        levels: 16,
    };

    #[test]
    fn decomposes_into_binary_digits() {
        let s = S;
        assert_eq!(s.decompose(0).unwrap(), Vec::<u8>::new());
        assert_eq!(s.decompose(1_000).unwrap(), vec![0]);
        assert_eq!(s.decompose(72_000).unwrap(), vec![6, 3]);
        assert_eq!(s.decompose(1_500), Err(CreditError::NotWholeUnits(1_500)));
        // Above the top denomination, the top one repeats.
        let big = 3 * (1_000u128 << 15) + 5_000;
        assert_eq!(s.decompose(big).unwrap(), vec![15, 15, 15, 2, 0]);
    }

    #[test]
    fn change_rounds_down_to_a_unit() {
        let s = S;
        assert_eq!(s.change(72_000, 2_500).unwrap(), (69_000, vec![6, 2, 0]));
        assert_eq!(s.change(1_000, 1_000).unwrap(), (0, vec![]));
        assert_eq!(s.change(1_000, 5_000).unwrap(), (0, vec![]));
    }

    proptest! {
        /// Money invariant: tokens of a decomposition are worth exactly the
        /// amount; change plus the bill never exceeds what was prepaid, and
        /// the issuer keeps less than a unit.
        #[test]
        fn decomposition_and_change_are_exact(units in 0u128..1u128 << 22, billed in 0u128..1u128 << 50) {
            let s = S;
            let amount = units * s.unit;
            let levels = s.decompose(amount).unwrap();
            prop_assert_eq!(s.total(&levels).unwrap(), amount);
            let (whole, change) = s.change(amount, billed).unwrap();
            prop_assert_eq!(s.total(&change).unwrap(), whole);
            let left = amount.saturating_sub(billed);
            prop_assert!(whole <= left && left - whole < s.unit);
        }
    }
}
