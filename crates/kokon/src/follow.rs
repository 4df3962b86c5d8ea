//! Daemons follow their registry while they run: the registry file and the
//! collateral cache are read again every poll, and a changed policy is put
//! in force at once (new handshakes are judged by it, and every link is
//! judged again: a peer whose image, model or TCB the registry no longer
//! allows is dropped). A file that cannot be read or parsed changes
//! nothing (the error is logged); one naming another network is not taken
//! at all; the economics and routing bounds a daemon started with stay
//! until a restart (the log says so), while the trust rules beside them
//! are followed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kokon_attest::registry::Registry;
use kokon_attest::{Clock, Policy, SystemClock};
use kokon_tls::RaTls;
use tokio_util::sync::CancellationToken;

/// Warn this long before the cached collateral stops verifying quotes.
pub(crate) const COLLATERAL_WARN_SECS: u64 = 7 * 86_400;

/// Where a daemon's policy comes from.
#[derive(Clone, Debug)]
pub(crate) struct PolicySource {
    pub registry: Option<PathBuf>,
    pub collateral: Option<PathBuf>,
}

impl PolicySource {
    /// The policy the files say now, with the registry it came from.
    pub(crate) fn load(&self) -> anyhow::Result<(Registry, Policy)> {
        let path = crate::config::registry_path(self.registry.clone());
        let registry = crate::config::load_registry(&path)?;
        let policy = registry
            .policy()
            .with_context(|| format!("registry {}", path.display()))?;
        let policy = crate::attest::trusting_collateral(policy, self.collateral.clone())?;
        Ok((registry, policy))
    }
}

/// What a running daemon does with the registry it read.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Another network: its policy is not taken at all (a production
    /// node must never start accepting simulated evidence from a file edit).
    Refuse,
    /// Its trust rules are put in force; the economics it names, if they
    /// changed, wait for a restart.
    Apply { economics_changed: bool },
}

fn step(started: &Registry, now: &Registry) -> Step {
    if started.network != now.network {
        Step::Refuse
    } else {
        Step::Apply {
            economics_changed: started.economics() != now.economics(),
        }
    }
}

/// Polls `source` every `every` until `shutdown`, putting each changed
/// policy in force on `tls`, which started under the registry `started`.
pub(crate) async fn follow(
    tls: RaTls,
    source: PolicySource,
    started: Registry,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut warned = warn_collateral(&tls.policy(), SystemClock.now_unix(), Collateral::Fresh);
    // Each refusal is logged once while it lasts.
    let mut logged = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        let (registry, mut policy) = match source.load() {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "cannot read the registry; keeping the policy in force"
                );
                continue;
            }
        };
        let step = step(&started, &registry);
        if logged.as_ref() != Some(&step) {
            match step {
                Step::Refuse => tracing::error!(
                    "the registry names another network; this daemon keeps the policy in force: \
                     restart it to join that network"
                ),
                Step::Apply {
                    economics_changed: true,
                } => tracing::error!(
                    "the registry's economics changed; a running daemon keeps its own: restart it \
                     to take them (its trust rules are followed meanwhile)"
                ),
                Step::Apply { .. } => {}
            }
        }
        let refused = step == Step::Refuse;
        logged = Some(step);
        if refused {
            continue;
        }
        let current = tls.policy();
        // Routing bounds are part of the economics a daemon started with.
        policy.routing = current.routing;
        warned = warn_collateral(&policy, SystemClock.now_unix(), warned);
        if policy != *current {
            tracing::warn!(
                "the registry changed: new links are judged by it, and every link is judged again"
            );
            tls.set_policy(Arc::new(policy));
        }
    }
}

/// How near its end the collateral is (so each state is logged once).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Collateral {
    Fresh,
    Expiring,
    Expired,
}

/// Logs when the collateral enters a nearer state than `before`.
fn warn_collateral(policy: &Policy, now: u64, before: Collateral) -> Collateral {
    let Some((at, fmspc)) = policy.tdx.as_ref().and_then(|t| t.collateral.next_update()) else {
        return Collateral::Fresh;
    };
    let state = collateral_state(at, now);
    if state != before {
        match state {
            Collateral::Fresh => {}
            Collateral::Expiring => tracing::warn!(
                fmspc,
                hours_left = (at - now) / 3600,
                "TDX collateral expires soon; quotes of this platform will be refused after it: \
                 refresh it with `kokon attest collateral fetch`"
            ),
            Collateral::Expired => tracing::error!(
                fmspc,
                "TDX collateral has expired: quotes of this platform are refused until it is \
                 refreshed with `kokon attest collateral fetch`"
            ),
        }
    }
    state
}

pub(crate) fn collateral_state(next_update: u64, now: u64) -> Collateral {
    if now >= next_update {
        Collateral::Expired
    } else if next_update - now <= COLLATERAL_WARN_SECS {
        Collateral::Expiring
    } else {
        Collateral::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collateral_states() {
        let at = 1_000_000_000;
        assert_eq!(
            collateral_state(at, at - COLLATERAL_WARN_SECS - 1),
            Collateral::Fresh
        );
        assert_eq!(
            collateral_state(at, at - COLLATERAL_WARN_SECS),
            Collateral::Expiring
        );
        assert_eq!(collateral_state(at, at - 1), Collateral::Expiring);
        assert_eq!(collateral_state(at, at), Collateral::Expired);
    }

    #[test]
    fn another_network_is_refused_and_economics_wait_for_a_restart() {
        let a = Registry::local_test_network();
        let same = Step::Apply {
            economics_changed: false,
        };
        assert_eq!(step(&a, &a.clone()), same);
        let mut b = a.clone();
        b.worker_images.clear();
        assert_eq!(step(&a, &b), same, "images are followed live");
        // A revocation in the same edit as a price change is followed too.
        let mut e = b.economics();
        e.commission_bps += 1;
        b.economics = Some(e);
        assert_eq!(
            step(&a, &b),
            Step::Apply {
                economics_changed: true
            }
        );
        let mut c = a.clone();
        c.network = kokon_attest::registry::Network::Production;
        assert_eq!(step(&a, &c), Step::Refuse);
    }
}
