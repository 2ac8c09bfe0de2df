//! `/parley/account/1`, server side: a device's requests about its own account (the second
//! factor, the signed device list).
//!
//! The account is the connection's verified certificate's user, and the [`AccountKeeper`]
//! port checks that the certificate's key is still bound to it, as renewal does. The keeper
//! blocks (a registry write and flush), so each request runs on a blocking thread and answers
//! through a bounded channel the swarm task drains. At most [`MAX_ACCOUNT_JOBS`] run at once
//! and one per device; more are refused as busy. Guessing a code is bounded by the keeper
//! (the name's lockout), not here.

use std::{collections::HashSet, sync::Arc};

use base64::Engine as _;
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use parley_domain::{CertifiedPeer, PeerKeys, Role, Username, devices::DeviceList};
use tokio::sync::mpsc;

use crate::{
    account::{
        ACCOUNT_PROTOCOL, AccountRequest, AccountResponse, MAX_ACCOUNT_REQUEST_BYTES,
        MAX_ACCOUNT_RESPONSE_BYTES,
    },
    protocol::meta_within_bounds,
};

/// Account requests being served at once; more are refused as busy.
pub const MAX_ACCOUNT_JOBS: usize = 8;
/// `/parley/account/1` streams open at once on one connection.
pub const ACCOUNT_STREAMS_PER_CONNECTION: usize = 2;

/// Why an account request was refused: a code and one sentence for the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct AccountRefusal {
    /// snake_case; see [`AccountResponse::Refused`].
    pub code: String,
    /// One sentence.
    pub reason: String,
}

impl AccountRefusal {
    /// A refusal with `code` and `reason`.
    #[must_use]
    pub fn new(code: &str, reason: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The registry, as a device's account requests need it.
pub trait AccountKeeper: Send + Sync {
    /// Turns the second factor of `user` on; returns its secret (base32), durable before
    /// this returns. Blocks.
    ///
    /// # Errors
    /// Implementations MUST refuse with `key_not_bound` when `keys` are no longer bound to
    /// `user`, and `totp_on` when the second factor is on already.
    fn totp_enable(&self, user: &Username, keys: &PeerKeys) -> Result<String, AccountRefusal>;

    /// Turns the second factor of `user` off, given a current `code`; durable before this
    /// returns. Blocks.
    ///
    /// # Errors
    /// Implementations MUST refuse with `key_not_bound` as above, `totp_off` when it is off,
    /// `invalid_totp` for a wrong or used code (counted toward the name's lockout), and
    /// `locked_out` while the name is locked.
    fn totp_disable(
        &self,
        user: &Username,
        keys: &PeerKeys,
        code: &str,
    ) -> Result<(), AccountRefusal>;

    /// Keeps `list` as `user`'s device list, published by the device `keys`; durable before
    /// this returns. Blocks.
    ///
    /// # Errors
    /// Implementations MUST refuse with `key_not_bound` as above; `device_list_refused` unless
    /// the list is `user`'s, signed by the publishing device, and acceptable after the list
    /// held by [`parley_domain::devices::DeviceList::accept`]; and `device_not_enrolled` when
    /// it names a key that is not bound to `user`.
    fn publish_devices(
        &self,
        user: &Username,
        keys: &PeerKeys,
        list: &DeviceList,
    ) -> Result<(), AccountRefusal>;

    /// `user`'s device list as held, if one was published. Blocks.
    ///
    /// # Errors
    /// `key_not_bound` as above.
    fn devices(
        &self,
        user: &Username,
        keys: &PeerKeys,
    ) -> Result<Option<DeviceList>, AccountRefusal>;
}

pub(super) type Behaviour = request_response::json::Behaviour<AccountRequest, AccountResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_ACCOUNT_REQUEST_BYTES)
            .set_response_size_maximum(MAX_ACCOUNT_RESPONSE_BYTES),
        [(ACCOUNT_PROTOCOL, ProtocolSupport::Inbound)],
        request_response::Config::default()
            .with_max_concurrent_streams(ACCOUNT_STREAMS_PER_CONNECTION),
    )
}

/// An answer ready to be sent, and the device it was for.
pub(super) struct Answer {
    pub(super) channel: ResponseChannel<AccountResponse>,
    pub(super) response: AccountResponse,
    device: [u8; 32],
}

/// The account service's state, owned by the swarm task.
pub(super) struct Accounts {
    keeper: Option<Arc<dyn AccountKeeper>>,
    busy_devices: HashSet<[u8; 32]>,
    answers_tx: mpsc::Sender<Answer>,
    answers: mpsc::Receiver<Answer>,
}

fn refused(code: &str, reason: &str) -> AccountResponse {
    AccountResponse::Refused {
        code: code.to_owned(),
        reason: reason.to_owned(),
    }
}

impl Accounts {
    pub(super) fn new(keeper: Option<Arc<dyn AccountKeeper>>) -> Self {
        let (answers_tx, answers) = mpsc::channel(MAX_ACCOUNT_JOBS);
        Self {
            keeper,
            busy_devices: HashSet::new(),
            answers_tx,
            answers,
        }
    }

    /// The next answer a job produced. Cancel-safe; pending for ever while none runs.
    pub(super) async fn next_answer(&mut self) -> Answer {
        // `self` holds a sender, so the channel never closes.
        match self.answers.recv().await {
            Some(answer) => {
                self.busy_devices.remove(&answer.device);
                answer
            }
            None => std::future::pending().await,
        }
    }

    /// Takes a request from `certified`: refused at once, or run on a blocking thread and
    /// answered through [`Accounts::next_answer`].
    pub(super) fn on_request(
        &mut self,
        behaviour: &mut Behaviour,
        certified: Option<CertifiedPeer>,
        request: AccountRequest,
        channel: ResponseChannel<AccountResponse>,
    ) {
        // The upgrade admits only enrolled users; the role check keeps that true here too.
        let Some(CertifiedPeer {
            role: Role::User(user),
            ed25519,
            x25519,
        }) = certified
        else {
            let _ = behaviour.send_response(
                channel,
                refused("malformed", "an enrolled certificate is required"),
            );
            return;
        };
        let meta = match &request {
            AccountRequest::TotpEnable { meta }
            | AccountRequest::TotpDisable { meta, .. }
            | AccountRequest::PublishDevices { meta, .. }
            | AccountRequest::Devices { meta } => meta,
        };
        if !meta_within_bounds(meta) {
            let _ = behaviour.send_response(channel, refused("malformed", "metadata too large"));
            return;
        }
        // A list is read here, before any job: bytes that are no list cost no thread.
        let published = match &request {
            AccountRequest::PublishDevices { list, .. } => {
                match base64::engine::general_purpose::STANDARD
                    .decode(list)
                    .ok()
                    .and_then(|bytes| DeviceList::decode(&bytes).ok())
                {
                    Some(list) => Some(list),
                    None => {
                        let _ = behaviour.send_response(
                            channel,
                            refused("malformed", "the device list is not one"),
                        );
                        return;
                    }
                }
            }
            _ => None,
        };
        let Some(keeper) = self.keeper.clone() else {
            let _ = behaviour.send_response(
                channel,
                refused(
                    "accounts_disabled",
                    "this rendezvous keeps no accounts; ask its operator",
                ),
            );
            return;
        };
        if self.busy_devices.len() >= MAX_ACCOUNT_JOBS || self.busy_devices.contains(&ed25519) {
            let _ = behaviour.send_response(
                channel,
                refused(
                    "busy",
                    "the rendezvous is busy with this account; retry in a moment",
                ),
            );
            return;
        }
        self.busy_devices.insert(ed25519);
        let answers = self.answers_tx.clone();
        let keys = PeerKeys { ed25519, x25519 };
        tokio::task::spawn_blocking(move || {
            let outcome = match request {
                AccountRequest::TotpEnable { .. } => keeper
                    .totp_enable(&user, &keys)
                    .map(|secret| AccountResponse::TotpEnabled { secret }),
                AccountRequest::TotpDisable { code, .. } => keeper
                    .totp_disable(&user, &keys, &code)
                    .map(|()| AccountResponse::Done),
                AccountRequest::PublishDevices { .. } => match &published {
                    Some(list) => keeper
                        .publish_devices(&user, &keys, list)
                        .map(|()| AccountResponse::Done),
                    None => Err(AccountRefusal::new("malformed", "no device list")),
                },
                AccountRequest::Devices { .. } => keeper.devices(&user, &keys).and_then(|list| {
                    let list = list
                        .map(|l| l.encode())
                        .transpose()
                        .map_err(|_| {
                            AccountRefusal::new(
                                "unavailable",
                                "the rendezvous holds a device list it cannot send",
                            )
                        })?
                        .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
                    Ok(AccountResponse::Devices { list })
                }),
            };
            let response = outcome.unwrap_or_else(|e| {
                tracing::info!(%user, refusal = %e.code, "refused an account request");
                AccountResponse::Refused {
                    code: e.code,
                    reason: e.reason,
                }
            });
            // At most MAX_ACCOUNT_JOBS answers wait, the channel's cap.
            let _ = answers.blocking_send(Answer {
                channel,
                response,
                device: ed25519,
            });
        });
    }
}
