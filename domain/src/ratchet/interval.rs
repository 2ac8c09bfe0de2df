//! The interval timed DH steps are drawn from (`parley daemon --rekey-every MIN..MAX`).

use std::fmt;

use crate::envelope::Ttl;

/// `MIN..MAX`: each session's next timed DH step comes after a random wait in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RekeyEvery {
    /// The shortest wait, in milliseconds.
    pub min_ms: u64,
    /// The longest wait, in milliseconds.
    pub max_ms: u64,
}

impl RekeyEvery {
    /// The default, 30 s..120 s.
    pub const DEFAULT: Self = Self {
        min_ms: 30_000,
        max_ms: 120_000,
    };

    /// Reads `MIN..MAX`, each a duration such as `30s`, `2m`, `1h` (1 second to 30 days),
    /// MIN no longer than MAX.
    ///
    /// # Errors
    /// One sentence saying what is wrong.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (min, max) = raw.split_once("..").ok_or_else(|| {
            format!("{raw:?} is not an interval such as 30s..120s (two durations joined by ..)")
        })?;
        let part = |s: &str| {
            Ttl::parse(s.trim())
                .map(Ttl::millis)
                .map_err(|e| format!("{s:?} in {raw:?}: {e}"))
        };
        let (min_ms, max_ms) = (part(min)?, part(max)?);
        if min_ms > max_ms {
            return Err(format!(
                "{raw:?} starts after it ends; give the shorter duration first, such as 30s..120s"
            ));
        }
        Ok(Self { min_ms, max_ms })
    }
}

impl fmt::Display for RekeyEvery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms..{}ms", self.min_ms, self.max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_bad_ones_say_why() {
        assert_eq!(
            RekeyEvery::parse("2s..4s"),
            Ok(RekeyEvery {
                min_ms: 2_000,
                max_ms: 4_000
            })
        );
        assert_eq!(RekeyEvery::parse("30s..2m").map(|r| r.max_ms), Ok(120_000));
        for bad in ["", "30s", "30s..", "..2m", "4s..2s", "0s..1s", "1x..2s"] {
            let e = RekeyEvery::parse(bad).expect_err(bad);
            assert!(
                e.contains(&format!("{bad:?}")) || e.contains('"'),
                "{bad}: {e}"
            );
        }
    }
}
