//! The first publication of a new device's prekeys, right after enrollment: others can then
//! send it a first message (through the mailbox) before its daemon ever ran.

use std::sync::Arc;
use std::time::Duration;

use parley_p2p::{Credentials, Multiaddr, Node, NodeConfig};
use parley_store::Store;
use parley_usecases::commands::{Prekeys, Replenished};
use parley_usecases::ports::IdentityStore;

use crate::SystemClock;

/// Why the first prekeys could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirstPrekeysError {
    /// The home holds no usable identity.
    #[error("the home holds no usable identity: {0}")]
    Identity(String),
    /// The rendezvous was not reached in time.
    #[error("the rendezvous could not be reached within {0:?}")]
    Unreachable(Duration),
    /// The rendezvous or the store refused.
    #[error("{0}")]
    Refused(String),
}

/// Connects to the rendezvous as this device, publishes its prekeys (making them first), and
/// disconnects; within `within`. Resolves with the number of one-time prekeys held there.
///
/// # Errors
/// [`FirstPrekeysError`]; the daemon publishes them at its start anyway.
pub async fn publish_first_prekeys(
    store: Arc<Store>,
    within: Duration,
) -> Result<u32, FirstPrekeysError> {
    let identity = store
        .identity()
        .map_err(|e| FirstPrekeysError::Identity(e.to_string()))?
        .ok_or_else(|| FirstPrekeysError::Identity("not enrolled".into()))?;
    let credentials = Credentials::new(
        &identity.ed25519,
        identity.certificate_der.clone(),
        identity.ca_der.clone(),
    )
    .map_err(|e| FirstPrekeysError::Identity(e.to_string()))?;
    let rendezvous = identity
        .rendezvous_addrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .collect();
    let listen = "/ip4/127.0.0.1/tcp/0"
        .parse()
        .map_err(|_| FirstPrekeysError::Identity("no loopback address".into()))?;
    let (node, _inbound) = Node::start(NodeConfig {
        credentials,
        user: identity.user.clone(),
        listen,
        rendezvous,
        inbound_queue: 1,
        attachments: None,
        // What it would renew would not be kept: the daemon renews.
        renew: false,
        tls_refresh: parley_p2p::refresh::DEFAULT_TLS_REFRESH,
    })
    .await
    .map_err(|e| FirstPrekeysError::Refused(e.to_string()))?;
    let outcome = tokio::time::timeout(within, async {
        while !parley_usecases::ports::NodeInfo::snapshot(&node).rendezvous_connected {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Prekeys::new(node.clone(), store.clone(), SystemClock)
            .replenish()
            .await
    })
    .await;
    node.shutdown().await;
    match outcome {
        Err(_) => Err(FirstPrekeysError::Unreachable(within)),
        Ok(Err(e)) => Err(FirstPrekeysError::Refused(e.to_string())),
        Ok(Ok(Replenished::Published { held, .. } | Replenished::Enough { held })) => Ok(held),
    }
}
