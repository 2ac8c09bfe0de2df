//! Queries: each returns data and changes nothing.

use parley_domain::{
    ChainHead, ChainState, Contact, ConversationSummary, PeerKeys, SafetyNumber, StoredMessage,
    Timestamp, Username,
};

use crate::ports::{
    Chains, Contacts, Conversations, DeviceAddress, Directory, DirectoryError, NodeInfo,
    NodeSnapshot, OutboxStore, Sessions, StoreError, Transport,
};

/// One conversation and the state of both directions' hash chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The messages not expired, oldest first.
    pub messages: Vec<StoredMessage>,
    /// The contact's chain towards this device, as received.
    pub incoming: ChainState,
    /// The head of this device's chain towards the contact.
    pub outgoing: ChainHead,
}

/// One conversation at `now`, oldest first, expired messages left out, with the chains' state.
///
/// # Errors
/// [`StoreError`] when the store cannot be read.
pub fn history(
    store: &(impl Conversations + Chains),
    with: &Username,
    now: Timestamp,
) -> Result<History, StoreError> {
    Ok(History {
        messages: store.history(with, now)?,
        incoming: store.chain_state(with)?,
        outgoing: store.chain_head(with)?,
    })
}

/// Every conversation with a message not expired at `now`, most recent first.
///
/// # Errors
/// [`StoreError`] when the store cannot be read.
pub fn conversations(
    store: &impl Conversations,
    now: Timestamp,
) -> Result<Vec<ConversationSummary>, StoreError> {
    store.conversations(now)
}

/// How far a conversation's keys have moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RatchetSummary {
    /// DH steps of both sides, over the conversation's sessions.
    pub steps: u64,
    /// When the keys last moved on, as this device saw it.
    pub last_step_at: Option<Timestamp>,
}

/// How far the conversation with `with` has moved its keys on.
///
/// # Errors
/// [`StoreError`] when the store cannot be read.
pub fn ratchet(store: &impl Sessions, with: &Username) -> Result<RatchetSummary, StoreError> {
    let (steps, last_step_at) = store.sessions(with)?.steps();
    Ok(RatchetSummary {
        steps,
        last_step_at,
    })
}

/// The peer's state for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The enrolled user.
    pub user: Username,
    /// The node's connections.
    pub node: NodeSnapshot,
    /// Messages waiting for a receipt.
    pub outbox: usize,
    /// Of those, the ones the rendezvous's mailbox holds for an offline recipient.
    pub queued: usize,
    /// Every DH ratchet step this device took, over all conversations.
    pub rekeys: u64,
}

/// The peer's state now.
///
/// # Errors
/// [`StoreError`] when the outbox cannot be read.
pub fn status(
    user: &Username,
    node: &impl NodeInfo,
    store: &(impl OutboxStore + Sessions),
    now: Timestamp,
) -> Result<Status, StoreError> {
    let outbox = store.outbox(now)?;
    Ok(Status {
        rekeys: store.rekeys()?,
        user: user.clone(),
        node: node.snapshot(),
        queued: outbox
            .iter()
            .filter(|e| matches!(e.message.delivery, parley_domain::Delivery::Queued(_)))
            .count(),
        outbox: outbox.len(),
    })
}

/// A contact, its safety number, and the one it would have with the pending keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactView {
    /// The contact record.
    pub contact: Contact,
    /// The safety number with the pinned keys.
    pub safety_number: SafetyNumber,
    /// The safety number with the keys waiting to be accepted, if any.
    pub pending_safety_number: Option<SafetyNumber>,
}

/// `user`'s pinned keys and safety numbers, seen by `me` holding `my_keys`. `None` for a name
/// that is not a contact yet.
///
/// # Errors
/// [`StoreError`] when the store cannot be read.
pub fn contact(
    store: &impl Contacts,
    me: &Username,
    my_keys: &PeerKeys,
    user: &Username,
) -> Result<Option<ContactView>, StoreError> {
    Ok(store.contact(user)?.map(|contact| ContactView {
        safety_number: SafetyNumber::of((me, my_keys), (&contact.user, &contact.keys)),
        pending_safety_number: contact
            .pending
            .map(|pending| SafetyNumber::of((me, my_keys), (&contact.user, &pending))),
        contact,
    }))
}

/// Whether `user` is online now: a device of theirs is connected to this node, or the
/// directory lists one. The directory does not tell an unknown name from an offline one: both
/// are `false`.
///
/// # Errors
/// [`DirectoryError`] when the rendezvous had to be asked and could not answer.
pub async fn online<A: DeviceAddress>(
    directory: &impl Directory<Address = A>,
    transport: &impl Transport<Address = A>,
    user: &Username,
) -> Result<bool, DirectoryError> {
    if !transport.connected(user).await.is_empty() {
        return Ok(true);
    }
    Ok(!directory.lookup(user).await?.is_empty())
}
