//! Prices and the cost of a job, in exact integer arithmetic.
//!
//! cost = ⌊ Σₖ tokensₖ · multₖ · base · coef / 10¹² ⌋ nanotons, where
//! `base` is nanotons per million tokens, `multₖ` the per-kind multiplier
//! and `coef` the worker's price coefficient, both in thousandths. Rounding
//! happens once, at the end, down: the payer never pays for a fraction of a
//! nanoton. The commission is ⌊cost · bps / 10 000⌋ and the worker gets the
//! rest, so the two always add up to the cost exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::MoneyError;

/// An amount of TON in nanotons (10⁻⁹ TON).
pub type Nanotons = u128;

/// Token counts of one job, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt: u64,
    pub cached_prompt: u64,
    pub completion: u64,
    pub reasoning: u64,
}

/// Per-kind multipliers in thousandths (1000 = the base price).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindMultipliers {
    pub prompt: u32,
    pub cached_prompt: u32,
    pub completion: u32,
    pub reasoning: u32,
}

impl Default for KindMultipliers {
    fn default() -> Self {
        Self {
            prompt: 1000,
            cached_prompt: 250,
            completion: 3000,
            reasoning: 3000,
        }
    }
}

/// The registry's price table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Base price in nanotons per million tokens, for models without their own.
    pub base_per_million: u64,
    /// Base prices of particular models (by served name).
    #[serde(default)]
    pub models: BTreeMap<String, u64>,
    #[serde(default)]
    pub multipliers: KindMultipliers,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            // 0.01 TON per million prompt tokens at coefficient 1.0.
            base_per_million: 10_000_000,
            models: BTreeMap::new(),
            multipliers: KindMultipliers::default(),
        }
    }
}

impl PriceTable {
    /// Base price of `model` in nanotons per million tokens.
    pub fn base(&self, model: &str) -> u64 {
        self.models
            .get(model)
            .copied()
            .unwrap_or(self.base_per_million)
    }

    /// The exact cost of `usage` on `model` at worker coefficient `coef_milli`.
    pub fn cost(
        &self,
        model: &str,
        usage: &TokenUsage,
        coef_milli: u32,
    ) -> Result<Nanotons, MoneyError> {
        let m = &self.multipliers;
        let weighted = [
            (usage.prompt, m.prompt),
            (usage.cached_prompt, m.cached_prompt),
            (usage.completion, m.completion),
            (usage.reasoning, m.reasoning),
        ]
        .iter()
        .try_fold(0u128, |acc, (t, k)| {
            acc.checked_add(u128::from(*t) * u128::from(*k))
        })
        .ok_or(MoneyError::Overflow)?;
        let scaled = weighted
            .checked_mul(u128::from(self.base(model)))
            .and_then(|x| x.checked_mul(u128::from(coef_milli)))
            .ok_or(MoneyError::Overflow)?;
        Ok(scaled / 1_000_000_000_000)
    }
}

/// Splits a job's cost into (worker fee, proxy commission).
pub fn split(cost: Nanotons, commission_bps: u16) -> (Nanotons, Nanotons) {
    let commission = cost * u128::from(commission_bps.min(10_000)) / 10_000;
    (cost - commission, commission)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usage(prompt: u64, completion: u64) -> TokenUsage {
        TokenUsage {
            prompt,
            completion,
            ..Default::default()
        }
    }

    #[test]
    fn worked_example() {
        let t = PriceTable::default();
        // 1M prompt tokens at coefficient 1.0 = base.
        assert_eq!(t.cost("m", &usage(1_000_000, 0), 1000).unwrap(), 10_000_000);
        // 100 prompt + 50 completion: (100·1000 + 50·3000)·10⁷·1000/10¹² = 2500.
        assert_eq!(t.cost("m", &usage(100, 50), 1000).unwrap(), 2500);
        // Coefficient 1.5 scales exactly.
        assert_eq!(t.cost("m", &usage(100, 50), 1500).unwrap(), 3750);
        // Rounds down once: 1 prompt token is 10 nanotons; at 0.0001 it is 0.
        assert_eq!(t.cost("m", &usage(1, 0), 1000).unwrap(), 10);
        assert_eq!(t.cost("m", &usage(1, 0), 1).unwrap(), 0);
    }

    #[test]
    fn model_overrides_base() {
        let mut t = PriceTable::default();
        t.models.insert("big".into(), 50_000_000);
        assert_eq!(
            t.cost("big", &usage(1_000_000, 0), 1000).unwrap(),
            50_000_000
        );
        assert_eq!(
            t.cost("small", &usage(1_000_000, 0), 1000).unwrap(),
            10_000_000
        );
    }

    #[test]
    fn overflow_is_an_error() {
        let t = PriceTable {
            base_per_million: u64::MAX,
            ..Default::default()
        };
        let u = TokenUsage {
            prompt: u64::MAX,
            cached_prompt: u64::MAX,
            completion: u64::MAX,
            reasoning: u64::MAX,
        };
        assert_eq!(t.cost("m", &u, u32::MAX), Err(MoneyError::Overflow));
    }

    proptest! {
        #[test]
        fn split_is_exact(cost in 0u128..(1u128 << 100), bps in 0u16..=10_000) {
            let (fee, commission) = split(cost, bps);
            prop_assert_eq!(fee + commission, cost);
            prop_assert!(commission <= cost);
        }

        #[test]
        fn cost_is_monotonic_in_tokens(p in 0u64..10_000_000, c in 0u64..10_000_000, extra in 0u64..1000, coef in 0u32..100_000) {
            let t = PriceTable::default();
            let a = t.cost("m", &usage(p, c), coef).unwrap();
            let b = t.cost("m", &usage(p + extra, c + extra), coef).unwrap();
            prop_assert!(a <= b);
        }
    }
}
