//! One conversation's ratchet between two devices: the state, and what each event does to it.
//!
//! Events in, decisions out: [`Ratchet::seal`] and [`Ratchet::rekey`] take the 32 random bytes
//! a new ratchet key needs from the caller, [`Ratchet::open`] takes the receiver's time (for the
//! age of skipped keys). Every event works on a copy of the state and commits it only on
//! success, so a refused message leaves the state as it was.

use std::fmt;

use crate::message::Timestamp;

use super::error::{OpenError, SealError};
use super::header::Header;
use super::kdf;
use super::keys::{Key32, KeyPair, PublicKey};
use super::skipped::{Entry, Skipped};
use super::{MAX_OWN_KEYS, MAX_SKIP};

/// Our sending chain: the chain key, the next position, and the peer key it was made against.
#[derive(Debug, Clone)]
pub(crate) struct SendChain {
    pub(crate) chain: Key32,
    pub(crate) next: u32,
    pub(crate) against: PublicKey,
    /// Which of our DH steps made it (from 1).
    pub(crate) step: u32,
}

/// The peer's current chain as we receive it.
#[derive(Debug, Clone)]
pub(crate) struct RecvChain {
    pub(crate) ratchet: PublicKey,
    pub(crate) chain: Key32,
    pub(crate) next: u32,
    /// Which of the peer's DH steps made it.
    pub(crate) step: u32,
}

/// A message sealed by the ratchet: the header to send in the clear, and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The header (authenticated as associated data).
    pub header: Header,
    /// AES-256-GCM ciphertext, tag included.
    pub ciphertext: Vec<u8>,
}

/// The Double Ratchet state of one conversation, seen from one device.
///
/// Each direction has its own root chain: a DH step of ours (on a change of speaker, or a
/// [`rekey`](Self::rekey) at any time) advances our sending root with X25519 of a fresh key
/// pair and the peer's latest ratchet key; the peer's next new ratchet key advances our
/// receiving root with X25519 of the key of ours it was made against. Two roots instead of
/// Signal's one let both sides step at the same moment (timed rekeys cross on the wire)
/// without their roots forking. Secrets are wiped when the state is dropped.
#[derive(Clone)]
pub struct Ratchet {
    pub(crate) send_root: Key32,
    pub(crate) recv_root: Key32,
    /// Our ratchet key pairs, oldest first; the last is the current one. Older ones are kept
    /// until the peer shows it has a newer one (its messages in flight may still use them);
    /// never more than [`MAX_OWN_KEYS`], since a step waits rather than drop one.
    pub(crate) own: Vec<KeyPair>,
    /// The peer's latest ratchet key, which our next DH step uses.
    pub(crate) theirs: Option<PublicKey>,
    pub(crate) send: Option<SendChain>,
    /// The length of our previous sending chain.
    pub(crate) previous: u32,
    pub(crate) recv: Option<RecvChain>,
    pub(crate) skipped: Skipped,
    pub(crate) steps: u64,
    /// A [`Ratchet::rekey`] asked for a DH step that the next message takes.
    pub(crate) rekey_due: bool,
}

impl fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ratchet")
            .field("steps", &self.steps)
            .field("skipped", &self.skipped.entries.len())
            .finish_non_exhaustive()
    }
}

impl Ratchet {
    /// The side that sends first, from the agreed root and the responder's first ratchet key
    /// (its signed prekey).
    #[must_use]
    pub fn initiator(root: &Key32, responder: PublicKey) -> Self {
        let (to_responder, to_initiator) = kdf::directions(root);
        Self::new(to_responder, to_initiator, Vec::new(), Some(responder))
    }

    /// The side that answers, from the agreed root and the key pair whose public half the
    /// initiator stepped against (the signed prekey).
    #[must_use]
    pub fn responder(root: &Key32, prekey: KeyPair) -> Self {
        let (to_responder, to_initiator) = kdf::directions(root);
        Self::new(to_initiator, to_responder, vec![prekey], None)
    }

    fn new(
        send_root: Key32,
        recv_root: Key32,
        own: Vec<KeyPair>,
        theirs: Option<PublicKey>,
    ) -> Self {
        Self {
            send_root,
            recv_root,
            own,
            theirs,
            send: None,
            previous: 0,
            recv: None,
            skipped: Skipped::default(),
            steps: 0,
            rekey_due: false,
        }
    }

    /// How many DH steps this side took: its own (on a change of speaker or a rekey) and the
    /// peer's it followed. What `status` counts as rekeys.
    #[must_use]
    pub fn dh_steps(&self) -> u64 {
        self.steps
    }

    /// How many DH steps this side took itself (on a change of speaker or a rekey), not
    /// counting the peer's it followed: what `status` counts as this device's rekeys.
    #[must_use]
    pub fn own_steps(&self) -> u64 {
        self.send.as_ref().map_or(0, |s| u64::from(s.step))
    }

    /// Seals one message. A DH step is taken first, with a key pair made from `fresh`, when
    /// the peer's latest ratchet key is not the one our sending chain was made against (the
    /// speaker changed) or a [`rekey`](Self::rekey) is due, unless [`MAX_OWN_KEYS`] of our
    /// keys already wait for the peer to catch up (the step then waits for it); otherwise
    /// `fresh` is unused.
    ///
    /// # Errors
    /// [`SealError`]; the state is then unchanged.
    pub fn seal(&mut self, fresh: Key32, plaintext: &[u8], ad: &[u8]) -> Result<Sealed, SealError> {
        let mut next = self.clone();
        let theirs = next.theirs.ok_or(SealError::NothingReceived)?;
        let due = next.rekey_due || next.send.as_ref().is_none_or(|s| s.against != theirs);
        // At MAX_OWN_KEYS keys the peer has not caught up with, the step waits (the message
        // goes on the current chain) rather than drop a key the peer may still use.
        if due && (next.send.is_none() || next.own.len() < MAX_OWN_KEYS) {
            next.step(fresh, theirs)?;
        }
        let ratchet = next.current_public().ok_or(SealError::NothingReceived)?;
        let previous = next.previous;
        let chain = next.send.as_mut().ok_or(SealError::NothingReceived)?;
        if chain.next == u32::MAX {
            return Err(SealError::ChainExhausted);
        }
        let header = Header {
            ratchet,
            step: chain.step,
            previous,
            n: chain.next,
        };
        let (message, following) = kdf::chain_step(&chain.chain);
        let ciphertext =
            kdf::seal(&message, plaintext, &associated(&header, ad)).ok_or(SealError::TooLarge)?;
        chain.chain = following;
        chain.next += 1;
        *self = next;
        Ok(Sealed { header, ciphertext })
    }

    /// Asks for a DH step without waiting for a change of speaker (the timed rekey): the next
    /// message is sealed under a fresh key pair combined with the peer's latest ratchet key,
    /// which the peer follows as an ordinary DH step. The step is taken with that message, not
    /// now, so that every chain the peer must follow carries at least one message (a chain it
    /// never saw would leave its root behind ours).
    pub fn rekey(&mut self) {
        self.rekey_due = true;
    }

    /// Whether a DH step is due with the next message (a rekey was asked for).
    #[must_use]
    pub fn rekey_due(&self) -> bool {
        self.rekey_due
    }

    /// Opens one message with the caller's associated data, at the receiver's time `now`.
    ///
    /// # Errors
    /// [`OpenError`]; the state is then unchanged.
    pub fn open(
        &mut self,
        header: &Header,
        ciphertext: &[u8],
        ad: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, OpenError> {
        let mut next = self.clone();
        let aad = associated(header, ad);
        if let Some(index) = next.skipped.find(&header.ratchet, header.n) {
            if next.skipped.too_old(index, now) {
                return Err(OpenError::Expired);
            }
            let entry = next.skipped.take(index).ok_or(OpenError::KeyGone)?;
            let plaintext =
                kdf::open(&entry.key, ciphertext, &aad).ok_or(OpenError::Undecryptable)?;
            next.skipped.expire(now);
            *self = next;
            return Ok(plaintext);
        }
        next.skipped.expire(now);
        let current = next
            .recv
            .as_ref()
            .is_some_and(|r| r.ratchet == header.ratchet);
        let plaintext = if current {
            next.open_in_current(header, ciphertext, &aad, now)?
        } else {
            next.open_in_new(header, ciphertext, &aad, now)?
        };
        *self = next;
        Ok(plaintext)
    }

    fn current_public(&self) -> Option<PublicKey> {
        self.own.last().map(KeyPair::public)
    }

    /// Our DH step: a new key pair, a new sending root and chain.
    fn step(&mut self, fresh: Key32, theirs: PublicKey) -> Result<(), SealError> {
        let step = match &self.send {
            None => 1,
            Some(s) => s.step.checked_add(1).ok_or(SealError::ChainExhausted)?,
        };
        let pair = KeyPair::from_secret(fresh);
        let dh = pair.agree(&theirs).ok_or(SealError::WeakKey)?;
        let (root, chain) = kdf::root_step(&self.send_root, &dh);
        self.send_root = root;
        self.previous = self.send.as_ref().map_or(0, |s| s.next);
        self.send = Some(SendChain {
            chain,
            next: 0,
            against: theirs,
            step,
        });
        self.own.push(pair);
        self.steps = self.steps.saturating_add(1);
        self.rekey_due = false;
        Ok(())
    }

    fn open_in_current(
        &mut self,
        header: &Header,
        ciphertext: &[u8],
        aad: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, OpenError> {
        let recv = self.recv.as_mut().ok_or(OpenError::Undecryptable)?;
        if header.n < recv.next {
            return Err(OpenError::KeyGone);
        }
        let (skipped, message, following) =
            advance(&recv.chain, recv.ratchet, recv.next, header.n, now)?;
        let plaintext = kdf::open(&message, ciphertext, aad).ok_or(OpenError::Undecryptable)?;
        recv.chain = following;
        recv.next = header.n.saturating_add(1);
        self.skipped.extend(skipped);
        Ok(plaintext)
    }

    /// The peer took a DH step: if it is the one after the last we followed, close its
    /// previous chain (skipping up to `header.previous`), then try the step against each key
    /// of ours it may have used, newest first.
    fn open_in_new(
        &mut self,
        header: &Header,
        ciphertext: &[u8],
        aad: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, OpenError> {
        let followed = self.recv.as_ref().map_or(0, |r| r.step);
        if header.step <= followed {
            return Err(OpenError::KeyGone);
        }
        if header.step - followed > 1 {
            return Err(OpenError::EarlierStepMissing);
        }
        let mut closed = Vec::new();
        if let Some(recv) = &self.recv
            && header.previous > recv.next
        {
            let (mut skipped, last, _) = advance(
                &recv.chain,
                recv.ratchet,
                recv.next,
                header.previous - 1,
                now,
            )?;
            skipped.push(Entry {
                ratchet: recv.ratchet,
                n: header.previous - 1,
                key: last,
                at: now,
            });
            closed = skipped;
        }
        let mut weak = true;
        for index in (0..self.own.len()).rev() {
            let Some(dh) = self.own.get(index).and_then(|k| k.agree(&header.ratchet)) else {
                continue;
            };
            weak = false;
            let (root, chain) = kdf::root_step(&self.recv_root, &dh);
            let (skipped, message, following) = advance(&chain, header.ratchet, 0, header.n, now)?;
            let Some(plaintext) = kdf::open(&message, ciphertext, aad) else {
                continue;
            };
            self.recv_root = root;
            self.recv = Some(RecvChain {
                ratchet: header.ratchet,
                chain: following,
                next: header.n.saturating_add(1),
                step: header.step,
            });
            self.own.drain(..index);
            self.theirs = Some(header.ratchet);
            self.steps = self.steps.saturating_add(1);
            self.skipped.extend(closed);
            self.skipped.extend(skipped);
            return Ok(plaintext);
        }
        Err(if weak && !self.own.is_empty() {
            OpenError::WeakKey
        } else {
            OpenError::Undecryptable
        })
    }
}

/// Walks a receiving chain from position `from` to `to`: the keys skipped over, the key of
/// `to`, and the chain key after it.
fn advance(
    chain: &Key32,
    ratchet: PublicKey,
    from: u32,
    to: u32,
    now: Timestamp,
) -> Result<(Vec<Entry>, Key32, Key32), OpenError> {
    let gap = to.checked_sub(from).ok_or(OpenError::KeyGone)?;
    if usize::try_from(gap).map_or(true, |gap| gap > MAX_SKIP) {
        return Err(OpenError::TooFarAhead);
    }
    let mut skipped = Vec::new();
    let mut chain = chain.clone();
    for n in from..to {
        let (key, following) = kdf::chain_step(&chain);
        skipped.push(Entry {
            ratchet,
            n,
            key,
            at: now,
        });
        chain = following;
    }
    let (message, following) = kdf::chain_step(&chain);
    Ok((skipped, message, following))
}

/// The AEAD's associated data: context, header, then the caller's.
fn associated(header: &Header, ad: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(kdf::AAD_CONTEXT.len() + super::HEADER_LEN + ad.len());
    aad.extend_from_slice(kdf::AAD_CONTEXT);
    aad.extend_from_slice(&header.encode());
    aad.extend_from_slice(ad);
    aad
}
