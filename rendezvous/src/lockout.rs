//! Per-name protection against password guessing: wrong passwords for one username, from any
//! number of addresses, lock that name for a while.
//!
//! The first [`FREE_FAILURES`] wrong passwords cost nothing but their hash. Each later one
//! locks the name for twice the previous lock, from [`FIRST_LOCK`] up to [`MAX_LOCK`]; while a
//! name is locked its password is not even checked (no Argon2id is spent on it), and once the
//! free allowance is used up only one check of it runs at a time, so guesses sent at once from
//! many addresses are taken one by one, each followed by its lock. A right password clears the
//! record. A record whose last failure is [`FORGET_AFTER`] old is forgotten.
//!
//! Guesses per name and day, whatever the number of addresses: the free 5, then 10 locks of
//! 1 s to 512 s (1 023 s in all), then one guess per 15 minutes for the rest of the day:
//! 5 + 10 + (86 400 − 1 023) / 900 ≈ 110.
//!
//! A state machine without I/O or clock reads: every call takes `now`. It tracks at most
//! `max_names` names; when full it forgets the one whose last failure is oldest.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Wrong passwords a name may take before the first lock.
pub const FREE_FAILURES: u32 = 5;
/// The first lock after the free allowance.
pub const FIRST_LOCK: Duration = Duration::from_secs(1);
/// The longest lock: from then on, one guess per this long.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A name with no wrong password for this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
    checking: u32,
}

/// How long a lock lasts, in whole seconds rounded up and at least 1: what a client is told
/// to wait (`Retry-After`, the sentence).
#[must_use]
pub fn wait_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Wrong-password records per name.
#[derive(Debug)]
pub struct Lockouts {
    max_names: usize,
    table: Mutex<HashMap<String, Record>>,
}

/// A password check allowed to run; say how it ended with [`Attempt::failed`] or
/// [`Attempt::succeeded`] (dropping it counts neither, as for a cancelled request).
#[derive(Debug)]
#[must_use = "say how the password check ended"]
pub struct Attempt<'a> {
    lockouts: &'a Lockouts,
    name: String,
    done: bool,
}

impl Lockouts {
    /// Records for at most `max_names` names (at least 1).
    #[must_use]
    pub fn new(max_names: usize) -> Self {
        Self {
            max_names: max_names.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        // Single inserts and field updates: the map stays consistent after a panic elsewhere.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May the password of `name` be checked at `now`? `Err` is how long to wait.
    ///
    /// # Errors
    /// The time until the name's lock ends, or (a check of it already running past the free
    /// allowance) a second.
    pub fn begin(&self, name: &str, now: Instant) -> Result<Attempt<'_>, Duration> {
        let mut table = self.table();
        if let Some(record) = table.get_mut(name) {
            if now.saturating_duration_since(record.last_failure) >= FORGET_AFTER
                && record.checking == 0
            {
                table.remove(name);
            } else {
                if let Some(until) = record.locked_until
                    && until > now
                {
                    return Err(until - now);
                }
                let free_left = FREE_FAILURES.saturating_sub(record.failures).max(1);
                if record.checking >= free_left {
                    return Err(FIRST_LOCK);
                }
                record.checking += 1;
                return Ok(self.attempt(name));
            }
        }
        if table.len() >= self.max_names {
            let oldest = table
                .iter()
                .filter(|(_, r)| r.checking == 0)
                .min_by_key(|(_, r)| r.last_failure)
                .map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
        table.insert(
            name.to_owned(),
            Record {
                failures: 0,
                locked_until: None,
                last_failure: now,
                checking: 1,
            },
        );
        Ok(self.attempt(name))
    }

    fn attempt(&self, name: &str) -> Attempt<'_> {
        Attempt {
            lockouts: self,
            name: name.to_owned(),
            done: false,
        }
    }

    /// How many names have a record now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.table().len()
    }

    fn end(&self, name: &str, outcome: Option<(bool, Instant)>) {
        let mut table = self.table();
        let Some(record) = table.get_mut(name) else {
            return;
        };
        record.checking = record.checking.saturating_sub(1);
        match outcome {
            Some((true, _)) => {
                table.remove(name);
            }
            Some((false, now)) => {
                record.failures = record.failures.saturating_add(1);
                record.last_failure = now;
                if record.failures > FREE_FAILURES {
                    let doublings = record.failures - FREE_FAILURES - 1;
                    let lock = FIRST_LOCK
                        .checked_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX))
                        .map_or(MAX_LOCK, |l| l.min(MAX_LOCK));
                    record.locked_until = Some(now + lock);
                }
            }
            None => {
                if record.failures == 0 && record.checking == 0 {
                    table.remove(name);
                }
            }
        }
    }
}

impl Attempt<'_> {
    /// The password was wrong, found at `now`.
    pub fn failed(mut self, now: Instant) {
        self.done = true;
        self.lockouts.end(&self.name, Some((false, now)));
    }

    /// The password was right: the name's record is cleared.
    pub fn succeeded(mut self) {
        self.done = true;
        self.lockouts.end(&self.name, Some((true, Instant::now())));
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.lockouts.end(&self.name, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(l: &Lockouts, name: &str, now: Instant) {
        l.begin(name, now).expect("allowed").failed(now);
    }

    #[test]
    fn the_free_failures_cost_nothing_then_each_locks_twice_as_long() {
        let l = Lockouts::new(100);
        let t = Instant::now();
        for _ in 0..FREE_FAILURES {
            fail(&l, "bob", t);
        }
        // The sixth wrong password locks for 1 s, the seventh for 2 s, the eighth for 4 s.
        fail(&l, "bob", t);
        assert_eq!(l.begin("bob", t).err(), Some(Duration::from_secs(1)));
        let t = t + Duration::from_secs(1);
        fail(&l, "bob", t);
        assert_eq!(l.begin("bob", t).err(), Some(Duration::from_secs(2)));
        let t = t + Duration::from_secs(2);
        fail(&l, "bob", t);
        assert_eq!(l.begin("bob", t).err(), Some(Duration::from_secs(4)));
        // Another name is not concerned.
        l.begin("carol", t).expect("carol is free").succeeded();
    }

    #[test]
    fn the_lock_stops_at_fifteen_minutes() {
        let l = Lockouts::new(100);
        let mut t = Instant::now();
        let mut waits = Vec::new();
        // The free five and the sixth, then a lock and a guess, 14 times.
        for _ in 0..6 + 14 * 2 {
            match l.begin("bob", t) {
                Ok(a) => a.failed(t),
                Err(wait) => {
                    waits.push(wait.as_secs());
                    t += wait;
                }
            }
        }
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900],
            "after the free five, each wrong password doubles the lock, up to 15 minutes"
        );
    }

    #[test]
    fn a_right_password_clears_the_record() {
        let l = Lockouts::new(100);
        let t = Instant::now();
        for _ in 0..FREE_FAILURES {
            fail(&l, "bob", t);
        }
        l.begin("bob", t).expect("allowed").succeeded();
        assert_eq!(l.tracked(), 0);
        for _ in 0..FREE_FAILURES {
            fail(&l, "bob", t);
        }
        assert!(l.begin("bob", t).is_ok(), "a fresh allowance");
    }

    #[test]
    fn past_the_allowance_only_one_check_runs_at_a_time() {
        let l = Lockouts::new(100);
        let t = Instant::now();
        // Many at once within the allowance: at most the five free ones run.
        let running: Vec<_> = (0..10).filter_map(|_| l.begin("bob", t).ok()).collect();
        assert_eq!(running.len(), FREE_FAILURES as usize);
        for a in running {
            a.failed(t);
        }
        let t = t + Duration::from_secs(1);
        fail(&l, "bob", t); // the sixth: now locked for 1 s
        let t = t + Duration::from_secs(1);
        let first = l.begin("bob", t).expect("the lock is over");
        assert!(
            l.begin("bob", t).is_err(),
            "a second guess waits for the first"
        );
        first.failed(t);
    }

    #[test]
    fn a_cancelled_check_counts_nothing() {
        let l = Lockouts::new(100);
        let t = Instant::now();
        drop(l.begin("bob", t).expect("allowed"));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_day_without_failures_starts_afresh_and_the_table_is_bounded() {
        let l = Lockouts::new(3);
        let t = Instant::now();
        for _ in 0..=FREE_FAILURES {
            fail(&l, "bob", t);
        }
        assert!(l.begin("bob", t).is_err());
        assert!(l.begin("bob", t + FORGET_AFTER).is_ok_and(|a| {
            a.succeeded();
            true
        }));
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            fail(&l, name, t + Duration::from_secs(i as u64));
        }
        assert_eq!(l.tracked(), 3, "the oldest record made room");
    }
}
