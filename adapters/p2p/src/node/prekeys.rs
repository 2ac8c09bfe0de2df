//! The prekey client: publications, counts and bundle fetches sent to the rendezvous over
//! `/parley/prekeys/1`.
//!
//! Requests go only to the rendezvous, and only over a connection already open: without one a
//! request fails at once with [`PrekeyError::Unavailable`] (the directory client keeps that
//! connection up, and the caller tries again later). This peer answers no prekey request: it
//! speaks the protocol outbound only.

use std::{collections::HashMap, time::Duration};

use libp2p::{
    PeerId, Swarm,
    request_response::{self, OutboundRequestId, ProtocolSupport},
};
use parley_domain::agreement::PrekeyBundle;
use parley_usecases::ports::{PrekeyError, PrekeyUpload};
use tokio::sync::oneshot;

use super::behaviour::{self, describe};
use crate::{
    prekeys::{
        MAX_PREKEYS_REQUEST_BYTES, MAX_PREKEYS_RESPONSE_BYTES, PREKEYS_PROTOCOL, PrekeysRequest,
        PrekeysResponse, WireOneTimeKey, WireSignedKey,
    },
    protocol::Meta,
};

/// `/parley/prekeys/1` streams open at once on one connection.
pub const PREKEY_CLIENT_STREAMS_PER_CONNECTION: usize = 4;
/// How long a prekey request may take, the wait in the command queue included.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The prekey protocol, outbound only.
pub(super) type Behaviour = request_response::json::Behaviour<PrekeysRequest, PrekeysResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_PREKEYS_REQUEST_BYTES)
            .set_response_size_maximum(MAX_PREKEYS_RESPONSE_BYTES),
        [(PREKEYS_PROTOCOL, ProtocolSupport::Outbound)],
        behaviour::request_response_config(PREKEY_CLIENT_STREAMS_PER_CONNECTION),
    )
}

/// Where a prekey request's answer goes.
pub(super) type PrekeyReply = oneshot::Sender<Result<PrekeysResponse, PrekeyError>>;

/// The client's state: the rendezvous (if configured) and the requests in flight.
pub(super) struct Client {
    rendezvous: Option<PeerId>,
    pending: HashMap<OutboundRequestId, PrekeyReply>,
}

type PeerSwarm = Swarm<behaviour::Behaviour>;

impl Client {
    pub(super) fn new(rendezvous: Option<PeerId>) -> Self {
        Self {
            rendezvous,
            pending: HashMap::new(),
        }
    }

    /// Sends `request` to the rendezvous over the open connection, or fails at once.
    pub(super) fn request(
        &mut self,
        swarm: &mut PeerSwarm,
        request: PrekeysRequest,
        reply: PrekeyReply,
    ) {
        let Some(peer) = self.rendezvous else {
            let _ = reply.send(Err(PrekeyError::Unavailable(
                "no rendezvous is configured".into(),
            )));
            return;
        };
        if !swarm.is_connected(&peer) {
            let _ = reply.send(Err(PrekeyError::Unavailable(
                "not connected to the rendezvous".into(),
            )));
            return;
        }
        let id = swarm.behaviour_mut().prekeys.send_request(&peer, request);
        self.pending.insert(id, reply);
    }

    /// Handles an event of the prekey protocol.
    pub(super) fn on_event(
        &mut self,
        event: request_response::Event<PrekeysRequest, PrekeysResponse>,
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
                    let _ = reply.send(Err(PrekeyError::Unavailable(describe(&error))));
                }
            }
            // Outbound only: no request reaches this peer.
            request_response::Event::Message { .. }
            | request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// The request that publishes `upload`.
pub(super) fn publish_request(upload: &PrekeyUpload, meta: Meta) -> PrekeysRequest {
    PrekeysRequest::Publish {
        signed_prekey: WireSignedKey::from_signed(&upload.signed_prekey),
        kem_prekey: WireSignedKey::from_kem(&upload.kem_prekey),
        one_time: upload
            .one_time
            .iter()
            .map(WireOneTimeKey::from_prekey)
            .collect(),
        meta,
    }
}

/// The one sentence for an answer that does not follow the protocol.
fn malformed() -> PrekeyError {
    PrekeyError::Unavailable("the rendezvous sent a malformed answer".into())
}

/// A refusal as the port names it; any other answer than the one expected is malformed.
fn refused(response: PrekeysResponse) -> PrekeyError {
    match response {
        PrekeysResponse::Refused { code, reason } => PrekeyError::Refused { code, reason },
        _ => malformed(),
    }
}

/// The answer to a publication: the one-time prekeys held now.
pub(super) fn published(response: PrekeysResponse) -> Result<u32, PrekeyError> {
    match response {
        PrekeysResponse::Published { one_time } => Ok(one_time),
        other => Err(refused(other)),
    }
}

/// The answer to a count.
pub(super) fn remaining(response: PrekeysResponse) -> Result<Option<u32>, PrekeyError> {
    match response {
        PrekeysResponse::Remaining { one_time } => Ok(one_time),
        other => Err(refused(other)),
    }
}

/// The answer to a fetch, decoded (not trusted: the caller checks the signatures).
pub(super) fn bundle(response: PrekeysResponse) -> Result<Option<PrekeyBundle>, PrekeyError> {
    match response {
        PrekeysResponse::Bundle { bundle } => bundle
            .map(|b| b.to_bundle().ok_or_else(malformed))
            .transpose(),
        other => Err(refused(other)),
    }
}
