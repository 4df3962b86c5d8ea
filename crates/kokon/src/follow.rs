//! Daemons follow their registry while they run: the registry file and the
//! collateral cache are read again every poll, and a changed policy is put
//! in force at once (new handshakes are judged by it, and every link is
//! judged again: a peer whose image, model or TCB the registry no longer
//! allows is dropped). A file that cannot be read or parsed changes
//! nothing (the error is logged), and neither can the network or the
//! economics and routing bounds a daemon started with: those need a
//! restart, which the log says.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
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
    fn load(&self) -> anyhow::Result<(kokon_attest::registry::Registry, Policy)> {
        let path = crate::config::registry_path(self.registry.clone());
        let registry = crate::config::load_registry(&path)?;
        let policy = registry
            .policy()
            .with_context(|| format!("registry {}", path.display()))?;
        let policy = crate::attest::trusting_collateral(policy, self.collateral.clone())?;
        Ok((registry, policy))
    }
}

/// What changed between two registries that a running daemon cannot take.
fn needs_restart(
    started: &kokon_attest::registry::Registry,
    now: &kokon_attest::registry::Registry,
) -> Option<&'static str> {
    if started.network != now.network {
        Some("network")
    } else if started.economics() != now.economics() {
        Some("economics")
    } else {
        None
    }
}

/// Polls `source` every `every` until `shutdown`, putting each changed
/// policy in force on `tls`.
pub(crate) async fn follow(
    tls: RaTls,
    source: PolicySource,
    every: Duration,
    shutdown: CancellationToken,
) {
    let Ok((started, _)) = source.load() else {
        return; // the daemon could not have started without it
    };
    let mut warned = Collateral::Fresh;
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
        if let Some(what) = needs_restart(&started, &registry) {
            tracing::error!(
                changed = what,
                "the registry's {what} changed; a running daemon keeps its own: restart it to take the new one"
            );
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
    fn network_and_economics_need_a_restart() {
        let a = kokon_attest::registry::Registry::local_test_network();
        assert_eq!(needs_restart(&a, &a.clone()), None);
        let mut b = a.clone();
        b.worker_images.clear();
        assert_eq!(needs_restart(&a, &b), None, "images are followed live");
        let mut c = a.clone();
        let mut e = c.economics();
        e.commission_bps += 1;
        c.economics = Some(e);
        assert_eq!(needs_restart(&a, &c), Some("economics"));
    }
}
