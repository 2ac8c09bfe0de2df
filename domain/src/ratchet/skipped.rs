//! The keys of messages skipped over, kept so that late arrivals still open: bounded in
//! number ([`MAX_SKIP`]) and age ([`MAX_SKIPPED_AGE_MS`]).

use crate::message::Timestamp;

use super::keys::{Key32, PublicKey};
use super::{MAX_SKIP, MAX_SKIPPED_AGE_MS};

/// One skipped message's key.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The sender's ratchet key naming the chain.
    pub(crate) ratchet: PublicKey,
    /// The message's position in that chain.
    pub(crate) n: u32,
    /// The message key.
    pub(crate) key: Key32,
    /// When it was skipped over (the receiver's time).
    pub(crate) at: Timestamp,
}

/// The skipped keys, oldest first, at most [`MAX_SKIP`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Skipped {
    pub(crate) entries: Vec<Entry>,
}

impl Skipped {
    /// The entry for this message, if kept.
    pub(crate) fn find(&self, ratchet: &PublicKey, n: u32) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.ratchet == *ratchet && e.n == n)
    }

    /// Whether the entry at `at` is older than the bound at `now`.
    pub(crate) fn too_old(&self, index: usize, now: Timestamp) -> bool {
        self.entries.get(index).is_some_and(|e| expired(e.at, now))
    }

    /// Takes the entry out (its key is used once).
    pub(crate) fn take(&mut self, index: usize) -> Option<Entry> {
        (index < self.entries.len()).then(|| self.entries.remove(index))
    }

    /// Adds keys, dropping the oldest beyond [`MAX_SKIP`].
    pub(crate) fn extend(&mut self, new: Vec<Entry>) {
        self.entries.extend(new);
        let excess = self.entries.len().saturating_sub(MAX_SKIP);
        self.entries.drain(..excess);
    }

    /// Drops every key older than [`MAX_SKIPPED_AGE_MS`] at `now`.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        self.entries.retain(|e| !expired(e.at, now));
    }
}

fn expired(at: Timestamp, now: Timestamp) -> bool {
    now.0.saturating_sub(at.0) > MAX_SKIPPED_AGE_MS
}
