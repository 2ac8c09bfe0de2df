//! Contacts and their pinned keys: trust on first contact, refusal on change, safety numbers.
//!
//! The first time two devices talk, each pins the other's keys (from its CA-verified
//! certificate). From then on a different key for that name is refused until the user accepts
//! it, so a compromised rendezvous — which could issue a certificate for any name — cannot
//! silently step into a conversation. Two people compare a safety number, derived from both
//! names and keys, to check that nobody stepped in at the first contact either.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::{Timestamp, Username};

/// The public keys a contact's certificate binds to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKeys {
    /// The Ed25519 device key (the identity on every connection).
    pub ed25519: [u8; 32],
    /// The X25519 key for sealed messages, when the certificate carries one.
    pub x25519: Option<[u8; 32]>,
}

/// A contact as this device knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The contact's name.
    pub user: Username,
    /// The keys pinned at first contact (or last accepted).
    pub keys: PeerKeys,
    /// Keys seen since that differ from the pinned ones, waiting for the user's decision.
    pub pending: Option<PeerKeys>,
    /// When the keys were pinned.
    pub pinned_at: Timestamp,
}

/// What a contact's pinned keys say about keys seen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// The keys are the pinned ones.
    Pinned,
    /// The keys differ: refuse, and keep them as pending for the user to compare and accept.
    Changed,
}

impl Contact {
    /// Pins `keys` for `user` at first contact.
    #[must_use]
    pub fn first(user: Username, keys: PeerKeys, at: Timestamp) -> Self {
        Self {
            user,
            keys,
            pending: None,
            pinned_at: at,
        }
    }

    /// Compares keys seen now with the pinned ones.
    #[must_use]
    pub fn check(&self, seen: &PeerKeys) -> KeyCheck {
        if *seen == self.keys {
            KeyCheck::Pinned
        } else {
            KeyCheck::Changed
        }
    }

    /// Accepts the pending keys: they become the pinned ones. `None` when nothing is pending.
    #[must_use]
    pub fn accept_pending(&self, at: Timestamp) -> Option<Self> {
        let keys = self.pending?;
        Some(Self {
            user: self.user.clone(),
            keys,
            pending: None,
            pinned_at: at,
        })
    }
}

/// A number two people compare, out of band, to check that each sees the other's real keys.
/// The same on both sides: it does not depend on who computes it.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// The safety number of the conversation between `a` and `b`.
    #[must_use]
    pub fn of(a: (&Username, &PeerKeys), b: (&Username, &PeerKeys)) -> Self {
        let mut halves = [half(a.0, a.1), half(b.0, b.1)];
        halves.sort();
        Self(halves.concat())
    }

    /// The 60 digits without spaces.
    #[must_use]
    pub fn digits(&self) -> &str {
        &self.0
    }
}

/// 30 digits for one party: six 5-digit groups from its name and keys.
fn half(user: &Username, keys: &PeerKeys) -> String {
    let mut hash = Sha256::new();
    hash.update(b"parley-safety-number-v1\0");
    hash.update(user.as_str().as_bytes());
    hash.update([0]);
    hash.update(keys.ed25519);
    hash.update(keys.x25519.unwrap_or([0; 32]));
    let digest = hash.finalize();
    digest
        .chunks(5)
        .take(6)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<&str> = (0..self.0.len())
            .step_by(5)
            .filter_map(|i| self.0.get(i..i + 5))
            .collect();
        f.write_str(&groups.join(" "))
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).expect("valid literal")
    }

    fn keys(seed: u8) -> PeerKeys {
        PeerKeys {
            ed25519: [seed; 32],
            x25519: Some([seed.wrapping_add(1); 32]),
        }
    }

    #[test]
    fn a_contact_refuses_other_keys_until_the_pending_ones_are_accepted() {
        let bob = Contact::first(user("bob"), keys(1), Timestamp(1));
        assert_eq!(bob.check(&keys(1)), KeyCheck::Pinned);
        assert_eq!(bob.check(&keys(2)), KeyCheck::Changed);
        let x25519_only = PeerKeys {
            x25519: None,
            ..keys(1)
        };
        assert_eq!(bob.check(&x25519_only), KeyCheck::Changed);
        assert_eq!(bob.accept_pending(Timestamp(2)), None, "nothing pending");
        let waiting = Contact {
            pending: Some(keys(2)),
            ..bob
        };
        let accepted = waiting.accept_pending(Timestamp(3)).expect("pending keys");
        assert_eq!(accepted.keys, keys(2));
        assert_eq!(accepted.pending, None);
        assert_eq!(accepted.check(&keys(2)), KeyCheck::Pinned);
    }

    #[test]
    fn both_sides_compute_the_same_safety_number_and_a_key_change_changes_it() {
        let (alice, bob) = (user("alice"), user("bob"));
        let seen_by_alice = SafetyNumber::of((&alice, &keys(1)), (&bob, &keys(2)));
        let seen_by_bob = SafetyNumber::of((&bob, &keys(2)), (&alice, &keys(1)));
        assert_eq!(seen_by_alice, seen_by_bob);
        assert_eq!(seen_by_alice.digits().len(), 60);
        assert!(seen_by_alice.digits().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(seen_by_alice.to_string().split(' ').count(), 12);
        let mallory_in_the_middle = SafetyNumber::of((&alice, &keys(1)), (&bob, &keys(3)));
        assert_ne!(seen_by_alice, mallory_in_the_middle);
        let renamed = SafetyNumber::of((&alice, &keys(1)), (&user("bobby"), &keys(2)));
        assert_ne!(seen_by_alice, renamed);
    }
}
