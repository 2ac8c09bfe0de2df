//! The mailbox client: deposits, fetches, acknowledgements and key look-ups sent to the
//! rendezvous over `/parley/mailbox/1`, and the rendezvous's "mail is waiting" answered.
//!
//! Requests go only to the rendezvous, and only over a connection already open: without one a
//! request fails at once with [`MailboxError::Unavailable`] (the directory client keeps that
//! connection up, and the caller retries later). The only request this peer answers is
//! `Waiting`, and only from its rendezvous; it then wakes whoever waits on
//! [`super::Node::mail_waiting`], as does each acknowledged publication (a (re)connection).

use std::{collections::HashMap, sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use libp2p::{
    PeerId, Swarm,
    request_response::{self, OutboundRequestId, ProtocolSupport},
};
use parley_domain::{MailId, PeerKeys, Role, Username, mailbox::Refusal};
use parley_pki::{CaRoot, ChainPolicy as _};
use parley_usecases::ports::{MailBatch, MailItem, MailboxError};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::sync::{Notify, oneshot};

use super::behaviour::{self, describe};
use crate::{
    pki,
    protocol::{
        HeldItem, MAILBOX_PROTOCOL, MailboxRequest, MailboxResponse, max_mailbox_message_bytes,
    },
    registry::Registry,
};

/// `/parley/mailbox/1` streams open at once on one connection.
pub const MAILBOX_STREAMS_PER_CONNECTION: usize = 8;
/// The largest attachment file a fetched answer may carry (a batch's first entry may be this
/// large): twice the rendezvous's default hold limit, so one configured above it still fits.
const LARGEST_ATTACHMENT: u64 = 64 * 1024 * 1024;
/// The largest request this peer reads: the only one it answers is `Waiting`, a few bytes.
/// Anything longer is cut, fails to parse and is dropped unanswered, so no peer can make this
/// one buffer a mailbox-sized request.
const MAX_INBOUND_REQUEST_BYTES: u64 = 4 * 1024;
/// How long a request that carries files (a deposit, a fetch) may take.
pub(super) const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long any other request (an acknowledgement, a key look-up) may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The mailbox protocol: this peer asks, and answers its rendezvous's `Waiting`.
pub(super) type Behaviour = request_response::json::Behaviour<MailboxRequest, MailboxResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_INBOUND_REQUEST_BYTES)
            .set_response_size_maximum(max_mailbox_message_bytes(LARGEST_ATTACHMENT)),
        [(MAILBOX_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(TRANSFER_TIMEOUT)
            .with_max_concurrent_streams(MAILBOX_STREAMS_PER_CONNECTION),
    )
}

/// Where a mailbox request's answer goes.
pub(super) type MailboxReply = oneshot::Sender<Result<MailboxResponse, MailboxError>>;

/// The client's state: the rendezvous (if configured), the requests in flight, and the
/// wake-up for "mail is waiting".
pub(super) struct Client {
    rendezvous: Option<PeerId>,
    pending: HashMap<OutboundRequestId, MailboxReply>,
    waiting: Arc<Notify>,
}

type PeerSwarm = Swarm<behaviour::Behaviour>;

impl Client {
    pub(super) fn new(rendezvous: Option<PeerId>, waiting: Arc<Notify>) -> Self {
        Self {
            rendezvous,
            pending: HashMap::new(),
            waiting,
        }
    }

    /// Sends `request` to the rendezvous over the open connection, or fails at once.
    pub(super) fn request(
        &mut self,
        swarm: &mut PeerSwarm,
        request: MailboxRequest,
        reply: MailboxReply,
    ) {
        let Some(peer) = self.rendezvous else {
            let _ = reply.send(Err(MailboxError::Unavailable(
                "no rendezvous is configured".into(),
            )));
            return;
        };
        if !swarm.is_connected(&peer) {
            let _ = reply.send(Err(MailboxError::Unavailable(
                "not connected to the rendezvous".into(),
            )));
            return;
        }
        let id = swarm.behaviour_mut().mailbox.send_request(&peer, request);
        self.pending.insert(id, reply);
    }

    /// The rendezvous acknowledged this peer's publication: a (re)connection, so mail held
    /// meanwhile may wait.
    pub(super) fn on_published(&self) {
        self.waiting.notify_one();
    }

    /// Handles an event of the mailbox protocol.
    pub(super) fn on_event(
        &mut self,
        swarm: &mut PeerSwarm,
        registry: &Registry,
        event: request_response::Event<MailboxRequest, MailboxResponse>,
    ) {
        match event {
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(MailboxError::Unavailable(describe(&error))));
                }
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = if self.is_own_rendezvous(registry, &peer)
                    && matches!(request, MailboxRequest::Waiting)
                {
                    tracing::debug!("the rendezvous holds mail for this device");
                    self.waiting.notify_one();
                    MailboxResponse::Noted
                } else {
                    tracing::info!(%peer, "refused a mailbox request: this peer holds no mailbox");
                    MailboxResponse::Refused {
                        code: Refusal::Disabled.code().into(),
                        reason: "a peer holds no mailbox; only its rendezvous may say mail is \
                                 waiting"
                            .into(),
                        permanent: Refusal::Disabled.is_permanent(),
                    }
                };
                // The requester may have gone meanwhile: nothing is owed then.
                let _ = swarm
                    .behaviour_mut()
                    .mailbox
                    .send_response(channel, response);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, error = %error, "a mailbox request was not answered");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// True when `peer` is the configured rendezvous and its verified certificate says so.
    fn is_own_rendezvous(&self, registry: &Registry, peer: &PeerId) -> bool {
        self.rendezvous == Some(*peer)
            && registry
                .certified(peer)
                .is_some_and(|c| c.role == Role::Rendezvous)
    }
}

/// The one sentence for an answer that does not follow the protocol.
fn malformed() -> MailboxError {
    MailboxError::Unavailable("the rendezvous sent a malformed answer".into())
}

/// A refusal as the port names it; any other answer than the one expected is malformed.
fn refused(response: MailboxResponse) -> MailboxError {
    match response {
        MailboxResponse::Refused {
            code,
            reason,
            permanent,
        } => MailboxError::Refused {
            code,
            reason,
            permanent,
        },
        _ => malformed(),
    }
}

/// The answer to a deposit.
pub(super) fn held(response: MailboxResponse) -> Result<(), MailboxError> {
    match response {
        MailboxResponse::Held => Ok(()),
        other => Err(refused(other)),
    }
}

/// The answer to an acknowledgement.
pub(super) fn acknowledged(response: MailboxResponse) -> Result<(), MailboxError> {
    match response {
        MailboxResponse::Acknowledged => Ok(()),
        other => Err(refused(other)),
    }
}

/// The answer to a fetch, decoded: a batch with one entry that does not decode is refused
/// whole (its entries stay held and come again).
pub(super) fn batch(response: MailboxResponse) -> Result<MailBatch, MailboxError> {
    let MailboxResponse::Mail { items, more } = response else {
        return Err(refused(response));
    };
    let items = items
        .into_iter()
        .map(item)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(malformed)?;
    Ok(MailBatch { items, more })
}

fn item(held: HeldItem) -> Option<MailItem> {
    Some(MailItem {
        id: MailId::parse(&held.id).ok()?,
        sealed: STANDARD.decode(held.sealed).ok()?,
        files: held
            .files
            .iter()
            .map(|f| STANDARD.decode(f).ok())
            .collect::<Option<_>>()?,
    })
}

/// The answer to a key look-up: the certificate's DER, if anyone by that name is enrolled.
pub(super) fn certificate(response: MailboxResponse) -> Result<Option<Vec<u8>>, MailboxError> {
    let MailboxResponse::Certificate { der } = response else {
        return Err(refused(response));
    };
    der.map(|d| STANDARD.decode(d).map_err(|_| malformed()))
        .transpose()
}

/// The keys `der` certifies for `user`, when it chains to `ca` (the root the mutual-TLS
/// upgrade trusts), is valid now, and names exactly `user`. A rendezvous that answers with
/// someone else's certificate, one from another CA or an expired one gets an error, never keys.
pub(super) fn keys_for(ca: &CaRoot, user: &Username, der: &[u8]) -> Result<PeerKeys, MailboxError> {
    let refuse = |why: String| {
        MailboxError::Unavailable(format!(
            "the rendezvous answered for {user} with a certificate that does not verify: {why}"
        ))
    };
    ca.check(
        &CertificateDer::from(der),
        &[],
        UnixTime::now(),
        &crate::tls::provider().signature_verification_algorithms,
    )
    .map_err(|e| refuse(e.to_string()))?;
    let certified = pki::inspect(der).map_err(|e| refuse(e.to_string()))?;
    if certified.role != Role::User(user.clone()) {
        return Err(refuse(format!("it names {}", certified.role)));
    }
    Ok(certified.keys())
}

/// Standard base64 of `bytes`, as the protocol carries them.
pub(super) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, PKCS_ED25519, SanType, date_time_ymd,
    };

    use super::*;

    /// A CA, and a certificate for `name` it issued valid from `from` to `until` (years).
    fn issued(name: &str, from: i32, until: i32) -> (CaRoot, Vec<u8>) {
        let ca_key = KeyPair::generate_for(&PKCS_ED25519).expect("CA key");
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_der = ca.self_signed(&ca_key).expect("CA").der().clone();
        let mut leaf = CertificateParams::default();
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let uri = parley_domain::pki::user_uri(&Username::parse(name).expect("name"));
        leaf.subject_alt_names = vec![SanType::URI(uri.try_into().expect("URI"))];
        leaf.not_before = date_time_ymd(from, 1, 1);
        leaf.not_after = date_time_ymd(until, 1, 1);
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("key");
        let der = leaf
            .signed_by(&key, &Issuer::new(ca, ca_key))
            .expect("leaf")
            .der()
            .to_vec();
        (CaRoot::new(&ca_der).expect("root"), der)
    }

    #[test]
    fn a_certificate_valid_now_for_the_name_gives_its_keys() {
        let (ca, der) = issued("carol", 2000, 4000);
        let carol = Username::parse("carol").expect("name");
        let keys = keys_for(&ca, &carol, &der).expect("carol's keys");
        assert_eq!(keys.x25519, None);
    }

    #[test]
    fn an_expired_certificate_gives_no_keys() {
        let (ca, der) = issued("carol", 2000, 2001);
        let carol = Username::parse("carol").expect("name");
        let refused = keys_for(&ca, &carol, &der).expect_err("an expired certificate");
        assert!(refused.to_string().contains("does not verify"), "{refused}");
    }

    #[test]
    fn a_certificate_not_valid_yet_gives_no_keys() {
        let (ca, der) = issued("carol", 3999, 4000);
        let carol = Username::parse("carol").expect("name");
        assert!(keys_for(&ca, &carol, &der).is_err());
    }
}
