//! The ports the node implements for the use cases: `Directory`, `Transport`, `NodeInfo`.

use std::sync::PoisonError;

use libp2p::{Multiaddr, PeerId};
use parley_domain::{PeerKeys, Username};
use parley_usecases::ports::{
    Directory, DirectoryError, NodeInfo, NodeSnapshot, OutgoingEnvelope, Transport, TransportError,
};
use tokio::sync::oneshot;

use super::{
    Node, PeerAddress,
    messaging::{Delivery, digest_of, encode_envelope},
    task::Command,
};
use crate::{attachment, protocol::MessageRequest, trace};

impl NodeInfo for Node {
    fn snapshot(&self) -> NodeSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Directory for Node {
    type Address = PeerAddress;

    #[tracing::instrument(name = "p2p.lookup", skip_all, fields(%user, found), err(Display, level = "info"))]
    async fn lookup(&self, user: &Username) -> Result<Option<PeerAddress>, DirectoryError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Lookup {
            user: user.clone(),
            meta: trace::current(),
            reply,
        })
        .await
        .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        let found = rx
            .await
            .map_err(|_| DirectoryError::Unavailable("the network task stopped".into()))??;
        tracing::Span::current().record("found", found.is_some());
        Ok(found)
    }
}

impl Transport for Node {
    type Address = PeerAddress;

    #[tracing::instrument(
        name = "p2p.deliver",
        skip_all,
        fields(%to, peer.id = %at.peer, message.id = %message.id, pinned = pinned.is_some(), outcome, path),
        err(Display, level = "info")
    )]
    async fn deliver(
        &self,
        to: &Username,
        at: &PeerAddress,
        message: &OutgoingEnvelope,
        pinned: Option<&PeerKeys>,
    ) -> Result<PeerKeys, TransportError> {
        let (peer, addrs) = (at.peer, at.addrs.clone());
        if !message.attachments.is_empty() {
            // Connect (holding the peer to its pinned keys), then send the files ahead of the
            // envelope that names them.
            self.connect(to, peer, addrs.clone(), pinned.copied())
                .await?;
            let mut streams = self.streams.clone();
            for file in &message.attachments {
                attachment::upload(
                    &mut streams,
                    peer,
                    std::path::Path::new(&file.locator),
                    &file.sha256,
                    file.size,
                )
                .await?;
            }
        }
        let delivery = Box::new(Delivery {
            to: to.clone(),
            pinned: pinned.copied(),
            peer,
            addrs,
            request: MessageRequest {
                envelope: encode_envelope(&message.bytes),
                meta: trace::current(),
            },
            digest: digest_of(&message.bytes),
        });
        let (reply, rx) = oneshot::channel();
        self.command(Command::Deliver { delivery, reply })
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        let outcome = rx
            .await
            .map_err(|_| TransportError::NoReceipt("the network task stopped".into()))?;
        let code = outcome
            .as_ref()
            .map_or_else(TransportError::code, |_| "receipt");
        let span = tracing::Span::current();
        span.record("outcome", code);
        if let Some(path) = self.path_to(&peer) {
            span.record("path", path);
        }
        outcome
    }

    #[tracing::instrument(
        name = "p2p.keys_of",
        skip_all,
        fields(%to, peer.id = %at.peer),
        err(Display, level = "info")
    )]
    async fn keys_of(&self, to: &Username, at: &PeerAddress) -> Result<PeerKeys, TransportError> {
        let (peer, addrs) = (at.peer, at.addrs.clone());
        self.connect(to, peer, addrs, None).await
    }
}

impl Node {
    /// Connects to `peer` as `to` (with `pinned` keys, if any) and returns its keys.
    async fn connect(
        &self,
        to: &Username,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        pinned: Option<PeerKeys>,
    ) -> Result<PeerKeys, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::KeysOf {
            to: to.clone(),
            peer,
            addrs,
            pinned,
            reply,
        })
        .await
        .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        rx.await
            .map_err(|_| TransportError::Unreachable("the network task stopped".into()))?
    }
}
