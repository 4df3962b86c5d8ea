//! Per-peer bounds at the accept loop: links held per IP address, a
//! handshake rate per IP address (a token bucket), and links held per
//! client key. Every map here is bounded; each slot is given back when its
//! link ends (the returned guards).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::{ProxyConfig, lock};

/// Addresses tracked at once; beyond this, idle entries are forgotten, and
/// when none is idle new addresses are refused.
const MAX_TRACKED: usize = 65_536;

struct Address {
    links: usize,
    tokens: f64,
    refilled: Instant,
}

#[derive(Default)]
struct Table {
    addresses: HashMap<IpAddr, Address>,
    clients: HashMap<[u8; 32], usize>,
}

/// The accept loop's view of its peers.
pub(crate) struct Peers {
    table: Arc<Mutex<Table>>,
    per_address: usize,
    per_client: usize,
    rate: f64,
}

/// A link's place in its address's count, given back on drop.
pub(crate) struct AddressSlot {
    table: Arc<Mutex<Table>>,
    ip: IpAddr,
}

/// A link's place in its client key's count, given back on drop.
pub(crate) struct ClientSlot {
    table: Arc<Mutex<Table>>,
    key: [u8; 32],
}

impl Peers {
    pub(crate) fn new(cfg: &ProxyConfig) -> Self {
        Self {
            table: Default::default(),
            per_address: cfg.max_links_per_address.max(1),
            per_client: cfg.max_links_per_client.max(1),
            rate: f64::from(cfg.handshakes_per_sec_per_address.max(1)),
        }
    }

    /// A slot for one more link from `ip`, or `None` when it holds its
    /// share of links or has started handshakes too fast.
    pub(crate) fn admit_address(&self, ip: IpAddr, now: Instant) -> Option<AddressSlot> {
        let mut t = lock(&self.table);
        if t.addresses.len() >= MAX_TRACKED && !t.addresses.contains_key(&ip) {
            let burst = self.rate;
            t.addresses
                .retain(|_, a| a.links > 0 || refill(a, now, burst) < burst);
            if t.addresses.len() >= MAX_TRACKED {
                return None;
            }
        }
        let a = t.addresses.entry(ip).or_insert(Address {
            links: 0,
            tokens: self.rate,
            refilled: now,
        });
        refill(a, now, self.rate);
        if a.links >= self.per_address || a.tokens < 1.0 {
            return None;
        }
        a.tokens -= 1.0;
        a.links += 1;
        Some(AddressSlot {
            table: self.table.clone(),
            ip,
        })
    }

    /// A slot for one more link by client `key`, or `None` at its cap.
    pub(crate) fn admit_client(&self, key: [u8; 32]) -> Option<ClientSlot> {
        let mut t = lock(&self.table);
        if t.clients.len() >= MAX_TRACKED && !t.clients.contains_key(&key) {
            return None;
        }
        let n = t.clients.entry(key).or_insert(0);
        if *n >= self.per_client {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.table.clone(),
            key,
        })
    }
}

/// Adds the tokens earned since the last refill (up to a burst of `rate`);
/// returns the new count.
fn refill(a: &mut Address, now: Instant, rate: f64) -> f64 {
    let earned = now.saturating_duration_since(a.refilled).as_secs_f64() * rate;
    a.tokens = (a.tokens + earned).min(rate);
    a.refilled = now;
    a.tokens
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        if let Some(a) = t.addresses.get_mut(&self.ip) {
            a.links = a.links.saturating_sub(1);
        }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        if let Some(n) = t.clients.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.clients.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn peers(per_address: usize, rate: u32) -> Peers {
        let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.max_links_per_address = per_address;
        cfg.handshakes_per_sec_per_address = rate;
        cfg.max_links_per_client = 2;
        Peers::new(&cfg)
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn links_per_address_are_capped_and_given_back() {
        let p = peers(3, 100);
        let now = Instant::now();
        let held: Vec<_> = (0..3).map(|_| p.admit_address(IP, now).unwrap()).collect();
        assert!(p.admit_address(IP, now).is_none());
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert!(
            p.admit_address(other, now).is_some(),
            "another address is not held up"
        );
        drop(held);
        assert!(p.admit_address(IP, now).is_some());
    }

    #[test]
    fn handshakes_per_address_are_rate_limited() {
        let p = peers(1000, 5);
        let now = Instant::now();
        let burst: Vec<_> = (0..5).map(|_| p.admit_address(IP, now).unwrap()).collect();
        assert!(
            p.admit_address(IP, now).is_none(),
            "sixth handshake in the same instant"
        );
        assert!(
            p.admit_address(IP, now + Duration::from_millis(100))
                .is_none()
        );
        assert!(
            p.admit_address(IP, now + Duration::from_millis(200))
                .is_some()
        );
        drop(burst);
    }

    #[test]
    fn links_per_client_key_are_capped() {
        let p = peers(100, 100);
        let (a, b) = (
            p.admit_client([1; 32]).unwrap(),
            p.admit_client([1; 32]).unwrap(),
        );
        assert!(p.admit_client([1; 32]).is_none());
        assert!(p.admit_client([2; 32]).is_some());
        drop((a, b));
        let again = p.admit_client([1; 32]);
        assert!(again.is_some());
        drop(again);
        assert!(
            lock(&p.table).clients.is_empty(),
            "a key with no links is forgotten"
        );
    }
}
