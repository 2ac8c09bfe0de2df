//! The ratchet sessions this device holds with one contact's device, and which one it sends on.
//!
//! A session begins with a first-contact agreement ([`crate::agreement`]) and is named by the
//! initiator's ephemeral key. Normally a pair of devices has one; two appear when both sides
//! open one at the same moment (each sent a first message before it saw the other's), or when
//! the peer lost its state and opened a new one. Every session is kept for receiving (the
//! peer's messages in flight may use any), at most [`MAX_SESSIONS`], and one is *active*, the
//! one this device seals to:
//!
//! * a session this device opens becomes active;
//! * a session the peer opens becomes active when the active one has heard from the peer
//!   (the peer moved on: it lost the old one) or when there is none; when the active one is
//!   this device's own and has not heard back yet, both sides opened one at once and the one
//!   with the smaller id wins, on both sides alike, so they converge without a round trip.
//!
//! ```text
//! book    = version:u8 (= 1) ‖ has_active:u8 ‖ [active:[32]] ‖ n:u8 ‖ n × session
//! session = id:[32] ‖ heard:u8 ‖ created_at:i64 ‖ has_last_step:u8 ‖ [last_step_at:i64]
//!           ‖ has_rekey_at:u8 ‖ [rekey_at:i64] ‖ has_initial:u8 ‖ [initial]
//!           ‖ state_len:u32 ‖ state (Ratchet::encode)
//! initial = see InitialMessage::encode
//! ```

use zeroize::Zeroizing;

use super::encoding::{DecodeError, Reader};
use super::session::Ratchet;
use crate::agreement::InitialMessage;
use crate::message::Timestamp;

/// At most this many sessions are kept per contact device; beyond it the oldest that is not
/// active is dropped.
pub const MAX_SESSIONS: usize = 4;

const BOOK_VERSION: u8 = 1;

/// A session's name: the initiator's ephemeral X25519 key of its first-contact agreement.
pub type SessionId = [u8; 32];

/// One ratchet session with a contact's device.
#[derive(Debug, Clone)]
pub struct SessionState {
    /// Its id.
    pub id: SessionId,
    /// The Double Ratchet.
    pub ratchet: Ratchet,
    /// The agreement this device opened it with, sent with every message until the peer
    /// answers (a message of the peer's opens on it); `None` on the responding side.
    pub initial: Option<InitialMessage>,
    /// Whether a message of the peer's was opened on it.
    pub heard: bool,
    /// When it was made.
    pub created_at: Timestamp,
    /// When its keys last moved on (a DH step of either side), as this device saw it.
    pub last_step_at: Option<Timestamp>,
    /// When this device's next timed DH step is due (drawn by the sealing adapter).
    pub rekey_at: Option<Timestamp>,
}

impl SessionState {
    /// A session this device opened, from the agreement's root.
    #[must_use]
    pub fn opened(ratchet: Ratchet, initial: InitialMessage, now: Timestamp) -> Self {
        Self {
            id: initial.ephemeral.0,
            ratchet,
            initial: Some(initial),
            heard: false,
            created_at: now,
            last_step_at: None,
            rekey_at: None,
        }
    }

    /// A session the peer opened with `initial`.
    #[must_use]
    pub fn answered(ratchet: Ratchet, initial: &InitialMessage, now: Timestamp) -> Self {
        Self {
            id: initial.ephemeral.0,
            ratchet,
            initial: None,
            heard: false,
            created_at: now,
            last_step_at: None,
            rekey_at: None,
        }
    }

    /// Records what an event did: a message of the peer's was opened (`heard`), and the keys
    /// moved on when the ratchet's step count changed from `steps_before`.
    pub fn note(&mut self, steps_before: u64, heard: bool, now: Timestamp) {
        if self.ratchet.dh_steps() != steps_before {
            self.last_step_at = Some(now);
        }
        if heard {
            self.heard = true;
            self.initial = None;
        }
    }
}

/// Every session with one contact's device, and the active one.
#[derive(Debug, Clone, Default)]
pub struct SessionBook {
    /// The session this device seals to.
    pub active: Option<SessionId>,
    /// Every session kept, oldest first.
    pub sessions: Vec<SessionState>,
}

impl SessionBook {
    /// The active session.
    #[must_use]
    pub fn active(&self) -> Option<&SessionState> {
        let id = self.active?;
        self.sessions.iter().find(|s| s.id == id)
    }

    /// The active session, to seal with.
    pub fn active_mut(&mut self) -> Option<&mut SessionState> {
        let id = self.active?;
        self.sessions.iter_mut().find(|s| s.id == id)
    }

    /// The session `id`.
    pub fn get_mut(&mut self, id: &SessionId) -> Option<&mut SessionState> {
        self.sessions.iter_mut().find(|s| s.id == *id)
    }

    /// Adds a session this device opened; it becomes the active one.
    pub fn open(&mut self, session: SessionState) {
        self.active = Some(session.id);
        self.insert(session);
    }

    /// Adds a session the peer opened, and applies the rule for which one is active (see the
    /// module docs).
    pub fn answer(&mut self, session: SessionState) {
        let new = session.id;
        let switch = match self.active() {
            None => true,
            Some(current) if current.heard => true,
            // Both opened one at once: the smaller id wins on both sides.
            Some(current) => new < current.id,
        };
        if switch {
            self.active = Some(new);
        }
        self.insert(session);
    }

    fn insert(&mut self, session: SessionState) {
        self.sessions.retain(|s| s.id != session.id);
        self.sessions.push(session);
        while self.sessions.len() > MAX_SESSIONS {
            let Some(oldest) = self.sessions.iter().position(|s| Some(s.id) != self.active) else {
                break;
            };
            self.sessions.remove(oldest);
        }
    }

    /// DH steps this device took itself, over every session kept.
    #[must_use]
    pub fn own_steps(&self) -> u64 {
        self.sessions
            .iter()
            .map(|s| s.ratchet.own_steps())
            .fold(0, u64::saturating_add)
    }

    /// DH steps of both sides, over every session kept, and when the keys last moved on.
    #[must_use]
    pub fn steps(&self) -> (u64, Option<Timestamp>) {
        let steps = self
            .sessions
            .iter()
            .map(|s| s.ratchet.dh_steps())
            .fold(0, u64::saturating_add);
        let last = self.sessions.iter().filter_map(|s| s.last_step_at).max();
        (steps, last)
    }

    /// The book's bytes, in a buffer wiped on drop.
    #[must_use]
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(256 + self.sessions.len() * 2048));
        out.push(BOOK_VERSION);
        optional(&mut out, self.active.as_ref(), |out, id| {
            out.extend_from_slice(id);
        });
        // At most MAX_SESSIONS are kept: the count fits a byte.
        out.push(u8::try_from(self.sessions.len()).unwrap_or(u8::MAX));
        for s in &self.sessions {
            out.extend_from_slice(&s.id);
            out.push(u8::from(s.heard));
            out.extend_from_slice(&s.created_at.0.to_be_bytes());
            optional(&mut out, s.last_step_at.as_ref(), |out, t| {
                out.extend_from_slice(&t.0.to_be_bytes());
            });
            optional(&mut out, s.rekey_at.as_ref(), |out, t| {
                out.extend_from_slice(&t.0.to_be_bytes());
            });
            optional(&mut out, s.initial.as_ref(), |out, i| i.encode_into(out));
            let state = s.ratchet.encode();
            out.extend_from_slice(&u32::try_from(state.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(&state);
        }
        out
    }

    /// Reads a book written by [`SessionBook::encode`].
    ///
    /// # Errors
    /// [`DecodeError`] for any input `encode` could not have written.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != BOOK_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let active = if r.flag()? { Some(r.array()?) } else { None };
        let n = usize::from(r.u8()?);
        if n > MAX_SESSIONS {
            return Err(DecodeError::Malformed("too many sessions"));
        }
        let mut sessions = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.array()?;
            let heard = r.flag()?;
            let created_at = Timestamp(r.i64()?);
            let last_step_at = if r.flag()? {
                Some(Timestamp(r.i64()?))
            } else {
                None
            };
            let rekey_at = if r.flag()? {
                Some(Timestamp(r.i64()?))
            } else {
                None
            };
            let initial = if r.flag()? {
                Some(InitialMessage::decode_from(&mut r)?)
            } else {
                None
            };
            let len = usize::try_from(r.u32()?).map_err(|_| DecodeError::Truncated)?;
            let ratchet = Ratchet::decode(r.take(len)?)?;
            sessions.push(SessionState {
                id,
                ratchet,
                initial,
                heard,
                created_at,
                last_step_at,
                rekey_at,
            });
        }
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        if let Some(id) = active
            && !sessions.iter().any(|s| s.id == id)
        {
            return Err(DecodeError::Malformed(
                "the active session is not in the book",
            ));
        }
        Ok(Self { active, sessions })
    }
}

fn optional<T>(out: &mut Vec<u8>, value: Option<&T>, write: impl FnOnce(&mut Vec<u8>, &T)) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            write(out, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::{KEM_CIPHERTEXT_LEN, KemCiphertext};
    use crate::ratchet::{Key32, KeyPair, PublicKey};

    fn initial(eph: u8) -> InitialMessage {
        InitialMessage {
            identity: PublicKey([9; 32]),
            ephemeral: PublicKey([eph; 32]),
            signed_prekey_id: 1,
            one_time_prekey_id: Some(7),
            kem_prekey_id: 2,
            kem_ciphertext: KemCiphertext::parse(&[3; KEM_CIPHERTEXT_LEN])
                .expect("a ciphertext of the right length"),
        }
    }

    fn ratchet() -> Ratchet {
        Ratchet::responder(
            &Key32::new([1; 32]),
            KeyPair::from_secret(Key32::new([2; 32])),
        )
    }

    fn session(eph: u8, heard: bool) -> SessionState {
        let mut s = SessionState::answered(ratchet(), &initial(eph), Timestamp(5));
        s.heard = heard;
        s
    }

    #[test]
    fn an_opened_session_is_active_and_round_trips() {
        let mut book = SessionBook::default();
        book.open(SessionState::opened(ratchet(), initial(4), Timestamp(1)));
        assert_eq!(book.active, Some([4; 32]));
        let back = SessionBook::decode(&book.encode()).expect("a book it wrote");
        assert_eq!(back.active, Some([4; 32]));
        assert_eq!(back.sessions[0].initial, Some(initial(4)));
        assert_eq!(back.encode(), book.encode());
    }

    #[test]
    fn crossing_first_messages_converge_on_the_smaller_id() {
        // Each side opened one and has not heard back; each then receives the other's.
        let mut alice = SessionBook::default();
        alice.open(session(8, false));
        alice.answer(session(3, false));
        let mut bob = SessionBook::default();
        bob.open(session(3, false));
        bob.answer(session(8, false));
        assert_eq!(alice.active, Some([3; 32]));
        assert_eq!(bob.active, Some([3; 32]));
    }

    #[test]
    fn a_peer_that_moved_on_gets_its_new_session_active() {
        let mut book = SessionBook::default();
        book.open(session(1, true));
        book.answer(session(9, false));
        assert_eq!(book.active, Some([9; 32]));
    }

    #[test]
    fn at_most_max_sessions_are_kept_and_the_active_one_stays() {
        let mut book = SessionBook::default();
        book.open(session(1, false));
        for eph in 10..20 {
            book.answer(session(eph, false));
        }
        assert_eq!(book.sessions.len(), MAX_SESSIONS);
        assert!(book.active().is_some());
        assert_eq!(book.active, Some([1; 32]));
    }

    #[test]
    fn damaged_books_are_refused_without_panic() {
        let mut book = SessionBook::default();
        book.open(session(1, false));
        let bytes = book.encode();
        for cut in 0..bytes.len() {
            assert!(SessionBook::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(
            SessionBook::decode(&longer).expect_err("a trailing byte"),
            DecodeError::TrailingBytes
        );
    }
}
