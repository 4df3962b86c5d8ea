//! Per-client-address admission: requests in flight and a token-bucket
//! rate, with a bound on how many addresses are tracked. Pure: the clock is
//! passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How many client addresses are tracked at most; beyond, idle entries are
/// dropped, and if none is idle new addresses are refused.
pub const MAX_TRACKED: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many requests in flight from this address.
    Concurrency,
    /// Above the request rate for this address.
    Rate,
    /// Too many addresses at once.
    Tracked,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Concurrency => "client_concurrency",
            Refusal::Rate => "client_rate",
            Refusal::Tracked => "clients_tracked",
        }
    }
}

struct Entry {
    in_flight: usize,
    tokens: f64,
    at: Instant,
}

/// The limiter's state.
pub struct Limiter {
    per_client: usize,
    rate: f64,
    burst: f64,
    clients: HashMap<IpAddr, Entry>,
}

impl Limiter {
    /// `per_client` requests in flight, `rate` requests per second (a burst
    /// of as many) per address.
    pub fn new(per_client: usize, rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            per_client,
            rate,
            burst: rate,
            clients: HashMap::new(),
        }
    }

    /// Admits one request from `ip` at `now`, or says why not. Each
    /// admission must be ended with [`Limiter::done`].
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if !self.clients.contains_key(&ip) && self.clients.len() >= MAX_TRACKED {
            self.forget_idle(now);
            if self.clients.len() >= MAX_TRACKED {
                return Err(Refusal::Tracked);
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let e = self.clients.entry(ip).or_insert(Entry {
            in_flight: 0,
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(e.at).as_secs_f64();
        e.tokens = (e.tokens + elapsed * rate).min(burst);
        e.at = now;
        if e.in_flight >= self.per_client {
            return Err(Refusal::Concurrency);
        }
        if e.tokens < 1.0 {
            return Err(Refusal::Rate);
        }
        e.tokens -= 1.0;
        e.in_flight += 1;
        Ok(())
    }

    /// One admitted request from `ip` ended.
    pub fn done(&mut self, ip: IpAddr) {
        if let Some(e) = self.clients.get_mut(&ip) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.clients.len()
    }

    /// Drops addresses with nothing in flight whose bucket is full again.
    fn forget_idle(&mut self, now: Instant) {
        let refill = Duration::from_secs_f64(self.burst / self.rate);
        self.clients
            .retain(|_, e| e.in_flight > 0 || now.saturating_duration_since(e.at) < refill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(n))
    }

    #[test]
    fn concurrency_and_rate_are_per_address() {
        let t0 = Instant::now();
        let mut l = Limiter::new(2, 3);
        assert_eq!(l.admit(ip(1), t0), Ok(()));
        assert_eq!(l.admit(ip(1), t0), Ok(()));
        assert_eq!(l.admit(ip(1), t0), Err(Refusal::Concurrency));
        assert_eq!(l.admit(ip(2), t0), Ok(()), "another address is not held up");
        l.done(ip(1));
        assert_eq!(l.admit(ip(1), t0), Ok(()), "the third token of the burst");
        l.done(ip(1));
        assert_eq!(l.admit(ip(1), t0), Err(Refusal::Rate));
        let later = t0 + Duration::from_millis(400);
        assert_eq!(l.admit(ip(1), later), Ok(()), "one token back after 1/3 s");
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let t0 = Instant::now();
        let mut l = Limiter::new(1, 1);
        for n in 0..MAX_TRACKED as u32 {
            l.admit(ip(n), t0).unwrap();
        }
        assert_eq!(l.admit(ip(u32::MAX), t0), Err(Refusal::Tracked), "all busy");
        for n in 0..MAX_TRACKED as u32 {
            l.done(ip(n));
        }
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            l.admit(ip(u32::MAX), later),
            Ok(()),
            "idle ones were dropped"
        );
        assert!(l.tracked() <= MAX_TRACKED);
    }

    proptest::proptest! {
        #[test]
        fn never_more_in_flight_than_allowed(ops in proptest::collection::vec((0u32..4, proptest::bool::ANY, 0u64..500), 1..200)) {
            let t0 = Instant::now();
            let mut l = Limiter::new(3, 10);
            let mut in_flight = std::collections::HashMap::<u32, usize>::new();
            let mut ms = 0;
            for (who, start, dt) in ops {
                ms += dt;
                let now = t0 + Duration::from_millis(ms);
                let n = in_flight.entry(who).or_default();
                if start {
                    if l.admit(ip(who), now).is_ok() { *n += 1; }
                } else if *n > 0 {
                    l.done(ip(who));
                    *n -= 1;
                }
                proptest::prop_assert!(*n <= 3);
            }
        }
    }
}
