//! In-memory fakes of the ports, for the use-case tests. Each can be told to fail.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use parley_domain::{
    Attachment, AttachmentKey, AttachmentRef, Body, ChainHead, ChainState, Contact,
    ConversationSummary, Delivery, DeviceIdentity, Digest, Direction, Header, Link, MailId,
    MessageId, Neighbours, PeerKeys, Secret32, StoredMessage, Timestamp, Username,
};

use parley_domain::agreement::{
    InitialMessage, KEM_CIPHERTEXT_LEN, KEM_PUBLIC_LEN, KemCiphertext, KemPrekey, KemPublicKey,
    OneTimePrekey, PrekeyBundle, SignedPrekey,
};
use parley_domain::ratchet::{
    Header as RatchetHeader, Key32, KeyPair, PublicKey, Ratchet, SessionBook, SessionState,
};

use crate::ports::{
    AttachmentError, AttachmentFiles, AttachmentSource, Chains, Clock, Contacts, Conversations,
    Deposit, DeviceAddress, Directory, DirectoryError, Durability, EnrollError, EnrollRequest,
    Enrollment, EnvelopeError, EnvelopeSession, Envelopes, Event, EventSink, Expiry, IdentityStore,
    Inbox, MailBatch, MailItem, Mailbox, MailboxError, Opened, OutboxEntry, OutboxStore,
    OutgoingEnvelope, PrekeyError, PrekeySecrets, PrekeyService, PrekeyUpload, ResponderSecrets,
    Sealed, SessionUpdate, Sessions, StoreError, Stored, Transport, TransportError,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A store in memory. `fail_write_at(n)` makes the n-th write (1-based) and every later one fail.
#[derive(Default)]
pub struct InMemoryStore {
    messages: Mutex<Vec<StoredMessage>>,
    envelopes: Mutex<HashMap<MessageId, Vec<u8>>>,
    heads: Mutex<HashMap<Username, ChainHead>>,
    seen: Mutex<HashMap<(Username, MessageId), Digest>>,
    links: Mutex<HashMap<Username, BTreeMap<u64, Link>>>,
    faults: Mutex<HashMap<Username, u64>>,
    contacts: Mutex<HashMap<Username, Contact>>,
    /// The arrival number of every message ever stored, by (sender, id): its place in the
    /// order of writes, never reused (purges leave it).
    arrivals: Mutex<HashMap<(Username, MessageId), u64>>,
    /// Per conversation, the number of arrivals when it was last marked read: messages that
    /// arrived with a number below it are read.
    read: Mutex<HashMap<Username, u64>>,
    identity: Mutex<Option<DeviceIdentity>>,
    writes: Mutex<usize>,
    fail_at: Mutex<Option<usize>>,
    /// Files "on disk" that can be attached, by path.
    pub disk: Mutex<HashMap<PathBuf, Vec<u8>>>,
    /// Sealed attachments, by locator.
    sealed_files: Mutex<HashMap<String, Vec<u8>>>,
    /// Attachments that arrived ahead of their envelope: (sender, digest) → bytes.
    staged: Mutex<HashMap<(Username, Digest), Vec<u8>>>,
    /// Files saved by `save`, by destination.
    pub saved: Mutex<HashMap<PathBuf, Vec<u8>>>,
    /// The attachment cap.
    pub max_attachment: Mutex<u64>,
    /// When set, `sync` fails (the disk refuses to make deferred writes durable).
    pub fail_sync: Mutex<bool>,
    /// Deferred writes not synced yet.
    pub unsynced: Mutex<usize>,
    /// The ratchet sessions, per contact.
    pub sessions: Mutex<HashMap<Username, SessionBook>>,
    /// One-time prekeys used up by first messages.
    pub used_one_time: Mutex<Vec<u32>>,
}

impl InMemoryStore {
    /// Stages bytes as if `from` had sent them ahead of an envelope.
    pub fn stage(&self, from: &Username, bytes: &[u8]) {
        lock(&self.staged).insert((from.clone(), digest_of(bytes)), bytes.to_vec());
    }

    /// The sealed bytes of an attachment, by locator.
    pub fn sealed_file(&self, locator: &str) -> Option<Vec<u8>> {
        lock(&self.sealed_files).get(locator).cloned()
    }

    pub fn fail_write_at(&self, n: usize) {
        *lock(&self.fail_at) = Some(n);
    }

    fn write(&self) -> Result<(), StoreError> {
        let mut writes = lock(&self.writes);
        *writes += 1;
        match *lock(&self.fail_at) {
            Some(n) if *writes >= n => Err(StoreError::Unavailable("injected failure".into())),
            _ => Ok(()),
        }
    }

    /// Numbers the arrival of `message`.
    fn arrived(&self, message: &StoredMessage) {
        let mut arrivals = lock(&self.arrivals);
        let next = arrivals.len() as u64;
        arrivals.insert((message.from.clone(), message.id), next);
    }

    /// True when `message` is incoming and arrived after its conversation was last marked read.
    fn unread(&self, message: &StoredMessage) -> bool {
        if message.direction != Direction::Incoming {
            return false;
        }
        let arrival = lock(&self.arrivals)
            .get(&(message.from.clone(), message.id))
            .copied()
            .unwrap_or(0);
        lock(&self.read)
            .get(message.contact())
            .is_none_or(|mark| arrival >= *mark)
    }

    /// Every message kept, expired or not, in arrival order.
    pub fn all(&self) -> Vec<StoredMessage> {
        lock(&self.messages).clone()
    }

    fn settle(&self, id: &MessageId, delivery: Delivery) -> Result<(), StoreError> {
        self.write()?;
        for m in lock(&self.messages).iter_mut() {
            if m.id == *id && m.direction == Direction::Outgoing && m.delivery.awaits_receipt() {
                m.delivery = delivery;
            }
        }
        lock(&self.envelopes).remove(id);
        Ok(())
    }

    /// The envelope kept for an outbox message.
    pub fn envelope(&self, id: &MessageId) -> Option<Vec<u8>> {
        lock(&self.envelopes).get(id).cloned()
    }
}

impl Durability for InMemoryStore {
    fn sync(&self) -> Result<(), StoreError> {
        if *lock(&self.fail_sync) {
            return Err(StoreError::Unavailable("injected sync failure".into()));
        }
        *lock(&self.unsynced) = 0;
        Ok(())
    }
}

impl OutboxStore for InMemoryStore {
    fn append_outgoing(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
    ) -> Result<(), StoreError> {
        let mut messages = lock(&self.messages);
        if messages
            .iter()
            .any(|m| m.id == message.id && m.from == message.from)
        {
            return Ok(());
        }
        self.write()?;
        messages.push(message.clone());
        self.arrived(message);
        lock(&self.envelopes).insert(message.id, envelope.to_vec());
        lock(&self.heads).insert(message.to.clone(), *head);
        Ok(())
    }

    fn append_outgoing_deferred(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
    ) -> Result<(), StoreError> {
        *lock(&self.unsynced) += 1;
        self.append_outgoing(message, envelope, head)
    }

    fn reseal(&self, id: &MessageId, envelope: &[u8], head: &ChainHead) -> Result<(), StoreError> {
        self.write()?;
        let messages = lock(&self.messages);
        let Some(message) = messages
            .iter()
            .find(|m| m.id == *id && m.delivery.awaits_receipt())
        else {
            return Ok(());
        };
        lock(&self.envelopes).insert(*id, envelope.to_vec());
        lock(&self.heads).insert(message.to.clone(), *head);
        Ok(())
    }

    fn mark_delivered(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        self.settle(id, Delivery::Delivered(at))
    }

    fn mark_rejected(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        self.settle(id, Delivery::Rejected(at))
    }

    fn mark_queued(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        self.write()?;
        for m in lock(&self.messages).iter_mut() {
            if m.id == *id && m.direction == Direction::Outgoing && m.delivery == Delivery::Pending
            {
                m.delivery = Delivery::Queued(at);
            }
        }
        Ok(())
    }

    fn outbox(&self, now: Timestamp) -> Result<Vec<OutboxEntry>, StoreError> {
        let envelopes = lock(&self.envelopes);
        Ok(lock(&self.messages)
            .iter()
            .filter(|m| m.delivery.awaits_receipt() && !m.expired(now))
            .map(|m| OutboxEntry {
                message: m.clone(),
                envelope: envelopes.get(&m.id).cloned().unwrap_or_default(),
            })
            .collect())
    }
}

impl Inbox for InMemoryStore {
    fn store_incoming_deferred(
        &self,
        message: &StoredMessage,
        link: &Link,
    ) -> Result<Stored, StoreError> {
        *lock(&self.unsynced) += 1;
        self.store_incoming(message, link)
    }

    fn store_incoming(&self, message: &StoredMessage, link: &Link) -> Result<Stored, StoreError> {
        let key = (message.from.clone(), message.id);
        let mut seen = lock(&self.seen);
        if let Some(digest) = seen.get(&key) {
            return Ok(if *digest == link.digest {
                Stored::Duplicate
            } else {
                Stored::Conflicting
            });
        }
        self.write()?;
        seen.insert(key, link.digest);
        lock(&self.messages).push(message.clone());
        self.arrived(message);
        if message.verification.is_verified() {
            lock(&self.links)
                .entry(message.from.clone())
                .or_default()
                .insert(link.seq, *link);
        } else {
            *lock(&self.faults).entry(message.from.clone()).or_default() += 1;
        }
        Ok(Stored::New)
    }
}

impl Sessions for InMemoryStore {
    fn sessions(&self, with: &Username) -> Result<SessionBook, StoreError> {
        Ok(lock(&self.sessions).get(with).cloned().unwrap_or_default())
    }

    fn rekeys(&self) -> Result<u64, StoreError> {
        Ok(lock(&self.sessions)
            .values()
            .map(SessionBook::own_steps)
            .sum())
    }

    fn reset_sessions(&self, with: &Username) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.sessions).remove(with);
        Ok(())
    }

    fn incoming_digest(
        &self,
        from: &Username,
        id: &MessageId,
    ) -> Result<Option<Digest>, StoreError> {
        Ok(lock(&self.seen).get(&(from.clone(), *id)).copied())
    }

    fn append_outgoing_in_session_deferred(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
        session: &SessionUpdate<'_>,
    ) -> Result<(), StoreError> {
        let known = lock(&self.messages)
            .iter()
            .any(|m| m.id == message.id && m.from == message.from);
        self.append_outgoing_deferred(message, envelope, head)?;
        if !known {
            self.keep_session(session);
        }
        Ok(())
    }

    fn reseal_in_session(
        &self,
        id: &MessageId,
        envelope: &[u8],
        head: &ChainHead,
        session: &SessionUpdate<'_>,
    ) -> Result<(), StoreError> {
        self.reseal(id, envelope, head)?;
        self.keep_session(session);
        Ok(())
    }

    fn store_incoming_in_session_deferred(
        &self,
        message: &StoredMessage,
        link: &Link,
        session: &SessionUpdate<'_>,
    ) -> Result<Stored, StoreError> {
        let stored = self.store_incoming_deferred(message, link)?;
        if stored == Stored::New {
            self.keep_session(session);
        }
        Ok(stored)
    }
}

impl InMemoryStore {
    fn keep_session(&self, session: &SessionUpdate<'_>) {
        lock(&self.sessions).insert(session.with.clone(), session.book.clone());
        if let Some(id) = session.used_one_time_prekey {
            lock(&self.used_one_time).push(id);
        }
    }
}

impl PrekeySecrets for InMemoryStore {
    fn prepare_upload(&self, one_time: u32, _now: Timestamp) -> Result<PrekeyUpload, StoreError> {
        self.write()?;
        Ok(fake_upload(one_time))
    }

    fn responder_secrets(
        &self,
        _signed_prekey: u32,
        one_time_prekey: Option<u32>,
        _kem_prekey: u32,
    ) -> Result<Option<ResponderSecrets>, StoreError> {
        let used = lock(&self.used_one_time);
        Ok(Some(ResponderSecrets {
            signed_prekey: KeyPair::from_secret(Key32::new([0x33; 32])),
            one_time_prekey: one_time_prekey
                .filter(|id| !used.contains(id))
                .map(|_| KeyPair::from_secret(Key32::new([0x44; 32]))),
            kem_secret: zeroize::Zeroizing::new(Vec::new()),
        }))
    }
}

/// A prekey upload whose keys mean nothing (the fake envelopes do not use them).
fn fake_upload(one_time: u32) -> PrekeyUpload {
    let key = KeyPair::from_secret(Key32::new([0x33; 32])).public();
    PrekeyUpload {
        signed_prekey: SignedPrekey {
            id: 1,
            key,
            signature: [0; 64],
        },
        kem_prekey: KemPrekey {
            id: 1,
            key: KemPublicKey::parse(&[0; KEM_PUBLIC_LEN]).unwrap_or_else(|_| unreachable!()),
            signature: [0; 64],
        },
        one_time: (1..=one_time).map(|id| OneTimePrekey { id, key }).collect(),
    }
}

impl Chains for InMemoryStore {
    fn chain_head(&self, to: &Username) -> Result<ChainHead, StoreError> {
        Ok(lock(&self.heads)
            .get(to)
            .copied()
            .unwrap_or(ChainHead::EMPTY))
    }

    fn neighbours(&self, from: &Username, seq: u64) -> Result<Neighbours, StoreError> {
        let links = lock(&self.links);
        let Some(chain) = links.get(from) else {
            return Ok(Neighbours::default());
        };
        Ok(Neighbours {
            before: seq.checked_sub(1).and_then(|s| chain.get(&s).copied()),
            same: chain.get(&seq).copied(),
            after: seq.checked_add(1).and_then(|s| chain.get(&s).copied()),
        })
    }

    fn chain_state(&self, from: &Username) -> Result<ChainState, StoreError> {
        let seqs: Vec<u64> = lock(&self.links)
            .get(from)
            .map(|c| c.keys().copied().collect())
            .unwrap_or_default();
        let faults = lock(&self.faults).get(from).copied().unwrap_or(0);
        Ok(ChainState::of(seqs, faults))
    }

    fn reset_chains(&self, user: &Username) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.links).remove(user);
        lock(&self.faults).remove(user);
        lock(&self.heads).remove(user);
        Ok(())
    }
}

impl Conversations for InMemoryStore {
    fn history(&self, with: &Username, now: Timestamp) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(lock(&self.messages)
            .iter()
            .filter(|m| m.contact() == with && !m.expired(now))
            .cloned()
            .collect())
    }

    fn conversations(&self, now: Timestamp) -> Result<Vec<ConversationSummary>, StoreError> {
        // (summary, position of its newest message), newest conversation first.
        let mut out: Vec<(ConversationSummary, usize)> = Vec::new();
        for (at, m) in lock(&self.messages).iter().enumerate() {
            if m.expired(now) {
                continue;
            }
            let unread = u64::from(self.unread(m));
            match out.iter_mut().find(|(c, _)| c.with == *m.contact()) {
                Some((c, last)) => {
                    c.messages += 1;
                    c.unread += unread;
                    c.last = m.clone();
                    *last = at;
                }
                None => out.push((
                    ConversationSummary {
                        with: m.contact().clone(),
                        messages: 1,
                        unread,
                        last: m.clone(),
                    },
                    at,
                )),
            }
        }
        out.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        Ok(out.into_iter().map(|(c, _)| c).collect())
    }

    fn mark_read(&self, with: &Username) -> Result<(), StoreError> {
        self.write()?;
        let arrivals = lock(&self.arrivals).len() as u64;
        lock(&self.read).insert(with.clone(), arrivals);
        Ok(())
    }
}

impl Contacts for InMemoryStore {
    fn contact(&self, user: &Username) -> Result<Option<Contact>, StoreError> {
        Ok(lock(&self.contacts).get(user).cloned())
    }

    fn save_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.contacts).insert(contact.user.clone(), contact.clone());
        Ok(())
    }
}

impl Expiry for InMemoryStore {
    fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut messages = lock(&self.messages);
        let gone: BTreeSet<MessageId> = messages
            .iter()
            .filter(|m| m.expired(now))
            .map(|m| m.id)
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        self.write()?;
        messages.retain(|m| !gone.contains(&m.id));
        lock(&self.sealed_files)
            .retain(|locator, _| !gone.iter().any(|id| locator.contains(&format!("/{id}/"))));
        lock(&self.envelopes).retain(|id, _| !gone.contains(id));
        Ok(gone.len() as u64)
    }
}

/// The fake's "cipher": XOR with the key's first byte (its only job is to differ from the
/// plaintext and to come back).
fn xor(bytes: &[u8], key: &Secret32) -> Vec<u8> {
    bytes.iter().map(|b| b ^ key.expose()[0]).collect()
}

impl AttachmentFiles for InMemoryStore {
    fn seal_file(
        &self,
        owner: &Username,
        id: &MessageId,
        index: usize,
        source: &AttachmentSource,
    ) -> Result<Attachment, AttachmentError> {
        let plain = lock(&self.disk)
            .get(&source.path)
            .cloned()
            .ok_or_else(|| AttachmentError::Unreadable(source.path.display().to_string()))?;
        let max = *lock(&self.max_attachment);
        if max > 0 && plain.len() as u64 > max {
            return Err(AttachmentError::TooLarge {
                name: source.name.clone(),
                size: plain.len() as u64,
                max,
            });
        }
        self.write()?;
        let key = Secret32::new([u8::try_from(index).unwrap_or(0).wrapping_add(0x5c); 32]);
        let sealed = xor(&plain, &key);
        let meta = AttachmentRef {
            name: source.name.clone(),
            size: sealed.len() as u64,
            sha256: digest_of(&sealed),
        };
        lock(&self.sealed_files).insert(self.locator(owner, id, index), sealed);
        Ok(Attachment {
            meta,
            key: AttachmentKey {
                key,
                plain_sha256: digest_of(&plain),
            },
        })
    }

    fn locator(&self, owner: &Username, id: &MessageId, index: usize) -> String {
        format!("{owner}/{id}/{index}")
    }

    fn discard(&self, owner: &Username, id: &MessageId, count: usize) {
        let mut files = lock(&self.sealed_files);
        for index in 0..count {
            files.remove(&self.locator(owner, id, index));
        }
    }

    fn claim(
        &self,
        from: &Username,
        id: &MessageId,
        index: usize,
        meta: &AttachmentRef,
    ) -> Result<bool, AttachmentError> {
        let locator = self.locator(from, id, index);
        if lock(&self.sealed_files).contains_key(&locator) {
            return Ok(true);
        }
        let Some(bytes) = lock(&self.staged).remove(&(from.clone(), meta.sha256)) else {
            return Ok(false);
        };
        if bytes.len() as u64 != meta.size {
            return Ok(false);
        }
        self.write()?;
        lock(&self.sealed_files).insert(locator, bytes);
        Ok(true)
    }

    fn save(
        &self,
        owner: &Username,
        id: &MessageId,
        index: usize,
        attachment: &Attachment,
        dest: &Path,
    ) -> Result<u64, AttachmentError> {
        let sealed = self
            .sealed_file(&self.locator(owner, id, index))
            .ok_or(AttachmentError::Damaged)?;
        let plain = xor(&sealed, &attachment.key.key);
        if digest_of(&plain) != attachment.key.plain_sha256 {
            return Err(AttachmentError::Damaged);
        }
        let mut saved = lock(&self.saved);
        if saved.contains_key(dest) {
            return Err(AttachmentError::Destination(format!(
                "{} exists already",
                dest.display()
            )));
        }
        saved.insert(dest.to_owned(), plain.clone());
        Ok(plain.len() as u64)
    }

    fn stage_file(
        &self,
        from: &Username,
        meta: &AttachmentRef,
        bytes: &[u8],
    ) -> Result<bool, AttachmentError> {
        if bytes.len() as u64 != meta.size || digest_of(bytes) != meta.sha256 {
            return Ok(false);
        }
        self.write()?;
        self.stage(from, bytes);
        Ok(true)
    }

    fn encrypted(
        &self,
        owner: &Username,
        id: &MessageId,
        index: usize,
    ) -> Result<Vec<u8>, AttachmentError> {
        self.sealed_file(&self.locator(owner, id, index))
            .ok_or(AttachmentError::Damaged)
    }
}

impl IdentityStore for InMemoryStore {
    fn identity(&self) -> Result<Option<DeviceIdentity>, StoreError> {
        Ok(lock(&self.identity).clone())
    }

    fn save_identity(&self, identity: &DeviceIdentity) -> Result<(), StoreError> {
        self.write()?;
        *lock(&self.identity) = Some(identity.clone());
        Ok(())
    }
}

/// Where the fake directory says a device is: the name of its fake peer, and the keys its
/// certificate carries when the test said (else the transport's keys for the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InMemoryAddress {
    /// The fake peer's name.
    pub name: String,
    /// The device's keys, when the test gave them.
    pub keys: Option<PeerKeys>,
}

impl DeviceAddress for InMemoryAddress {
    fn has_device_key(&self, keys: &PeerKeys) -> bool {
        self.keys.is_some_and(|k| k.ed25519 == keys.ed25519)
    }
}

/// A directory in memory; `set_unavailable` makes every look-up fail.
#[derive(Default)]
pub struct InMemoryDirectory {
    online: Mutex<HashMap<Username, Vec<InMemoryAddress>>>,
    unavailable: Mutex<bool>,
    /// Users listed from the n-th look-up on (a peer that comes online a moment later).
    later: Mutex<Vec<(Username, usize)>>,
    pub lookups: Mutex<usize>,
}

impl InMemoryDirectory {
    /// Lists one device of `user`, whose keys the transport decides.
    pub fn set_online(&self, user: &Username) {
        let address = InMemoryAddress {
            name: format!("peer-{user}"),
            keys: None,
        };
        lock(&self.online).insert(user.clone(), vec![address]);
    }

    /// Lists one device of `user` per keys, in the order given (the newest publication
    /// first); device `i` is named `peer-<user>-<i>`.
    pub fn set_devices(&self, user: &Username, devices: &[PeerKeys]) {
        let addresses = devices
            .iter()
            .enumerate()
            .map(|(i, keys)| InMemoryAddress {
                name: format!("peer-{user}-{i}"),
                keys: Some(*keys),
            })
            .collect();
        lock(&self.online).insert(user.clone(), addresses);
    }

    pub fn set_offline(&self, user: &Username) {
        lock(&self.online).remove(user);
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        *lock(&self.unavailable) = unavailable;
    }

    /// Lists `user` from the `n`-th look-up on (counting every look-up, the first is 1).
    pub fn set_online_from_lookup(&self, user: &Username, n: usize) {
        lock(&self.later).push((user.clone(), n));
    }
}

impl Directory for InMemoryDirectory {
    type Address = InMemoryAddress;

    async fn lookup(&self, user: &Username) -> Result<Vec<InMemoryAddress>, DirectoryError> {
        let count = {
            let mut lookups = lock(&self.lookups);
            *lookups += 1;
            *lookups
        };
        let due: Vec<Username> = {
            let mut later = lock(&self.later);
            let due = later
                .iter()
                .filter(|(_, n)| *n <= count)
                .map(|(u, _)| u.clone())
                .collect();
            later.retain(|(_, n)| *n > count);
            due
        };
        for user in &due {
            self.set_online(user);
        }
        if *lock(&self.unavailable) {
            return Err(DirectoryError::Unavailable("injected".into()));
        }
        Ok(lock(&self.online).get(user).cloned().unwrap_or_default())
    }
}

/// A transport in memory: records what it delivered; can fail from the n-th call, or always
/// answer with a given error.
#[derive(Default)]
pub struct InMemoryTransport {
    pub delivered: Mutex<Vec<OutgoingEnvelope>>,
    /// The name of the device each delivery went to, in order.
    pub delivered_to: Mutex<Vec<String>>,
    /// The devices of each user this node is connected to (none unless a test says).
    pub connected: Mutex<HashMap<Username, Vec<InMemoryAddress>>>,
    /// The devices first contacts asked for keys, in order.
    pub probed: Mutex<Vec<String>>,
    /// The keys each recipient's certificate carries (default: `keys(0)`).
    pub keys: Mutex<HashMap<Username, PeerKeys>>,
    failure: Mutex<Option<TransportError>>,
    calls: Mutex<usize>,
    fail_at: Mutex<Option<usize>>,
    /// The next delivery waits at this gate until it opens (a delivery held in flight).
    hold_next: Mutex<Option<Arc<Gate>>>,
    /// Deliveries waiting at a gate now.
    pub held: Mutex<usize>,
}

/// A gate that a held delivery waits at until the test opens it.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    waiting: Mutex<Vec<std::task::Waker>>,
}

impl Gate {
    /// Lets the held delivery go on.
    pub fn open(&self) {
        *lock(&self.open) = true;
        for waker in lock(&self.waiting).drain(..) {
            waker.wake();
        }
    }

    async fn passed(&self) {
        std::future::poll_fn(|cx| {
            if *lock(&self.open) {
                std::task::Poll::Ready(())
            } else {
                lock(&self.waiting).push(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await;
    }
}

impl InMemoryTransport {
    /// Holds the next delivery at `gate` until it opens.
    pub fn hold_next(&self, gate: Arc<Gate>) {
        *lock(&self.hold_next) = Some(gate);
    }

    pub fn fail_with(&self, error: Option<TransportError>) {
        *lock(&self.failure) = error;
    }

    pub fn fail_call_at(&self, n: usize) {
        *lock(&self.fail_at) = Some(n);
    }
}

impl InMemoryTransport {
    /// The keys the device at `at` presents: its own when the test gave them, else `to`'s.
    fn presented(&self, to: &Username, at: &InMemoryAddress) -> PeerKeys {
        at.keys
            .or_else(|| lock(&self.keys).get(to).copied())
            .unwrap_or_else(|| keys(0))
    }
}

impl Transport for InMemoryTransport {
    type Address = InMemoryAddress;

    async fn connected(&self, user: &Username) -> Vec<InMemoryAddress> {
        lock(&self.connected).get(user).cloned().unwrap_or_default()
    }

    async fn deliver(
        &self,
        to: &Username,
        at: &InMemoryAddress,
        message: &OutgoingEnvelope,
        pinned: Option<&PeerKeys>,
    ) -> Result<PeerKeys, TransportError> {
        let held = lock(&self.hold_next).take();
        if let Some(gate) = held {
            *lock(&self.held) += 1;
            gate.passed().await;
            *lock(&self.held) -= 1;
        }
        let presented = self.presented(to, at);
        let call = {
            let mut calls = lock(&self.calls);
            *calls += 1;
            *calls
        };
        if matches!(*lock(&self.fail_at), Some(n) if call >= n) {
            return Err(TransportError::Unreachable("injected".into()));
        }
        if let Some(e) = lock(&self.failure).clone() {
            return Err(e);
        }
        if pinned.is_some_and(|p| *p != presented) {
            return Err(TransportError::KeysChanged { presented });
        }
        lock(&self.delivered).push(message.clone());
        lock(&self.delivered_to).push(at.name.clone());
        Ok(presented)
    }

    async fn keys_of(
        &self,
        to: &Username,
        at: &InMemoryAddress,
    ) -> Result<PeerKeys, TransportError> {
        if let Some(e) = lock(&self.failure).clone() {
            return Err(e);
        }
        lock(&self.probed).push(at.name.clone());
        Ok(self.presented(to, at))
    }
}

/// The rendezvous's mailbox and its book of certified keys, shared by the devices of one test.
#[derive(Default)]
pub struct MailHub {
    /// What is held, per recipient, oldest first.
    pub held: Mutex<HashMap<Username, Vec<(MailId, Deposit)>>>,
    /// The keys the CA certified, per enrolled name.
    pub certified: Mutex<HashMap<Username, PeerKeys>>,
    /// When set, every deposit is refused with it.
    pub refuse: Mutex<Option<MailboxError>>,
    /// When set, the mailbox is unreachable.
    pub down: Mutex<bool>,
    /// Acknowledged ids.
    pub acknowledged: Mutex<Vec<MailId>>,
    /// When set, the prekey store is unreachable (the mailbox's `down` does not touch it).
    pub prekeys_down: Mutex<bool>,
    /// Users who published no prekeys (a fetch of theirs answers `None`).
    pub no_prekeys: Mutex<BTreeSet<Username>>,
    /// One-time prekeys published, per user.
    pub one_time: Mutex<HashMap<Username, Vec<OneTimePrekey>>>,
    next: Mutex<u64>,
}

impl MailHub {
    /// How many entries are held for `user`.
    pub fn held_for(&self, user: &Username) -> usize {
        lock(&self.held).get(user).map_or(0, Vec::len)
    }
}

/// One device's client of a [`MailHub`].
pub struct InMemoryMailbox {
    /// The device's user (the "certificate" of its requests).
    pub me: Username,
    /// The shared hub.
    pub hub: Arc<MailHub>,
}

impl InMemoryMailbox {
    fn reachable(&self) -> Result<(), MailboxError> {
        if *lock(&self.hub.down) {
            Err(MailboxError::Unavailable("injected".into()))
        } else {
            Ok(())
        }
    }
}

impl Mailbox for InMemoryMailbox {
    async fn deposit(&self, to: &Username, deposit: &Deposit) -> Result<(), MailboxError> {
        self.reachable()?;
        if let Some(refusal) = lock(&self.hub.refuse).clone() {
            return Err(refusal);
        }
        let id = {
            let mut next = lock(&self.hub.next);
            *next += 1;
            MailId::new(Timestamp(0), next.to_be_bytes())
        };
        lock(&self.hub.held)
            .entry(to.clone())
            .or_default()
            .push((id, deposit.clone()));
        Ok(())
    }

    async fn fetch(&self) -> Result<MailBatch, MailboxError> {
        self.reachable()?;
        let items = lock(&self.hub.held)
            .get(&self.me)
            .map(|held| {
                held.iter()
                    .map(|(id, d)| MailItem {
                        id: *id,
                        sealed: d.sealed.clone(),
                        files: d.files.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(MailBatch { items, more: false })
    }

    async fn acknowledge(&self, ids: &[MailId]) -> Result<(), MailboxError> {
        self.reachable()?;
        if let Some(held) = lock(&self.hub.held).get_mut(&self.me) {
            held.retain(|(id, _)| !ids.contains(id));
        }
        lock(&self.hub.acknowledged).extend_from_slice(ids);
        Ok(())
    }

    async fn certified_keys(&self, user: &Username) -> Result<Option<PeerKeys>, MailboxError> {
        self.reachable()?;
        Ok(lock(&self.hub.certified).get(user).copied())
    }
}

impl PrekeyService for InMemoryMailbox {
    async fn publish(&self, upload: &PrekeyUpload) -> Result<u32, PrekeyError> {
        if *lock(&self.hub.prekeys_down) {
            return Err(PrekeyError::Unavailable("injected".into()));
        }
        lock(&self.hub.no_prekeys).remove(&self.me);
        let mut held = lock(&self.hub.one_time);
        let mine = held.entry(self.me.clone()).or_default();
        mine.extend(upload.one_time.iter().copied());
        Ok(u32::try_from(mine.len()).unwrap_or(u32::MAX))
    }

    async fn remaining(&self) -> Result<Option<u32>, PrekeyError> {
        if *lock(&self.hub.prekeys_down) {
            return Err(PrekeyError::Unavailable("injected".into()));
        }
        Ok(lock(&self.hub.one_time)
            .get(&self.me)
            .map(|held| u32::try_from(held.len()).unwrap_or(u32::MAX)))
    }

    async fn bundle(
        &self,
        user: &Username,
        _device: &[u8; 32],
    ) -> Result<Option<PrekeyBundle>, PrekeyError> {
        if *lock(&self.hub.prekeys_down) {
            return Err(PrekeyError::Unavailable("injected".into()));
        }
        if lock(&self.hub.no_prekeys).contains(user) {
            return Ok(None);
        }
        let upload = fake_upload(0);
        let one_time_prekey = lock(&self.hub.one_time)
            .get_mut(user)
            .and_then(|held| (!held.is_empty()).then(|| held.remove(0)));
        Ok(Some(PrekeyBundle {
            identity: upload.signed_prekey.key,
            signed_prekey: upload.signed_prekey,
            one_time_prekey,
            kem_prekey: Some(upload.kem_prekey),
        }))
    }
}

/// The key the fake treats as a low-order point.
pub const WEAK_KEY: [u8; 32] = [0xee; 32];

/// What one fake sealing recorded.
#[derive(Clone)]
pub struct Sealing {
    bytes: Vec<u8>,
    header: Header,
    body: Body,
    signer: [u8; 32],
    recipient: [u8; 32],
    /// For a sealing in a session: the session, the agreement it carried, the ratchet's
    /// header and ciphertext (the fake runs the real, pure ratchet).
    session: Option<(EnvelopeSession, RatchetHeader, Vec<u8>)>,
}

/// Envelopes without cryptography: a sealing is an entry in a registry the devices of one test
/// share, and the bytes are its number. Opening checks what the real envelope guarantees (the
/// signer, the recipient, unaltered bytes), so the use cases can be tested against refusals.
pub struct FakeEnvelopes {
    me: PeerKeys,
    registry: Arc<Mutex<Vec<Sealing>>>,
}

/// The registry the devices of one test share.
pub type EnvelopeRegistry = Arc<Mutex<Vec<Sealing>>>;

impl FakeEnvelopes {
    /// The envelopes of the device holding `me`, over a shared `registry`.
    pub fn new(me: PeerKeys, registry: &EnvelopeRegistry) -> Self {
        Self {
            me,
            registry: Arc::clone(registry),
        }
    }

    fn refused(code: &'static str) -> EnvelopeError {
        EnvelopeError {
            code,
            message: format!("fake envelope refused ({code})"),
        }
    }

    fn sealing(&self, bytes: &[u8]) -> Result<Sealing, EnvelopeError> {
        let index = bytes
            .strip_prefix(b"fake-envelope:")
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Self::refused("malformed"))?;
        lock(&self.registry)
            .get(index)
            .filter(|s| s.bytes == bytes)
            .cloned()
            .ok_or_else(|| Self::refused("bad_signature"))
    }
}

/// The fakes' digest (not SHA-256: the core never computes one itself).
pub fn digest_for_tests(bytes: &[u8]) -> Digest {
    digest_of(bytes)
}

fn digest_of(bytes: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        out[i % 32] ^= b.rotate_left(u32::try_from(i / 32 % 8).unwrap_or(0));
    }
    out[31] ^= 0x5a;
    Digest(out)
}

impl Envelopes for FakeEnvelopes {
    fn seal(
        &self,
        header: &Header,
        body: &Body,
        recipient_x25519: &[u8; 32],
    ) -> Result<Sealed, EnvelopeError> {
        if *recipient_x25519 == WEAK_KEY {
            return Err(Self::refused("weak_key"));
        }
        let mut registry = lock(&self.registry);
        let bytes = format!("fake-envelope:{}", registry.len()).into_bytes();
        registry.push(Sealing {
            bytes: bytes.clone(),
            header: header.clone(),
            body: body.clone(),
            signer: self.me.ed25519,
            recipient: *recipient_x25519,
            session: None,
        });
        Ok(Sealed {
            digest: digest_of(&bytes),
            bytes,
        })
    }

    fn open(&self, bytes: &[u8], sender_ed25519: &[u8; 32]) -> Result<Opened, EnvelopeError> {
        let sealing = self.sealing(bytes)?;
        if sealing.signer != *sender_ed25519 {
            return Err(Self::refused("bad_signature"));
        }
        if Some(sealing.recipient) != self.me.x25519 {
            return Err(Self::refused("undecryptable"));
        }
        Ok(Opened {
            header: sealing.header,
            body: sealing.body,
            digest: digest_of(bytes),
        })
    }

    fn header(&self, bytes: &[u8]) -> Result<Header, EnvelopeError> {
        Ok(self.sealing(bytes)?.header)
    }

    fn wrap(&self, inner: &[u8], recipient_x25519: &[u8; 32]) -> Result<Vec<u8>, EnvelopeError> {
        if *recipient_x25519 == WEAK_KEY {
            return Err(Self::refused("weak_key"));
        }
        // The recipient's key, a checksum (the real wrapping's AEAD tag), the inner bytes.
        let mut out = b"fake-wrap:".to_vec();
        out.extend_from_slice(recipient_x25519);
        out.extend_from_slice(&digest_of(inner).0);
        out.extend_from_slice(inner);
        Ok(out)
    }

    fn unwrap(&self, bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let rest = bytes
            .strip_prefix(b"fake-wrap:")
            .filter(|rest| rest.len() >= 64)
            .ok_or_else(|| Self::refused("malformed"))?;
        let (recipient, rest) = rest.split_at(32);
        let (checksum, inner) = rest.split_at(32);
        if Some(recipient) != self.me.x25519.as_ref().map(|k| &k[..])
            || checksum != digest_of(inner).0
        {
            return Err(Self::refused("undecryptable"));
        }
        Ok(inner.to_vec())
    }

    fn digest(&self, bytes: &[u8]) -> Digest {
        digest_of(bytes)
    }

    fn sign_receipt(&self, digest: &Digest) -> [u8; 64] {
        fake_receipt_signature(digest, &self.me.ed25519)
    }

    fn verify_receipt(
        &self,
        digest: &Digest,
        signature: &[u8; 64],
        device_ed25519: &[u8; 32],
    ) -> bool {
        *signature == fake_receipt_signature(digest, device_ed25519)
    }

    fn check_signature(
        &self,
        bytes: &[u8],
        sender_ed25519: &[u8; 32],
    ) -> Result<(), EnvelopeError> {
        if self.sealing(bytes)?.signer == *sender_ed25519 {
            Ok(())
        } else {
            Err(Self::refused("bad_signature"))
        }
    }

    fn session_of(&self, bytes: &[u8]) -> Result<Option<EnvelopeSession>, EnvelopeError> {
        Ok(self.sealing(bytes)?.session.map(|(s, _, _)| s))
    }

    fn initiate(
        &self,
        _bundle: &PrekeyBundle,
        _device_ed25519: &[u8; 32],
        device_x25519: &[u8; 32],
        now: Timestamp,
    ) -> Result<SessionState, EnvelopeError> {
        if *device_x25519 == WEAK_KEY {
            return Err(Self::refused("weak_key"));
        }
        // The fake agreement: the root is the responder's key, its ratchet key is made from it.
        let (root, spk) = fake_agreement(device_x25519);
        let mut ephemeral = [0u8; 32];
        // Unique within a test, and across the tests of a process for different pairs.
        let count = u32::try_from(lock(&self.registry).len()).unwrap_or(u32::MAX);
        ephemeral[..4].copy_from_slice(&count.to_be_bytes());
        ephemeral[4..18].copy_from_slice(&self.me.ed25519[..14]);
        ephemeral[18..].copy_from_slice(&device_x25519[..14]);
        let initial = InitialMessage {
            identity: PublicKey(self.me.x25519.unwrap_or_default()),
            ephemeral: PublicKey(ephemeral),
            signed_prekey_id: 1,
            one_time_prekey_id: None,
            kem_prekey_id: 1,
            kem_ciphertext: KemCiphertext::parse(&[0; KEM_CIPHERTEXT_LEN])
                .unwrap_or_else(|_| unreachable!()),
        };
        lock(&SESSION_RECIPIENTS).insert((ephemeral, self.me.ed25519), *device_x25519);
        Ok(SessionState::opened(
            Ratchet::initiator(&root, spk.public()),
            initial,
            now,
        ))
    }

    fn respond(
        &self,
        initial: &InitialMessage,
        _secrets: &ResponderSecrets,
        now: Timestamp,
    ) -> Result<SessionState, EnvelopeError> {
        let (root, spk) = fake_agreement(&self.me.x25519.unwrap_or_default());
        lock(&SESSION_RECIPIENTS)
            .insert((initial.ephemeral.0, self.me.ed25519), initial.identity.0);
        Ok(SessionState::answered(
            Ratchet::responder(&root, spk),
            initial,
            now,
        ))
    }

    fn seal_in(
        &self,
        header: &Header,
        body: &Body,
        session: &mut SessionState,
        now: Timestamp,
    ) -> Result<Sealed, EnvelopeError> {
        let mut registry = lock(&self.registry);
        let mut fresh = [0x77u8; 32];
        fresh[..8].copy_from_slice(&(registry.len() as u64).to_be_bytes());
        fresh[8..16].copy_from_slice(&now.0.to_be_bytes());
        let mut next = session.clone();
        let steps = next.ratchet.dh_steps();
        let sealed = next
            .ratchet
            .seal(Key32::new(fresh), b"fake", &header.id.as_bytes()[..])
            .map_err(|_| Self::refused("seal_failed"))?;
        next.note(steps, false, now);
        let bytes = format!("fake-envelope:{}", registry.len()).into_bytes();
        registry.push(Sealing {
            bytes: bytes.clone(),
            header: header.clone(),
            body: body.clone(),
            signer: self.me.ed25519,
            recipient: lock(&SESSION_RECIPIENTS)
                .get(&(next.id, self.me.ed25519))
                .copied()
                .unwrap_or_default(),
            session: Some((
                EnvelopeSession {
                    id: next.id,
                    initial: next.initial.clone(),
                },
                sealed.header,
                sealed.ciphertext,
            )),
        });
        *session = next;
        Ok(Sealed {
            digest: digest_of(&bytes),
            bytes,
        })
    }

    fn open_in(
        &self,
        bytes: &[u8],
        sender_ed25519: &[u8; 32],
        session: &mut SessionState,
        now: Timestamp,
    ) -> Result<Opened, EnvelopeError> {
        let sealing = self.sealing(bytes)?;
        if sealing.signer != *sender_ed25519 {
            return Err(Self::refused("bad_signature"));
        }
        let Some((named, header, ciphertext)) = &sealing.session else {
            return Err(Self::refused("malformed"));
        };
        if named.id != session.id || Some(sealing.recipient) != self.me.x25519 {
            return Err(Self::refused("undecryptable"));
        }
        let mut next = session.clone();
        let steps = next.ratchet.dh_steps();
        next.ratchet
            .open(header, ciphertext, &sealing.header.id.as_bytes()[..], now)
            .map_err(|e| Self::refused(e.code()))?;
        next.note(steps, true, now);
        *session = next;
        Ok(Opened {
            header: sealing.header,
            body: sealing.body,
            digest: digest_of(bytes),
        })
    }
}

/// The device each fake session seals to, by session id and sealing device (shared by every device of a test
/// process: the ids embed the opening device's key and a counter).
type SessionKey = ([u8; 32], [u8; 32]);
static SESSION_RECIPIENTS: Mutex<BTreeMap<SessionKey, [u8; 32]>> = Mutex::new(BTreeMap::new());

/// The fakes' receipt signature: the digest and the signer's key side by side (only a device
/// holding `device` makes it, in this world).
fn fake_receipt_signature(digest: &Digest, device: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&digest.0);
    out[32..].copy_from_slice(device);
    out
}

/// The fake agreement's root and the responder's first ratchet key, from its X25519 key.
fn fake_agreement(responder_x25519: &[u8; 32]) -> (Key32, KeyPair) {
    let mut root = *responder_x25519;
    root.iter_mut().for_each(|b| *b ^= 0x11);
    let mut spk = *responder_x25519;
    spk.iter_mut().for_each(|b| *b ^= 0x55);
    (Key32::new(root), KeyPair::from_secret(Key32::new(spk)))
}

/// A clock that says what it is told.
pub struct FixedClock(pub Mutex<i64>);

impl FixedClock {
    pub fn at(ms: i64) -> Self {
        Self(Mutex::new(ms))
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp(*lock(&self.0))
    }

    /// Moves the clock on by `duration` at once: a test never waits.
    async fn sleep(&self, duration: std::time::Duration) {
        let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let mut now = lock(&self.0);
        *now = now.saturating_add(ms);
    }
}

/// Keeps every event.
#[derive(Default)]
pub struct RecordingEvents(pub Mutex<Vec<Event>>);

impl EventSink for RecordingEvents {
    fn emit(&self, event: Event) {
        lock(&self.0).push(event);
    }
}

/// An enrollment that hands out a canned identity, or an error, and keeps the requests.
pub struct InMemoryEnrollment {
    pub answer: Result<DeviceIdentity, EnrollError>,
    pub requests: Mutex<Vec<EnrollRequest>>,
}

impl InMemoryEnrollment {
    pub fn answering(answer: Result<DeviceIdentity, EnrollError>) -> Self {
        Self {
            answer,
            requests: Mutex::default(),
        }
    }
}

impl Enrollment for InMemoryEnrollment {
    async fn enroll(&self, request: &EnrollRequest) -> Result<DeviceIdentity, EnrollError> {
        lock(&self.requests).push(request.clone());
        self.answer.clone()
    }
}

/// Distinct test keys.
pub fn keys(seed: u8) -> PeerKeys {
    PeerKeys {
        ed25519: [seed; 32],
        x25519: Some([seed; 32]),
    }
}

// ---------------------------------------------------------------------------------------------
// Prekeys: the rendezvous's prekey store ([`FakePrekeyService`], over a [`PrekeyHub`] the
// devices of one test share) and this device's prekey secrets ([`FakePrekeySecrets`]).
// ---------------------------------------------------------------------------------------------

/// The rendezvous's prekeys in memory, by user: the identity key a bundle names and what the
/// domain's rules hold ([`parley_domain::prekeys::HeldPrekeys`]).
#[derive(Default, Clone)]
pub struct PrekeyHub(
    Arc<
        Mutex<
            HashMap<
                Username,
                (
                    parley_domain::ratchet::PublicKey,
                    parley_domain::prekeys::HeldPrekeys,
                ),
            >,
        >,
    >,
);

/// One device's client of a [`PrekeyHub`], publishing as `me`. Signatures are not checked (the
/// fake secrets do not sign). `fail_at(n)` makes the n-th call (1-based, publish, remaining and
/// fetch alike) and every later one unreachable.
pub struct FakePrekeyService {
    hub: PrekeyHub,
    me: Username,
    identity: [u8; 32],
    calls: Mutex<u32>,
    fail_at: Mutex<Option<u32>>,
    uploads: Mutex<Vec<crate::ports::PrekeyUpload>>,
}

impl FakePrekeyService {
    /// `me`'s client of `hub`; its bundle names `identity` as the device's X25519 key.
    pub fn new(hub: PrekeyHub, me: Username, identity: [u8; 32]) -> Self {
        Self {
            hub,
            me,
            identity,
            calls: Mutex::new(0),
            fail_at: Mutex::new(None),
            uploads: Mutex::default(),
        }
    }

    pub fn fail_at(&self, n: u32) {
        *lock(&self.fail_at) = Some(n);
    }

    /// Every publication accepted, in order.
    pub fn uploads(&self) -> Vec<crate::ports::PrekeyUpload> {
        lock(&self.uploads).clone()
    }

    /// Hands out `n` of this device's one-time prekeys, as fetches by others would.
    pub fn hand_out(&self, n: u32) {
        if let Some((_, held)) = lock(&self.hub.0).get_mut(&self.me) {
            for _ in 0..n {
                held.take_one_time();
            }
        }
    }

    fn call(&self) -> Result<(), crate::ports::PrekeyError> {
        let mut calls = lock(&self.calls);
        *calls += 1;
        match *lock(&self.fail_at) {
            Some(n) if *calls >= n => Err(crate::ports::PrekeyError::Unavailable(
                "injected failure".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl crate::ports::PrekeyService for FakePrekeyService {
    async fn publish(
        &self,
        upload: &crate::ports::PrekeyUpload,
    ) -> Result<u32, crate::ports::PrekeyError> {
        self.call()?;
        let mut hub = lock(&self.hub.0);
        let current = hub.get(&self.me).map(|(_, held)| held);
        let held = parley_domain::prekeys::HeldPrekeys::publish(
            current,
            upload.signed_prekey.clone(),
            upload.kem_prekey.clone(),
            &upload.one_time,
        )
        .map_err(|refusal| crate::ports::PrekeyError::Refused {
            code: refusal.code().into(),
            reason: refusal.to_string(),
        })?;
        let count = held.one_time_count();
        hub.insert(
            self.me.clone(),
            (parley_domain::ratchet::PublicKey(self.identity), held),
        );
        lock(&self.uploads).push(upload.clone());
        Ok(count)
    }

    async fn remaining(&self) -> Result<Option<u32>, crate::ports::PrekeyError> {
        self.call()?;
        Ok(lock(&self.hub.0)
            .get(&self.me)
            .map(|(_, held)| held.one_time_count()))
    }

    async fn bundle(
        &self,
        user: &Username,
        _device: &[u8; 32],
    ) -> Result<Option<parley_domain::agreement::PrekeyBundle>, crate::ports::PrekeyError> {
        self.call()?;
        Ok(lock(&self.hub.0).get_mut(user).map(|(identity, held)| {
            parley_domain::agreement::PrekeyBundle {
                identity: *identity,
                signed_prekey: held.signed.clone(),
                one_time_prekey: held.take_one_time(),
                kem_prekey: Some(held.kem.clone()),
            }
        }))
    }
}

/// This device's prekey secrets in memory, made from counters (not random, not signed): the
/// signed and KEM prekeys have the id `rotate` moves on, one-time prekeys the next ids.
/// `fail_at(n)` makes the n-th call (1-based) and every later one fail.
#[derive(Default)]
pub struct FakePrekeySecrets {
    state: Mutex<FakePrekeyState>,
    fail_at: Mutex<Option<u32>>,
}

#[derive(Default)]
struct FakePrekeyState {
    /// The current signed (and KEM) prekey id.
    rotation: u32,
    /// The last one-time prekey id made.
    last_one_time: u32,
    /// One-time prekey ids made and not used by a first message yet.
    one_time: BTreeSet<u32>,
    calls: u32,
    prepared: u32,
}

impl FakePrekeySecrets {
    pub fn fail_at(&self, n: u32) {
        *lock(&self.fail_at) = Some(n);
    }

    /// Rotates the signed and KEM prekeys (the previous ones are still held).
    pub fn rotate(&self) {
        lock(&self.state).rotation += 1;
    }

    /// How many uploads were prepared.
    pub fn prepared(&self) -> u32 {
        lock(&self.state).prepared
    }

    /// The fake's secret for a prekey id: distinct per id and kind.
    fn secret(kind: u8, id: u32) -> parley_domain::ratchet::KeyPair {
        let mut bytes = [kind; 32];
        bytes[..4].copy_from_slice(&id.to_be_bytes());
        parley_domain::ratchet::KeyPair::from_secret(parley_domain::ratchet::Key32::new(bytes))
    }

    fn call(&self, state: &mut FakePrekeyState) -> Result<(), StoreError> {
        state.calls += 1;
        match *lock(&self.fail_at) {
            Some(n) if state.calls >= n => Err(StoreError::Unavailable("injected failure".into())),
            _ => Ok(()),
        }
    }
}

impl crate::ports::PrekeySecrets for FakePrekeySecrets {
    fn prepare_upload(
        &self,
        one_time: u32,
        _now: Timestamp,
    ) -> Result<crate::ports::PrekeyUpload, StoreError> {
        use parley_domain::agreement::{
            KEM_PUBLIC_LEN, KemPrekey, KemPublicKey, OneTimePrekey, SignedPrekey,
        };
        let mut state = lock(&self.state);
        self.call(&mut state)?;
        state.prepared += 1;
        let id = state.rotation;
        let mut kem = [0x4b; KEM_PUBLIC_LEN];
        kem[..4].copy_from_slice(&id.to_be_bytes());
        let mut made = Vec::new();
        for _ in 0..one_time {
            state.last_one_time += 1;
            let id = state.last_one_time;
            state.one_time.insert(id);
            made.push(OneTimePrekey {
                id,
                key: Self::secret(0x01, id).public(),
            });
        }
        Ok(crate::ports::PrekeyUpload {
            signed_prekey: SignedPrekey {
                id,
                key: Self::secret(0x53, id).public(),
                signature: [0; 64],
            },
            kem_prekey: KemPrekey {
                id,
                key: KemPublicKey::parse(&kem)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?,
                signature: [0; 64],
            },
            one_time: made,
        })
    }

    fn responder_secrets(
        &self,
        signed_prekey: u32,
        one_time_prekey: Option<u32>,
        kem_prekey: u32,
    ) -> Result<Option<crate::ports::ResponderSecrets>, StoreError> {
        let mut state = lock(&self.state);
        self.call(&mut state)?;
        if signed_prekey > state.rotation || kem_prekey > state.rotation {
            return Ok(None);
        }
        let one_time = one_time_prekey
            .filter(|id| state.one_time.remove(id))
            .map(|id| Self::secret(0x01, id));
        let mut kem_secret = vec![0x4b; 32];
        kem_secret[..4].copy_from_slice(&kem_prekey.to_be_bytes());
        Ok(Some(crate::ports::ResponderSecrets {
            signed_prekey: Self::secret(0x53, signed_prekey),
            one_time_prekey: one_time,
            kem_secret: zeroize::Zeroizing::new(kem_secret),
        }))
    }
}
