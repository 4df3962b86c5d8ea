//! Failpoints: named places on durability and external-effect boundaries
//! where a test can make the process "crash".
//!
//! * In-process tests [`arm`] a point; the next [`hit`] there returns
//!   [`Crashed`], the test throws away all in-memory state and restarts the
//!   component from its files only.
//! * For real processes, `KOKON_FAILPOINT=<name>` aborts the process the
//!   first time the point is reached (like `kill -9` at exactly that line).
//!
//! Unarmed, a point costs one atomic load.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static ANY_ARMED: AtomicBool = AtomicBool::new(false);
static ARMED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Every failpoint in the code, for tests to iterate over.
pub const ALL: &[&str] = &[
    "client.pay.before_persist",
    "client.pay.after_persist",
    "client.pay.after_send",
    "client.credit_blind.after_persist",
    "client.credit_accept.before_persist",
    "client.credit_accept.after_persist",
    "client.credit_take.before_persist",
    "client.credit_take.after_persist",
    "proxy.register.before_persist",
    "proxy.register.after_persist",
    "proxy.bill_part.before_persist",
    "proxy.bill_part.after_persist",
    "proxy.bill.before_persist",
    "proxy.bill.after_persist",
    "proxy.dispute.before_persist",
    "proxy.dispute.after_persist",
    "proxy.voucher.before_persist",
    "proxy.voucher.after_persist",
    "proxy.credit_sale.before_persist",
    "proxy.credit_sale.after_persist",
    "proxy.redeem.before_persist",
    "proxy.redeem.after_persist",
    "proxy.change.before_persist",
    "proxy.change.after_persist",
    "proxy.claim.before_settle",
    "proxy.claim.after_settle",
    "worker.receipt.before_persist",
    "worker.receipt.after_persist",
    "worker.voucher.after_persist",
    "worker.claim.before_settle",
    "worker.claim.after_settle",
];

/// The component crashed at a failpoint (in-process tests only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crashed at failpoint `{0}`")]
pub struct Crashed(pub &'static str);

/// Arms `name` for one hit in this process.
pub fn arm(name: &str) {
    let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    armed.push(name.to_string());
    ANY_ARMED.store(true, Ordering::SeqCst);
}

/// Disarms everything.
pub fn reset() {
    ARMED.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ANY_ARMED.store(false, Ordering::SeqCst);
}

/// Marks a failpoint. Returns `Err` if a test armed it; aborts the process
/// if `KOKON_FAILPOINT` names it.
pub fn hit(name: &'static str) -> Result<(), Crashed> {
    debug_assert!(ALL.contains(&name), "unlisted failpoint {name}");
    if ANY_ARMED.load(Ordering::Relaxed) {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = armed.iter().position(|a| a == name) {
            armed.remove(i);
            return Err(Crashed(name));
        }
    }
    if env_point().is_some_and(|p| p == name) {
        eprintln!("KOKON_FAILPOINT={name}: aborting");
        std::process::abort();
    }
    Ok(())
}

fn env_point() -> Option<&'static str> {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    POINT
        .get_or_init(|| std::env::var("KOKON_FAILPOINT").ok())
        .as_deref()
}
