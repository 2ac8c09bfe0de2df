//! When a device certificate is renewed, and when its owner is warned: pure decisions on times
//! given in, tested without a clock.
//!
//! A certificate is renewed once less than [`RENEW_BEFORE_DAYS`] days remain — a third of the
//! 30 days the CA issues for — and, while that stays true, again [`RETRY_EVERY_MS`] after each
//! attempt until one succeeds. The threshold is absolute rather than a third of each
//! certificate's own span, so a certificate shorter than that (a rendezvous run with
//! `--certificate-days` below 10) is renewed as soon as the device is connected, and then
//! hourly. Its owner is warned from [`WARN_DAYS`] days before it expires.

use crate::{Timestamp, pki::MAX_CERT_VALIDITY_DAYS};

/// How long after a failed or unanswered attempt the next one is made, in milliseconds (an
/// hour).
pub const RETRY_EVERY_MS: i64 = 3_600_000;
/// Renewal starts when fewer than this many days remain (a third of
/// [`MAX_CERT_VALIDITY_DAYS`]).
pub const RENEW_BEFORE_DAYS: i64 = MAX_CERT_VALIDITY_DAYS as i64 / 3;
/// From how many days before expiry `status`, the CLI and the window warn.
pub const WARN_DAYS: i64 = 7;

const DAY_MS: i64 = 86_400_000;

/// A certificate's validity, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before.
    pub not_before: Timestamp,
    /// Not valid after.
    pub not_after: Timestamp,
}

impl Validity {
    /// Whether to ask for a new certificate at `now`, given the time of the last attempt (or
    /// renewal): fewer than [`RENEW_BEFORE_DAYS`] days remain, and no attempt was made in the
    /// last [`RETRY_EVERY_MS`].
    #[must_use]
    pub fn renewal_due(&self, now: Timestamp, last_attempt: Option<Timestamp>) -> bool {
        let left = self.not_after.0.saturating_sub(now.0);
        let due = left < RENEW_BEFORE_DAYS * DAY_MS;
        let waited = last_attempt.is_none_or(|at| now.0.saturating_sub(at.0) >= RETRY_EVERY_MS);
        due && waited
    }

    /// What to tell the owner at `now`.
    #[must_use]
    pub fn standing(&self, now: Timestamp) -> Standing {
        let left = self.not_after.0.saturating_sub(now.0);
        if left <= 0 {
            Standing::Expired
        } else if left < WARN_DAYS * DAY_MS {
            Standing::ExpiresSoon {
                days_left: self.days_left(now),
            }
        } else {
            Standing::Valid
        }
    }

    /// Whole days left at `now` (rounded down, 0 when expired or expiring within a day).
    #[must_use]
    pub fn days_left(&self, now: Timestamp) -> i64 {
        (self.not_after.0.saturating_sub(now.0) / DAY_MS).max(0)
    }
}

/// How a certificate stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// More than [`WARN_DAYS`] days left: nothing to say.
    Valid,
    /// Expires within [`WARN_DAYS`] days.
    ExpiresSoon {
        /// Whole days left.
        days_left: i64,
    },
    /// Expired: connections with it fail.
    Expired,
}

impl Standing {
    /// The one-sentence warning to show, if any.
    #[must_use]
    pub fn warning(&self) -> Option<String> {
        match self {
            Self::Valid => None,
            Self::ExpiresSoon { days_left } => Some(format!(
                "this device's certificate expires in {days_left} day{}; keep the daemon running \
                 connected to the rendezvous so it renews itself, or run `parley enroll` again",
                if *days_left == 1 { "" } else { "s" }
            )),
            Self::Expired => Some(
                "this device's certificate has expired, so no connection can be made with it; \
                 run `parley enroll` again"
                    .to_owned(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: i64) -> Timestamp {
        Timestamp(n * DAY_MS)
    }

    fn thirty_days() -> Validity {
        Validity {
            not_before: days(0),
            not_after: days(30),
        }
    }

    fn check(validity: Validity, now: Timestamp, last: Option<Timestamp>, due: bool) {
        assert_eq!(
            validity.renewal_due(now, last),
            due,
            "at {now:?}, last attempt {last:?}"
        );
    }

    #[test]
    fn renewal_is_due_once_fewer_than_ten_days_remain() {
        let v = thirty_days();
        check(v, days(0), None, false);
        check(v, days(19), None, false);
        check(v, days(20), None, false);
        check(v, Timestamp(days(20).0 + 1), None, true);
        check(v, days(29), None, true);
        check(v, days(31), None, true);
    }

    #[test]
    fn a_renewal_is_retried_hourly_and_not_sooner() {
        let v = thirty_days();
        let tried = days(21);
        check(
            v,
            Timestamp(tried.0 + RETRY_EVERY_MS - 1),
            Some(tried),
            false,
        );
        check(v, Timestamp(tried.0 + RETRY_EVERY_MS), Some(tried), true);
    }

    #[test]
    fn a_certificate_shorter_than_ten_days_is_renewed_at_once_then_hourly() {
        let v = Validity {
            not_before: days(0),
            not_after: days(3),
        };
        check(v, days(0), None, true);
        check(v, Timestamp(RETRY_EVERY_MS - 1), Some(days(0)), false);
        check(v, Timestamp(RETRY_EVERY_MS), Some(days(0)), true);
    }

    #[test]
    fn an_expired_certificate_is_still_asked_for_hourly() {
        let v = thirty_days();
        check(v, days(40), None, true);
        check(v, days(40), Some(days(40)), false);
    }

    #[test]
    fn the_owner_is_warned_from_seven_days_and_told_plainly_when_expired() {
        let v = thirty_days();
        assert_eq!(v.standing(days(23)), Standing::Valid);
        assert_eq!(
            v.standing(Timestamp(days(23).0 + 1)),
            Standing::ExpiresSoon { days_left: 6 }
        );
        assert_eq!(
            v.standing(Timestamp(days(29).0 + 1)),
            Standing::ExpiresSoon { days_left: 0 }
        );
        assert_eq!(v.standing(days(30)), Standing::Expired);
        assert!(Standing::Valid.warning().is_none());
        let soon = Standing::ExpiresSoon { days_left: 1 }
            .warning()
            .unwrap_or_default();
        assert!(soon.contains("expires in 1 day;"), "{soon}");
        assert!(soon.contains("parley enroll"), "{soon}");
        let expired = Standing::Expired.warning().unwrap_or_default();
        assert!(expired.contains("has expired"), "{expired}");
    }
}
