//! Checking a worker's receipt: the one place the proxy and the client
//! gateway agree on what a job costs.

use crate::error::ReceiptError;
use crate::keys::{Hash32, PublicKey};
use crate::message::{Receipt, Signed};
use crate::price::{Nanotons, PriceTable, TokenUsage};

/// Token bounds a job was admitted with; a receipt above them overstates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Prompt tokens (plain or cached).
    pub prompt: u64,
    /// Generated tokens (completion or reasoning).
    pub completion: u64,
}

impl Budget {
    /// The most any one job can cost: `max_context` tokens of prompt and
    /// of completion, on the dearest model, at `max_price_milli`.
    pub fn largest_cost(
        prices: &PriceTable,
        max_context: u32,
        max_price_milli: u32,
    ) -> Result<Nanotons, crate::MoneyError> {
        let dearest = prices
            .models
            .iter()
            .filter(|(_, base)| **base > prices.base_per_million)
            .max_by_key(|(_, base)| **base)
            .map_or("", |(m, _)| m.as_str());
        let all = u64::from(max_context);
        Budget {
            prompt: all,
            completion: all,
        }
        .max_cost(prices, dearest, max_price_milli)
    }

    /// The most a job within this budget can cost at `coef_milli`.
    pub fn max_cost(
        &self,
        prices: &PriceTable,
        model: &str,
        coef_milli: u32,
    ) -> Result<Nanotons, crate::MoneyError> {
        let m = &prices.multipliers;
        // Price every token at the dearer kind of its class.
        let (prompt, cached_prompt, completion, reasoning) = (
            if m.prompt >= m.cached_prompt {
                self.prompt
            } else {
                0
            },
            if m.prompt >= m.cached_prompt {
                0
            } else {
                self.prompt
            },
            if m.completion >= m.reasoning {
                self.completion
            } else {
                0
            },
            if m.completion >= m.reasoning {
                0
            } else {
                self.completion
            },
        );
        let usage = TokenUsage {
            prompt,
            cached_prompt,
            completion,
            reasoning,
        };
        prices.cost(model, &usage, coef_milli)
    }
}

/// What the verifier expects of a receipt.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    pub request_id: &'a str,
    pub model: &'a str,
    /// The model hashes the receipt may name: the one the worker announced
    /// (proxy), or those the registry allows under `model` (client); `None`
    /// when the verifier has no rule (a test network allowing any model).
    pub model_hashes: Option<&'a [Hash32]>,
    pub prices: &'a PriceTable,
    /// The agreed coefficient (the proxy knows the worker's), or `None`
    /// with `max_price_milli` as the cap (the client knows only its cap).
    pub price_milli: Option<u32>,
    pub max_price_milli: Option<u32>,
    pub budget: Budget,
    /// Generated tokens the verifier can bound from what it received, if any.
    pub completion_bound: Option<u64>,
}

/// Verifies `r` was signed by `worker` and charges exactly what its usage
/// costs within `expect`. Returns the cost.
pub fn check(
    r: &Signed<Receipt>,
    worker: &PublicKey,
    expect: &Expect<'_>,
) -> Result<Nanotons, ReceiptError> {
    let body = r.verify(worker).map_err(|_| ReceiptError::BadSignature)?;
    if body.request != Hash32::of(expect.request_id.as_bytes()) {
        return Err(ReceiptError::WrongRequest);
    }
    if let Some(allowed) = expect.model_hashes
        && !allowed.contains(&body.model)
    {
        return Err(ReceiptError::WrongModel {
            expected: allowed
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(" or "),
            got: body.model.to_string(),
        });
    }
    check_price(body, expect)?;
    check_usage(&body.usage, expect)?;
    let computed = expect
        .prices
        .cost(expect.model, &body.usage, body.price_milli)
        .map_err(|e| ReceiptError::Unpriceable(e.to_string()))?;
    if computed != body.cost {
        return Err(ReceiptError::WrongCost {
            claimed: body.cost,
            computed,
        });
    }
    Ok(body.cost)
}

fn check_price(body: &Receipt, expect: &Expect<'_>) -> Result<(), ReceiptError> {
    if let Some(p) = expect.price_milli
        && p != body.price_milli
    {
        return Err(ReceiptError::WrongPrice {
            expected: p,
            got: body.price_milli,
        });
    }
    if let Some(cap) = expect.max_price_milli
        && body.price_milli > cap
    {
        return Err(ReceiptError::WrongPrice {
            expected: cap,
            got: body.price_milli,
        });
    }
    Ok(())
}

fn check_usage(u: &TokenUsage, expect: &Expect<'_>) -> Result<(), ReceiptError> {
    let over = |what, got, bound| ReceiptError::OverstatesUsage { what, got, bound };
    let prompt = u.prompt.saturating_add(u.cached_prompt);
    if prompt > expect.budget.prompt {
        return Err(over("prompt tokens", prompt, expect.budget.prompt));
    }
    let generated = u.completion.saturating_add(u.reasoning);
    if generated > expect.budget.completion {
        return Err(over(
            "generated tokens",
            generated,
            expect.budget.completion,
        ));
    }
    if let Some(bound) = expect.completion_bound
        && generated > bound
    {
        return Err(over("generated tokens", generated, bound));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn receipt(key: &SecretKey, prompt: u64, completion: u64, cost: Nanotons) -> Signed<Receipt> {
        let r = Receipt {
            request: Hash32::of(b"req-1"),
            model: Hash32([1; 32]),
            usage: TokenUsage {
                prompt,
                completion,
                ..Default::default()
            },
            price_milli: 1000,
            cost,
        };
        Signed::sign(r, key).unwrap()
    }

    fn expect(prices: &PriceTable) -> Expect<'_> {
        Expect {
            request_id: "req-1",
            model: "m",
            model_hashes: Some(&[Hash32([1; 32])]),
            prices,
            price_milli: Some(1000),
            max_price_milli: None,
            budget: Budget {
                prompt: 100,
                completion: 50,
            },
            completion_bound: None,
        }
    }

    #[test]
    fn the_largest_job_is_priced_on_the_dearest_model() {
        let mut p = PriceTable::default();
        let at_base = Budget::largest_cost(&p, 32_768, 10_000).unwrap();
        // 32768 prompt ·1 + 32768 completion ·3, at 0.01 TON per million, ×10.
        assert_eq!(at_base, 13_107_200);
        p.models.insert("cheap".into(), 1);
        assert_eq!(Budget::largest_cost(&p, 32_768, 10_000).unwrap(), at_base);
        p.models.insert("dear".into(), 20_000_000);
        assert_eq!(
            Budget::largest_cost(&p, 32_768, 10_000).unwrap(),
            2 * at_base
        );
    }

    #[test]
    fn honest_receipt_passes() {
        let (k, p) = (SecretKey::from_bytes([1; 32]), PriceTable::default());
        assert_eq!(
            check(&receipt(&k, 100, 50, 2500), &k.public(), &expect(&p)),
            Ok(2500)
        );
    }

    #[test]
    fn each_lie_has_its_error() {
        let (k, p) = (SecretKey::from_bytes([1; 32]), PriceTable::default());
        let other = SecretKey::from_bytes([2; 32]).public();
        let e = expect(&p);
        assert_eq!(
            check(&receipt(&k, 100, 50, 2500), &other, &e),
            Err(ReceiptError::BadSignature)
        );
        assert!(matches!(
            check(&receipt(&k, 100, 50, 2501), &k.public(), &e),
            Err(ReceiptError::WrongCost { .. })
        ));
        assert!(matches!(
            check(&receipt(&k, 101, 50, 2510), &k.public(), &e),
            Err(ReceiptError::OverstatesUsage { .. })
        ));
        assert!(matches!(
            check(&receipt(&k, 10, 51, 1630), &k.public(), &e),
            Err(ReceiptError::OverstatesUsage { .. })
        ));
        let wrong_req = Expect {
            request_id: "req-2",
            ..e
        };
        assert_eq!(
            check(&receipt(&k, 1, 1, 40), &k.public(), &wrong_req),
            Err(ReceiptError::WrongRequest)
        );
        let wrong_model = Expect {
            model_hashes: Some(&[Hash32([9; 32]), Hash32([8; 32])]),
            ..e
        };
        assert!(matches!(
            check(&receipt(&k, 1, 1, 40), &k.public(), &wrong_model),
            Err(ReceiptError::WrongModel { .. })
        ));
        let wrong_price = Expect {
            price_milli: Some(900),
            ..e
        };
        assert!(matches!(
            check(&receipt(&k, 1, 1, 40), &k.public(), &wrong_price),
            Err(ReceiptError::WrongPrice { .. })
        ));
        let bounded = Expect {
            completion_bound: Some(3),
            ..e
        };
        assert!(matches!(
            check(&receipt(&k, 1, 4, 130), &k.public(), &bounded),
            Err(ReceiptError::OverstatesUsage { .. })
        ));
    }

    #[test]
    fn max_cost_bounds_every_receipt_within_budget() {
        let p = PriceTable::default();
        let b = Budget {
            prompt: 100,
            completion: 50,
        };
        let max = b.max_cost(&p, "m", 1000).unwrap();
        assert_eq!(max, 2500);
        let cached = TokenUsage {
            cached_prompt: 100,
            reasoning: 50,
            ..Default::default()
        };
        assert!(p.cost("m", &cached, 1000).unwrap() <= max);
    }
}
