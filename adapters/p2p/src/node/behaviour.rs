//! The peer's one composed behaviour: one field per concern, each built in its own file.

use std::time::Duration;

use libp2p::{
    request_response::{self, OutboundFailure},
    swarm::NetworkBehaviour,
};

use super::{directory, messaging};
use crate::guard::{self, Guard};

/// How long to wait for a receipt or a directory answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything the peer's swarm speaks, owned by the swarm task.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub(super) struct Behaviour {
    /// Connection admission (caps per address and per peer).
    pub(super) guard: Guard,
    /// `/parley/message/2`: sending envelopes and answering those that arrive.
    pub(super) messaging: messaging::Behaviour,
    /// `/parley/directory/1`, client side: publishing and look-ups at the rendezvous.
    pub(super) directory: directory::Behaviour,
    /// `/parley/attachment/1` raw streams (see [`crate::attachment`]).
    pub(super) attachments: libp2p_stream::Behaviour,
}

impl Behaviour {
    pub(super) fn new() -> Self {
        Self {
            guard: Guard::new(guard::PEER),
            messaging: messaging::behaviour(),
            directory: directory::behaviour(),
            attachments: libp2p_stream::Behaviour::new(),
        }
    }
}

/// The request-response settings shared by the peer's protocols, with `streams` open at once
/// per connection.
pub(super) fn request_response_config(streams: usize) -> request_response::Config {
    request_response::Config::default()
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_max_concurrent_streams(streams)
}

/// One sentence for a request that got no answer.
pub(super) fn describe(error: &OutboundFailure) -> String {
    match error {
        OutboundFailure::DialFailure => "no connection could be made".into(),
        OutboundFailure::Timeout => "timed out waiting for an answer".into(),
        OutboundFailure::ConnectionClosed => "the connection closed before the answer".into(),
        OutboundFailure::UnsupportedProtocols => {
            "the other side does not speak the protocol".into()
        }
        other => other.to_string(),
    }
}
