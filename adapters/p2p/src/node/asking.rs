//! Requests to the rendezvous whose answers go back to whoever asked: the table of requests in
//! flight that the prekey and account clients share.
//!
//! A request goes only to the rendezvous, and only over a connection already open: without one
//! it fails at once (the directory client keeps that connection up, and the caller tries again
//! later). These protocols are spoken outbound only: no request reaches this peer on them.

use std::collections::HashMap;

use libp2p::{
    PeerId, Swarm,
    request_response::{self, OutboundRequestId},
};
use tokio::sync::oneshot;

use super::behaviour::{self, describe};

/// Where an answer goes: the response, or one sentence saying why there is none.
pub(super) type Reply<R> = oneshot::Sender<Result<R, String>>;

/// The rendezvous (if configured) and the requests in flight to it on one protocol.
pub(super) struct Asking<R> {
    rendezvous: Option<PeerId>,
    pending: HashMap<OutboundRequestId, Reply<R>>,
}

impl<R> Asking<R> {
    pub(super) fn new(rendezvous: Option<PeerId>) -> Self {
        Self {
            rendezvous,
            pending: HashMap::new(),
        }
    }

    /// Sends `request` on the protocol `pick` chooses to the rendezvous over the open
    /// connection, or fails at once.
    pub(super) fn ask<C>(
        &mut self,
        swarm: &mut Swarm<behaviour::Behaviour>,
        pick: fn(&mut behaviour::Behaviour) -> &mut request_response::Behaviour<C>,
        request: C::Request,
        reply: Reply<R>,
    ) where
        C: request_response::Codec<Response = R> + Clone + Send + 'static,
    {
        let Some(peer) = self.rendezvous else {
            let _ = reply.send(Err("no rendezvous is configured".into()));
            return;
        };
        if !swarm.is_connected(&peer) {
            let _ = reply.send(Err("not connected to the rendezvous".into()));
            return;
        }
        let id = pick(swarm.behaviour_mut()).send_request(&peer, request);
        self.pending.insert(id, reply);
    }

    /// Hands a response or an outbound failure to whoever asked.
    pub(super) fn on_event<Q>(&mut self, event: request_response::Event<Q, R>) {
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
                    let _ = reply.send(Err(describe(&error)));
                }
            }
            // Outbound only: no request reaches this peer.
            request_response::Event::Message { .. }
            | request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
    }
}
