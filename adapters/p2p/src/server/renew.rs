//! `/parley/renew/1`, server side: a new certificate for the connection's own user and keys.
//!
//! The request names nobody: the user and the keys are those of the connection's verified
//! certificate, whose key the TLS handshake proved. The CA is reached through the
//! [`Renewer`] port, which checks that the key is still bound to the user, issues, records and
//! flushes; it blocks, so it runs on a blocking thread and answers through a bounded channel
//! the swarm task drains, never stalling the swarm. A device (by its Ed25519 key) may renew at
//! most once per [`RENEW_EVERY`], counted from each attempt, refused or not; at most
//! [`MAX_RENEWALS_IN_FLIGHT`] renewals run at once, further ones are refused as busy.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use parley_domain::{CertifiedPeer, PeerKeys, Role, Username};
use tokio::sync::mpsc;

use crate::protocol::{
    MAX_RENEW_REQUEST_BYTES, MAX_RENEW_RESPONSE_BYTES, RENEW_PROTOCOL, RenewRequest, RenewResponse,
    meta_within_bounds,
};

/// A device may renew at most once in this time.
pub const RENEW_EVERY: Duration = Duration::from_secs(60);
/// Renewals being issued at once; more are refused as busy. Also the answer queue's cap.
pub const MAX_RENEWALS_IN_FLIGHT: usize = 8;
/// `/parley/renew/1` streams open at once on one connection.
pub const RENEW_STREAMS_PER_CONNECTION: usize = 2;

/// Why no certificate was issued. Each message is one sentence sent to the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenewError {
    /// Nobody of that name is enrolled here.
    #[error("{0} is not enrolled at this rendezvous")]
    UnknownUser(Username),
    /// The key is bound to nobody, or to another user.
    #[error("this device's key is no longer bound to {0}; enroll again")]
    KeyNotBound(Username),
    /// The CA or the registry failed; nothing was issued.
    #[error("the rendezvous cannot issue a certificate now: {0}")]
    Unavailable(String),
}

/// The CA and the registry, as renewal needs them.
pub trait Renewer: Send + Sync {
    /// Issues a new certificate (PEM) for `user` holding exactly `keys`, after checking that the
    /// Ed25519 key is still bound to `user`; records it as enrollment does and makes it durable
    /// before returning. Blocks.
    ///
    /// # Errors
    /// Implementations MUST return [`RenewError::UnknownUser`] for a name never enrolled,
    /// [`RenewError::KeyNotBound`] when the key is bound to nobody or to someone else, and
    /// [`RenewError::Unavailable`] when nothing could be issued or recorded durably.
    fn renew(&self, user: &Username, keys: &PeerKeys) -> Result<String, RenewError>;
}

pub(super) type Behaviour = request_response::json::Behaviour<RenewRequest, RenewResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_RENEW_REQUEST_BYTES)
            .set_response_size_maximum(MAX_RENEW_RESPONSE_BYTES),
        [(RENEW_PROTOCOL, ProtocolSupport::Inbound)],
        request_response::Config::default()
            .with_max_concurrent_streams(RENEW_STREAMS_PER_CONNECTION),
    )
}

/// An answer ready to be sent.
pub(super) type Answer = (ResponseChannel<RenewResponse>, RenewResponse);

/// The renewal service's state, owned by the swarm task.
pub(super) struct Renewals {
    renewer: Option<Arc<dyn Renewer>>,
    last: HashMap<[u8; 32], Instant>,
    in_flight: usize,
    answers_tx: mpsc::Sender<Answer>,
    answers: mpsc::Receiver<Answer>,
}

impl Renewals {
    pub(super) fn new(renewer: Option<Arc<dyn Renewer>>) -> Self {
        let (answers_tx, answers) = mpsc::channel(MAX_RENEWALS_IN_FLIGHT);
        Self {
            renewer,
            last: HashMap::new(),
            in_flight: 0,
            answers_tx,
            answers,
        }
    }

    /// The next answer a renewal produced. Cancel-safe; pending for ever while none runs.
    pub(super) async fn next_answer(&mut self) -> Answer {
        // `self` holds a sender, so the channel never closes.
        let answer = self.answers.recv().await;
        self.in_flight = self.in_flight.saturating_sub(1);
        match answer {
            Some(answer) => answer,
            None => std::future::pending().await,
        }
    }

    /// Forgets devices whose limit has passed.
    pub(super) fn prune(&mut self) {
        self.last.retain(|_, at| at.elapsed() < RENEW_EVERY);
    }

    /// Takes a request from `certified`; answers at once when it is refused, else starts the
    /// renewal and answers later through [`Renewals::next_answer`].
    pub(super) fn on_request(
        &mut self,
        behaviour: &mut Behaviour,
        certified: Option<CertifiedPeer>,
        request: &RenewRequest,
        channel: ResponseChannel<RenewResponse>,
    ) {
        match self.start(certified, request) {
            Ok((renewer, user, keys)) => {
                self.in_flight += 1;
                let answers = self.answers_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let response = match renewer.renew(&user, &keys) {
                        Ok(certificate_pem) => {
                            tracing::info!(%user, "renewed a device certificate");
                            RenewResponse::Renewed { certificate_pem }
                        }
                        Err(e) => {
                            tracing::info!(%user, reason = %e, "refused a renewal");
                            RenewResponse::Refused {
                                reason: e.to_string(),
                            }
                        }
                    };
                    // At most MAX_RENEWALS_IN_FLIGHT answers wait, the channel's cap.
                    let _ = answers.blocking_send((channel, response));
                });
            }
            Err(response) => {
                let _ = behaviour.send_response(channel, response);
            }
        }
    }

    fn start(
        &mut self,
        certified: Option<CertifiedPeer>,
        request: &RenewRequest,
    ) -> Result<(Arc<dyn Renewer>, Username, PeerKeys), RenewResponse> {
        let refused = |reason: &str| RenewResponse::Refused {
            reason: reason.to_owned(),
        };
        // The upgrade admits only enrolled users; the role check keeps that true here too.
        let Some(CertifiedPeer {
            role: Role::User(user),
            ed25519,
            x25519,
        }) = certified
        else {
            return Err(refused("an enrolled certificate is required"));
        };
        if !meta_within_bounds(&request.meta) {
            return Err(refused("metadata too large"));
        }
        let Some(renewer) = self.renewer.clone() else {
            return Err(refused("this rendezvous does not renew certificates"));
        };
        if let Some(at) = self.last.get(&ed25519) {
            let waited = at.elapsed();
            if waited < RENEW_EVERY {
                let wait = RENEW_EVERY - waited;
                return Err(RenewResponse::RateLimited {
                    // Rounded up, so a device that waits exactly this long gets through.
                    retry_after_ms: u64::try_from(wait.as_millis())
                        .unwrap_or(u64::MAX)
                        .saturating_add(1),
                });
            }
        }
        if self.in_flight >= MAX_RENEWALS_IN_FLIGHT {
            return Err(refused("the rendezvous is busy renewing; retry later"));
        }
        self.last.insert(ed25519, Instant::now());
        Ok((renewer, user, PeerKeys { ed25519, x25519 }))
    }
}
