//! In-memory fakes of the ports, for the use-case tests. Each can be told to fail.

use std::collections::HashMap;
use std::sync::Mutex;

use parley_domain::{
    Contact, ConversationSummary, Delivery, DeviceIdentity, Direction, MessageId, PeerKeys,
    StoredMessage, Timestamp, Username,
};

use crate::ports::{
    Clock, Directory, DirectoryError, EnrollError, EnrollRequest, Enrollment, Event, EventSink,
    IdentityStore, MessageStore, OutgoingMessage, PeerAddress, StoreError, Stored, Transport,
    TransportError,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A store in memory. `fail_write_at(n)` makes the n-th write (1-based) and every later one fail.
#[derive(Default)]
pub struct InMemoryStore {
    messages: Mutex<Vec<StoredMessage>>,
    contacts: Mutex<HashMap<Username, Contact>>,
    identity: Mutex<Option<DeviceIdentity>>,
    writes: Mutex<usize>,
    fail_at: Mutex<Option<usize>>,
}

impl InMemoryStore {
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

    pub fn all(&self) -> Vec<StoredMessage> {
        lock(&self.messages).clone()
    }
}

impl MessageStore for InMemoryStore {
    fn append_outgoing(&self, message: &StoredMessage) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.messages).push(message.clone());
        Ok(())
    }

    fn store_incoming(&self, message: &StoredMessage) -> Result<Stored, StoreError> {
        let mut messages = lock(&self.messages);
        if messages
            .iter()
            .any(|m| m.id == message.id && m.from == message.from)
        {
            return Ok(Stored::Duplicate);
        }
        self.write()?;
        messages.push(message.clone());
        Ok(Stored::New)
    }

    fn mark_delivered(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        self.write()?;
        for m in lock(&self.messages).iter_mut() {
            if m.id == *id && m.direction == Direction::Outgoing {
                m.delivery = Delivery::Delivered(at);
            }
        }
        Ok(())
    }

    fn outbox(&self) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(lock(&self.messages)
            .iter()
            .filter(|m| m.delivery == Delivery::Pending)
            .cloned()
            .collect())
    }

    fn history(&self, with: &Username) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(lock(&self.messages)
            .iter()
            .filter(|m| m.contact() == with)
            .cloned()
            .collect())
    }

    fn conversations(&self) -> Result<Vec<ConversationSummary>, StoreError> {
        // (summary, position of its newest message), newest conversation first.
        let mut out: Vec<(ConversationSummary, usize)> = Vec::new();
        for (at, m) in lock(&self.messages).iter().enumerate() {
            match out.iter_mut().find(|(c, _)| c.with == *m.contact()) {
                Some((c, last)) => {
                    c.messages += 1;
                    c.last = m.clone();
                    *last = at;
                }
                None => out.push((
                    ConversationSummary {
                        with: m.contact().clone(),
                        messages: 1,
                        last: m.clone(),
                    },
                    at,
                )),
            }
        }
        out.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        Ok(out.into_iter().map(|(c, _)| c).collect())
    }

    fn is_contact(&self, user: &Username) -> Result<bool, StoreError> {
        Ok(lock(&self.messages).iter().any(|m| m.contact() == user))
    }

    fn contact(&self, user: &Username) -> Result<Option<Contact>, StoreError> {
        Ok(lock(&self.contacts).get(user).cloned())
    }

    fn save_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.contacts).insert(contact.user.clone(), contact.clone());
        Ok(())
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

/// A directory in memory; `set_unavailable` makes every look-up fail.
#[derive(Default)]
pub struct InMemoryDirectory {
    online: Mutex<HashMap<Username, PeerAddress>>,
    unavailable: Mutex<bool>,
    pub lookups: Mutex<usize>,
}

impl InMemoryDirectory {
    pub fn set_online(&self, user: &Username) {
        let address = PeerAddress {
            peer_id: format!("peer-{user}"),
            addrs: vec![],
        };
        lock(&self.online).insert(user.clone(), address);
    }

    pub fn set_offline(&self, user: &Username) {
        lock(&self.online).remove(user);
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        *lock(&self.unavailable) = unavailable;
    }
}

impl Directory for InMemoryDirectory {
    async fn lookup(&self, user: &Username) -> Result<Option<PeerAddress>, DirectoryError> {
        *lock(&self.lookups) += 1;
        if *lock(&self.unavailable) {
            return Err(DirectoryError::Unavailable("injected".into()));
        }
        Ok(lock(&self.online).get(user).cloned())
    }
}

/// A transport in memory: records what it delivered; can fail from the n-th call, or always
/// answer with a given error.
#[derive(Default)]
pub struct InMemoryTransport {
    pub delivered: Mutex<Vec<OutgoingMessage>>,
    /// The keys each recipient's certificate carries (default: `keys(0)`).
    pub keys: Mutex<HashMap<Username, PeerKeys>>,
    failure: Mutex<Option<TransportError>>,
    calls: Mutex<usize>,
    fail_at: Mutex<Option<usize>>,
}

impl InMemoryTransport {
    pub fn fail_with(&self, error: Option<TransportError>) {
        *lock(&self.failure) = error;
    }

    pub fn fail_call_at(&self, n: usize) {
        *lock(&self.fail_at) = Some(n);
    }
}

impl Transport for InMemoryTransport {
    async fn deliver(
        &self,
        to: &Username,
        _at: &PeerAddress,
        message: &OutgoingMessage,
        pinned: Option<&PeerKeys>,
    ) -> Result<PeerKeys, TransportError> {
        let presented = lock(&self.keys).get(to).copied().unwrap_or_else(|| keys(0));
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
        Ok(presented)
    }
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
