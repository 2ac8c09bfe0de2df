//! Queries: each returns data and changes nothing.

use parley_domain::{
    Contact, ConversationSummary, PeerKeys, SafetyNumber, StoredMessage, Username,
};

use crate::ports::{MessageStore, NodeInfo, NodeSnapshot, StoreError};

/// One conversation, oldest first.
///
/// # Errors
/// [`StoreError`] when the store cannot be read.
pub fn history(
    store: &impl MessageStore,
    with: &Username,
) -> Result<Vec<StoredMessage>, StoreError> {
    store.history(with)
}

/// Every conversation, most recent first.
///
/// # Errors
/// [`StoreError`] when the store cannot be read.
pub fn conversations(store: &impl MessageStore) -> Result<Vec<ConversationSummary>, StoreError> {
    store.conversations()
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
}

/// The peer's state now.
///
/// # Errors
/// [`StoreError`] when the outbox cannot be read.
pub fn status(
    user: &Username,
    node: &impl NodeInfo,
    store: &impl MessageStore,
) -> Result<Status, StoreError> {
    Ok(Status {
        user: user.clone(),
        node: node.snapshot(),
        outbox: store.outbox()?.len(),
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
    store: &impl MessageStore,
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
