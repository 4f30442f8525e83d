//! Small helpers shared across layers: a counting semaphore, a
//! poison-tolerant mutex lock and the wall clock in milliseconds.
//!
//! **Architecture Invariant:** the bottom layer. This module imports only
//! `std`, so any module may use it without creating a cycle.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Locks a mutex, recovering it if a panic poisoned it. Use it where the
/// data behind the lock stays valid whatever a panicking holder was doing
/// (a counter kept consistent, a connection whose unfinished transaction
/// rolls back when its guard drops).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A counting semaphore: at most `max` permits are out at once; the rest
/// of the callers of [`Semaphore::acquire`] wait. `const`, so it can be a
/// `static` bounding some work for the whole process.
pub struct Semaphore {
    in_use: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

/// A held permit; dropping it, during a panic too, returns it.
#[must_use = "the permit is returned as soon as it is dropped"]
pub struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    pub const fn new(max: usize) -> Semaphore {
        Semaphore { in_use: Mutex::new(0), freed: Condvar::new(), max }
    }

    /// Waits until a permit is free and takes it.
    pub fn acquire(&self) -> Permit<'_> {
        // The lock guards a counter that is always left consistent, so a
        // poisoned lock is still safe to use.
        let mut in_use = lock(&self.in_use);
        while *in_use >= self.max {
            in_use = self.freed.wait(in_use).unwrap_or_else(PoisonError::into_inner);
        }
        *in_use += 1;
        Permit(self)
    }

    /// Permits out now.
    pub fn in_use(&self) -> usize {
        *lock(&self.in_use)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *lock(&self.0.in_use) -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::Duration;

    #[test]
    fn the_bound_holds_under_threads() {
        let semaphore = Arc::new(Semaphore::new(2));
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (semaphore, active, peak) = (semaphore.clone(), active.clone(), peak.clone());
                thread::spawn(move || {
                    for _ in 0..50 {
                        let _permit = semaphore.acquire();
                        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        thread::yield_now();
                        active.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker finished");
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "peak {peak}");
        assert_eq!(semaphore.in_use(), 0);
    }

    #[test]
    fn a_waiter_gets_the_permit_when_it_is_dropped() {
        let semaphore = Arc::new(Semaphore::new(1));
        let held = semaphore.acquire();
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let semaphore = semaphore.clone();
            thread::spawn(move || {
                let _permit = semaphore.acquire();
                tx.send(()).expect("test alive");
            })
        };
        // The waiter cannot get past acquire while the permit is held.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        drop(held);
        rx.recv_timeout(Duration::from_secs(10)).expect("the waiter got the permit");
        waiter.join().expect("waiter finished");
        assert_eq!(semaphore.in_use(), 0);
    }

    #[test]
    fn a_panic_returns_the_permit() {
        let semaphore = Arc::new(Semaphore::new(1));
        let held = semaphore.clone();
        let result = thread::spawn(move || {
            let _permit = held.acquire();
            // Poison the counter's lock too: a panic while it is held.
            let _guard = held.in_use.lock();
            panic!("a holder panicked");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(semaphore.in_use(), 0);
        // The single permit can be taken again.
        drop(semaphore.acquire());
    }

    #[test]
    fn lock_recovers_a_poisoned_mutex() {
        let m = Arc::new(Mutex::new(5));
        let poisoner = m.clone();
        let _ = thread::spawn(move || {
            let _guard = poisoner.lock();
            panic!("poison");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 5);
    }

    #[test]
    fn now_ms_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}

/// Milliseconds since the Unix epoch of a UTC date and time in the
/// proleptic Gregorian calendar (days by Howard Hinnant's algorithm), for
/// the dates certificates and HTTP headers carry.
pub fn ms_from_civil(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000
}

/// Percent-encodes `s` for one path segment or query value: everything
/// but RFC 3986's unreserved characters is escaped (so `:`, `@`, `!`,
/// `#`, `/` and `?` in Matrix IDs cannot change a URL's shape).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod encode_tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::ms_from_civil(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(super::ms_from_civil(2000, 3, 1, 0, 0, 1), 951_868_801_000);
        assert_eq!(super::ms_from_civil(2024, 2, 29, 23, 59, 59), 1_709_251_199_000);
    }

    #[test]
    fn percent_encoding_escapes_all_but_unreserved() {
        assert_eq!(super::percent_encode("@a:b.c"), "%40a%3Ab.c");
        assert_eq!(super::percent_encode("!r/x?y#z é"), "%21r%2Fx%3Fy%23z%20%C3%A9");
        assert_eq!(super::percent_encode("A-z_0.9~"), "A-z_0.9~");
    }
}
