//! The ports the node implements for the use cases: `Directory`, `Transport`, `NodeInfo`,
//! `Mailbox`, `PrekeyService`, `AccountService`.

use std::{sync::PoisonError, time::Duration};

use base64::Engine as _;
use libp2p::{Multiaddr, PeerId};
use parley_domain::{MailId, PeerKeys, Username, devices::DeviceList};
use parley_usecases::ports::{
    AccountError, AccountService, Deposit, Directory, DirectoryError, MailBatch, Mailbox,
    MailboxError, NodeInfo, NodeSnapshot, OutgoingEnvelope, PrekeyError, PrekeyService,
    PrekeyUpload, Transport, TransportError,
};
use tokio::sync::oneshot;

use super::{
    Node, PeerAddress,
    account::{self, REQUEST_TIMEOUT as ACCOUNT_TIMEOUT},
    asking, links, mailbox,
    messaging::Reach,
    prekeys::{self, REQUEST_TIMEOUT as PREKEY_TIMEOUT},
    task::Command,
};
use crate::{
    account::{AccountRequest, AccountResponse},
    attachment,
    message::{self, Answer},
    prekeys::{PrekeysRequest, PrekeysResponse},
    protocol::{MAX_ACK_IDS, MailboxRequest, MailboxResponse},
    trace,
};

/// How long a delivery may wait for a verified connection to its recipient: the dial, the
/// handshake (at most [`crate::HANDSHAKE_TIMEOUT`]) and the swarm task's queue.
const REACH_TIMEOUT: Duration = Duration::from_secs(15);

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

    #[tracing::instrument(name = "p2p.lookup", skip_all, fields(%user, found, devices), err(Display, level = "info"))]
    async fn lookup(&self, user: &Username) -> Result<Vec<PeerAddress>, DirectoryError> {
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
        let span = tracing::Span::current();
        span.record("found", !found.is_empty());
        span.record("devices", found.len());
        Ok(found)
    }
}

impl Transport for Node {
    type Address = PeerAddress;

    async fn connected(&self, user: &Username) -> Vec<PeerAddress> {
        let (reply, rx) = oneshot::channel();
        let asked = Command::Connected {
            user: user.clone(),
            reply,
        };
        // A node that stopped has no connections.
        if self.command(asked).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

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
        let outcome = self.send(to, peer, addrs, message, pinned).await;
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

impl Mailbox for Node {
    #[tracing::instrument(
        name = "p2p.mailbox.deposit",
        skip_all,
        fields(bytes = deposit.sealed.len(), files = deposit.files.len()),
        err(Display, level = "info")
    )]
    async fn deposit(&self, to: &Username, deposit: &Deposit) -> Result<(), MailboxError> {
        let request = MailboxRequest::Deposit {
            to: to.to_string(),
            sealed: mailbox::encode(&deposit.sealed),
            files: deposit.files.iter().map(|f| mailbox::encode(f)).collect(),
            expires_at_ms: deposit.expires_at.map(|t| t.0),
            meta: trace::current(),
        };
        mailbox::held(self.ask_mailbox(request, mailbox::TRANSFER_TIMEOUT).await?)
    }

    #[tracing::instrument(
        name = "p2p.mailbox.fetch",
        skip_all,
        fields(entries, more),
        err(Display, level = "info")
    )]
    async fn fetch(&self) -> Result<MailBatch, MailboxError> {
        let request = MailboxRequest::Fetch {
            meta: trace::current(),
        };
        let batch = mailbox::batch(self.ask_mailbox(request, mailbox::TRANSFER_TIMEOUT).await?)?;
        let span = tracing::Span::current();
        span.record("entries", batch.items.len());
        span.record("more", batch.more);
        Ok(batch)
    }

    #[tracing::instrument(
        name = "p2p.mailbox.acknowledge",
        skip_all,
        fields(entries = ids.len()),
        err(Display, level = "info")
    )]
    async fn acknowledge(&self, ids: &[MailId]) -> Result<(), MailboxError> {
        for chunk in ids.chunks(MAX_ACK_IDS) {
            let request = MailboxRequest::Ack {
                ids: chunk.iter().map(ToString::to_string).collect(),
            };
            mailbox::acknowledged(self.ask_mailbox(request, mailbox::REQUEST_TIMEOUT).await?)?;
        }
        Ok(())
    }

    #[tracing::instrument(
        name = "p2p.mailbox.keys",
        skip_all,
        fields(%user, found),
        err(Display, level = "info")
    )]
    async fn certified_keys(&self, user: &Username) -> Result<Option<PeerKeys>, MailboxError> {
        let request = MailboxRequest::Keys {
            username: user.to_string(),
        };
        let der = mailbox::certificate(self.ask_mailbox(request, mailbox::REQUEST_TIMEOUT).await?)?;
        tracing::Span::current().record("found", der.is_some());
        der.map(|der| mailbox::keys_for(&self.ca, user, &der))
            .transpose()
    }
}

impl PrekeyService for Node {
    #[tracing::instrument(
        name = "p2p.prekeys.publish",
        skip_all,
        fields(one_time = upload.one_time.len(), held),
        err(Display, level = "info")
    )]
    async fn publish(&self, upload: &PrekeyUpload) -> Result<u32, PrekeyError> {
        let request = prekeys::publish_request(upload, trace::current());
        let held = prekeys::published(self.ask_prekeys(request).await?)?;
        tracing::Span::current().record("held", held);
        Ok(held)
    }

    #[tracing::instrument(name = "p2p.prekeys.remaining", skip_all, err(Display, level = "info"))]
    async fn remaining(&self) -> Result<Option<u32>, PrekeyError> {
        let request = PrekeysRequest::Remaining {
            meta: trace::current(),
        };
        prekeys::remaining(self.ask_prekeys(request).await?)
    }

    #[tracing::instrument(
        name = "p2p.prekeys.fetch",
        skip_all,
        fields(%user, found, one_time),
        err(Display, level = "info")
    )]
    async fn bundle(
        &self,
        user: &Username,
        device: &[u8; 32],
    ) -> Result<Option<parley_domain::agreement::PrekeyBundle>, PrekeyError> {
        let request = PrekeysRequest::Fetch {
            username: user.to_string(),
            device: crate::prekeys::device_text(device),
            meta: trace::current(),
        };
        let bundle = prekeys::bundle(self.ask_prekeys(request).await?)?;
        let span = tracing::Span::current();
        span.record("found", bundle.is_some());
        if let Some(b) = &bundle {
            span.record("one_time", b.one_time_prekey.is_some());
        }
        Ok(bundle)
    }
}

impl AccountService for Node {
    #[tracing::instrument(
        name = "p2p.account.totp_enable",
        skip_all,
        err(Display, level = "info")
    )]
    async fn totp_enable(&self) -> Result<String, AccountError> {
        let request = AccountRequest::TotpEnable {
            meta: trace::current(),
        };
        match self.ask_account(request).await? {
            AccountResponse::TotpEnabled { secret } => Ok(secret),
            other => Err(account::refused(other)),
        }
    }

    #[tracing::instrument(
        name = "p2p.account.totp_disable",
        skip_all,
        err(Display, level = "info")
    )]
    async fn totp_disable(&self, code: &str) -> Result<(), AccountError> {
        let request = AccountRequest::TotpDisable {
            code: code.to_owned(),
            meta: trace::current(),
        };
        match self.ask_account(request).await? {
            AccountResponse::Done => Ok(()),
            other => Err(account::refused(other)),
        }
    }

    #[tracing::instrument(
        name = "p2p.account.publish_devices",
        skip_all,
        fields(version = list.version, devices = list.devices.len()),
        err(Display, level = "info")
    )]
    async fn publish_devices(&self, list: &DeviceList) -> Result<(), AccountError> {
        let bytes = list.encode().map_err(|e| AccountError::Refused {
            code: "device_list_refused".into(),
            reason: format!("the device list was refused: {e}"),
        })?;
        let request = AccountRequest::PublishDevices {
            list: base64::engine::general_purpose::STANDARD.encode(bytes),
            meta: trace::current(),
        };
        match self.ask_account(request).await? {
            AccountResponse::Done => Ok(()),
            other => Err(account::refused(other)),
        }
    }

    #[tracing::instrument(name = "p2p.account.devices", skip_all, err(Display, level = "info"))]
    async fn devices(&self) -> Result<Option<DeviceList>, AccountError> {
        let request = AccountRequest::Devices {
            meta: trace::current(),
        };
        match self.ask_account(request).await? {
            AccountResponse::Devices { list: None } => Ok(None),
            AccountResponse::Devices { list: Some(list) } => {
                base64::engine::general_purpose::STANDARD
                    .decode(list)
                    .ok()
                    .and_then(|bytes| DeviceList::decode(&bytes).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        AccountError::Unavailable(
                            "the rendezvous sent a device list that is not one".into(),
                        )
                    })
            }
            other => Err(account::refused(other)),
        }
    }
}

impl Node {
    /// Sends `request` to the rendezvous's prekey store and waits at most
    /// [`PREKEY_TIMEOUT`] for its answer, the wait in the command queue included.
    async fn ask_prekeys(&self, request: PrekeysRequest) -> Result<PrekeysResponse, PrekeyError> {
        self.ask(PREKEY_TIMEOUT, |reply| Command::Prekeys { request, reply })
            .await
            .map_err(PrekeyError::Unavailable)
    }

    /// Sends `request` to the rendezvous's account service and waits at most
    /// [`ACCOUNT_TIMEOUT`] for its answer.
    async fn ask_account(&self, request: AccountRequest) -> Result<AccountResponse, AccountError> {
        self.ask(ACCOUNT_TIMEOUT, |reply| Command::Account { request, reply })
            .await
            .map_err(AccountError::Unavailable)
    }

    /// Hands the swarm task the command `make` builds around a reply, and waits at most
    /// `within` for the answer, the wait in the command queue included.
    async fn ask<R>(
        &self,
        within: std::time::Duration,
        make: impl FnOnce(asking::Reply<R>) -> Command,
    ) -> Result<R, String> {
        let asked = async {
            let (reply, rx) = oneshot::channel();
            self.command(make(reply)).await.map_err(|e| e.to_string())?;
            rx.await
                .map_err(|_| "the network task stopped".to_owned())?
        };
        tokio::time::timeout(within, asked).await.map_err(|_| {
            format!(
                "the rendezvous did not answer within {} s",
                within.as_secs()
            )
        })?
    }

    /// Reaches `peer` as `to` (holding it to `pinned` keys), sends the attachment files ahead,
    /// then the envelope over the contact's message stream, and checks the receipt.
    async fn send(
        &self,
        to: &Username,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: &OutgoingEnvelope,
        pinned: Option<&PeerKeys>,
    ) -> Result<PeerKeys, TransportError> {
        let reach = Box::new(Reach {
            to: to.clone(),
            pinned: pinned.copied(),
            peer,
            addrs,
        });
        let (reply, rx) = oneshot::channel();
        self.command(Command::Reach { reach, reply })
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        tokio::time::timeout(REACH_TIMEOUT, rx)
            .await
            .map_err(|_| {
                TransportError::Unreachable(format!(
                    "no connection could be made within {} s",
                    REACH_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|_| TransportError::Unreachable("the network task stopped".into()))??;
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
        let sent = message::digest(&message.bytes);
        let answer = tokio::time::timeout(
            links::ANSWER_TIMEOUT,
            self.links
                .send(&self.streams, peer, message.bytes.clone(), trace::current()),
        )
        .await
        .map_err(|_| TransportError::NoReceipt("timed out waiting for an answer".into()))??;
        // The answer came over the connection, so its certificate is still on record.
        let keys = self.registry.certified(&peer).map(|c| c.keys());
        match (answer, keys) {
            (Answer::Receipt { digest, sig }, Some(keys)) if digest == sent => {
                // The recipient's device signs what it stored; the sender checks it against
                // the certificate the answer came over.
                match sig {
                    Some(sig)
                        if parley_domain::receipt::verifies(
                            &keys.ed25519,
                            &parley_domain::Digest(digest),
                            &sig,
                        ) =>
                    {
                        Ok(keys)
                    }
                    _ => Err(TransportError::NoReceipt(
                        "the receipt is not signed by the recipient's device".into(),
                    )),
                }
            }
            (Answer::Receipt { .. }, Some(_)) => Err(TransportError::NoReceipt(
                "the receipt names another envelope".into(),
            )),
            (Answer::Receipt { .. }, None) => Err(TransportError::NoReceipt(
                "the connection closed with the receipt".into(),
            )),
            (Answer::Refused { reason, permanent }, _) => Err(if permanent {
                TransportError::Rejected(reason)
            } else {
                TransportError::Refused(reason)
            }),
        }
    }

    /// Sends `request` to the rendezvous and waits at most `limit` for its answer, the wait in
    /// the command queue included.
    async fn ask_mailbox(
        &self,
        request: MailboxRequest,
        limit: Duration,
    ) -> Result<MailboxResponse, MailboxError> {
        let asked = async {
            let (reply, rx) = oneshot::channel();
            self.command(Command::Mailbox { request, reply })
                .await
                .map_err(|e| MailboxError::Unavailable(e.to_string()))?;
            rx.await
                .map_err(|_| MailboxError::Unavailable("the network task stopped".into()))?
        };
        tokio::time::timeout(limit, asked).await.map_err(|_| {
            MailboxError::Unavailable(format!(
                "the rendezvous did not answer within {} s",
                limit.as_secs()
            ))
        })?
    }

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
