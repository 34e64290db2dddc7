//! Opt-in time accounting per op kind, for `enas bench supernet`'s breakdown.
//! Off by default: one relaxed atomic load per op call when off.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<&'static str, (f64, u64)>> = Mutex::new(BTreeMap::new());

pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Runs `f`, adding its wall time to `kind` when accounting is on.
#[inline]
pub fn timed<T>(kind: &'static str, f: impl FnOnce() -> T) -> T {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let out = f();
    let dt = t.elapsed().as_secs_f64();
    let mut totals = TOTALS.lock().expect("profile lock");
    let e = totals.entry(kind).or_insert((0.0, 0));
    e.0 += dt;
    e.1 += 1;
    out
}

/// Seconds and calls per kind since the last call, and resets them.
pub fn take() -> Vec<(&'static str, f64, u64)> {
    let mut totals = TOTALS.lock().expect("profile lock");
    let out = totals.iter().map(|(k, (s, n))| (*k, *s, *n)).collect();
    totals.clear();
    out
}
