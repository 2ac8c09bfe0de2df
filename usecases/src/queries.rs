//! Queries: each returns data and changes nothing.

use parley_domain::{ConversationSummary, StoredMessage, Username};

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
