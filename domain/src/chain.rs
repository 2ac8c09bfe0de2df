//! The hash chain of one direction of a conversation (sender → recipient).
//!
//! Every envelope carries its sequence number (from 1) and the digest of the sender's previous
//! envelope to the same recipient. The recipient keeps one [`Link`] per message it accepted and
//! judges each newcomer against its neighbours: a second message at a taken position is a
//! *fork*, a message whose predecessor (or successor) names another digest *breaks* the chain,
//! and positions never seen below the highest are a *gap*. Replays are caught earlier, by the
//! persisted set of seen ids; altered bytes never get this far (the signature fails).

use std::fmt;

use crate::envelope::Digest;

/// One accepted message's place in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Its sequence number, from 1.
    pub seq: u64,
    /// The digest of its envelope.
    pub digest: Digest,
    /// The digest it names as its predecessor.
    pub prev: Digest,
}

/// The sender's end of a chain: what the next message follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// The last sequence number used (0 before the first message).
    pub seq: u64,
    /// The digest of the last envelope ([`Digest::GENESIS`] before the first).
    pub digest: Digest,
}

impl ChainHead {
    /// The head of a chain with no message yet.
    pub const EMPTY: Self = Self {
        seq: 0,
        digest: Digest::GENESIS,
    };
}

/// The links around a newcomer's position, as the recipient's store has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Neighbours {
    /// The link at `seq - 1`.
    pub before: Option<Link>,
    /// A link already at `seq`.
    pub same: Option<Link>,
    /// The link at `seq + 1` (it arrived first).
    pub after: Option<Link>,
}

/// Why a message is not shown as verified although its signature holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainFault {
    /// Another message already holds this sequence number: the sender's chain forked.
    Fork {
        /// The contested position.
        seq: u64,
    },
    /// The message does not follow its predecessor, or its successor does not follow it.
    Broken {
        /// The message's position.
        seq: u64,
    },
}

impl ChainFault {
    /// A stable snake_case name.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Fork { .. } => "fork",
            Self::Broken { .. } => "broken_chain",
        }
    }
}

impl fmt::Display for ChainFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fork { seq } => write!(
                f,
                "another message already holds position {seq} of this sender's chain (a fork: \
                 a copied or rolled-back device, or a forgery)"
            ),
            Self::Broken { seq } => write!(
                f,
                "message {seq} does not follow the previous message the sender signed (its \
                 device rewrote its own history, or someone holding its key did)"
            ),
        }
    }
}

/// Judges a newcomer against its neighbours. `Ok(())` when it fits the chain.
///
/// # Errors
/// The [`ChainFault`] that makes it unverifiable.
pub fn judge(link: &Link, around: &Neighbours) -> Result<(), ChainFault> {
    if around.same.is_some_and(|same| same.digest != link.digest) {
        return Err(ChainFault::Fork { seq: link.seq });
    }
    let prev_fits = if link.seq <= 1 {
        link.prev == Digest::GENESIS
    } else {
        around
            .before
            .is_none_or(|before| before.digest == link.prev)
    };
    let next_fits = around.after.is_none_or(|after| after.prev == link.digest);
    if link.seq == 0 || !prev_fits || !next_fits {
        return Err(ChainFault::Broken { seq: link.seq });
    }
    Ok(())
}

/// The state of one direction's chain, as `history --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainState {
    /// No message yet.
    Empty,
    /// Every position from 1 to `last` holds a message that fits.
    Intact {
        /// The highest position.
        last: u64,
    },
    /// Some positions below the highest have not arrived (lost, or still on their way).
    Gap {
        /// The highest position.
        last: u64,
        /// The missing positions, as inclusive ranges, at most [`MAX_REPORTED_RANGES`].
        missing: Vec<(u64, u64)>,
    },
    /// At least one message failed the chain check (fork or break); see each message.
    Faulty {
        /// The highest position.
        last: u64,
        /// How many messages failed.
        faults: u64,
    },
}

/// At most this many missing ranges are reported.
pub const MAX_REPORTED_RANGES: usize = 16;

impl ChainState {
    /// The state of a chain from its accepted links' positions (ascending) and the number of
    /// messages that failed the check.
    #[must_use]
    pub fn of(seqs: impl IntoIterator<Item = u64>, faults: u64) -> Self {
        let mut last = 0u64;
        let mut missing = Vec::new();
        for seq in seqs {
            if seq > last + 1 && missing.len() < MAX_REPORTED_RANGES {
                missing.push((last + 1, seq - 1));
            }
            last = last.max(seq);
        }
        if faults > 0 {
            Self::Faulty { last, faults }
        } else if last == 0 {
            Self::Empty
        } else if missing.is_empty() {
            Self::Intact { last }
        } else {
            Self::Gap { last, missing }
        }
    }

    /// A stable snake_case name.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Intact { .. } => "intact",
            Self::Gap { .. } => "gap",
            Self::Faulty { .. } => "faulty",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    fn link(seq: u64, digest: u8, prev: Digest) -> Link {
        Link {
            seq,
            digest: d(digest),
            prev,
        }
    }

    #[test]
    fn an_in_order_chain_fits_and_is_intact() {
        let first = link(1, 1, Digest::GENESIS);
        assert_eq!(judge(&first, &Neighbours::default()), Ok(()));
        let second = link(2, 2, d(1));
        let around = Neighbours {
            before: Some(first),
            ..Neighbours::default()
        };
        assert_eq!(judge(&second, &around), Ok(()));
        assert_eq!(ChainState::of([1, 2], 0), ChainState::Intact { last: 2 });
    }

    #[test]
    fn a_second_message_at_a_taken_position_is_a_fork() {
        let first = link(1, 1, Digest::GENESIS);
        let rival = link(1, 9, Digest::GENESIS);
        let around = Neighbours {
            same: Some(first),
            ..Neighbours::default()
        };
        assert_eq!(judge(&rival, &around), Err(ChainFault::Fork { seq: 1 }));
    }

    #[test]
    fn a_message_naming_another_predecessor_or_disowned_by_its_successor_breaks_the_chain() {
        let first = link(1, 1, Digest::GENESIS);
        let spliced = link(2, 2, d(7));
        let around = Neighbours {
            before: Some(first),
            ..Neighbours::default()
        };
        assert_eq!(judge(&spliced, &around), Err(ChainFault::Broken { seq: 2 }));
        let late = link(2, 2, d(1));
        let successor = link(3, 3, d(8));
        let around = Neighbours {
            before: Some(first),
            after: Some(successor),
            ..Neighbours::default()
        };
        assert_eq!(judge(&late, &around), Err(ChainFault::Broken { seq: 2 }));
        assert_eq!(
            judge(&link(1, 1, d(5)), &Neighbours::default()),
            Err(ChainFault::Broken { seq: 1 }),
            "the first message names the genesis digest"
        );
        assert_eq!(
            judge(&link(0, 1, Digest::GENESIS), &Neighbours::default()),
            Err(ChainFault::Broken { seq: 0 })
        );
    }

    #[test]
    fn missing_positions_are_a_gap_and_a_late_arrival_fills_it() {
        assert_eq!(
            ChainState::of([1, 4, 5, 8], 0),
            ChainState::Gap {
                last: 8,
                missing: vec![(2, 3), (6, 7)]
            }
        );
        assert_eq!(
            ChainState::of([2], 0),
            ChainState::Gap {
                last: 2,
                missing: vec![(1, 1)]
            }
        );
        let late = link(2, 2, d(1));
        let around = Neighbours {
            before: Some(link(1, 1, Digest::GENESIS)),
            after: Some(link(3, 3, d(2))),
            ..Neighbours::default()
        };
        assert_eq!(judge(&late, &around), Ok(()));
        assert_eq!(ChainState::of([1, 2, 3], 0), ChainState::Intact { last: 3 });
        assert_eq!(ChainState::of([], 0), ChainState::Empty);
        assert_eq!(
            ChainState::of([1], 2),
            ChainState::Faulty { last: 1, faults: 2 }
        );
    }
}
