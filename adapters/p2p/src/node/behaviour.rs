//! The peer's one composed behaviour: one field per concern, each built in its own file.

use std::time::Duration;

use libp2p::{
    request_response::{self, OutboundFailure},
    swarm::NetworkBehaviour,
};

use super::{account, directory, mailbox, prekeys};
use crate::guard::{self, Guard};

/// How long to wait for a directory, mailbox or renewal answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything the peer's swarm speaks, owned by the swarm task.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub(super) struct Behaviour {
    /// Connection admission (caps per address and per peer).
    pub(super) guard: Guard,
    /// `/parley/directory/2`, client side: publishing and look-ups at the rendezvous.
    pub(super) directory: directory::Behaviour,
    /// `/parley/mailbox/1`: deposits, fetches and key look-ups at the rendezvous, and its
    /// "mail is waiting" ([`super::mailbox`]).
    pub(super) mailbox: mailbox::Behaviour,
    /// `/parley/renew/1`, client side: renewing the own certificate ([`super::renew`]).
    pub(super) renew: super::renew::Behaviour,
    /// `/parley/prekeys/1`, client side: this device's prekeys at the rendezvous, and others'
    /// bundles ([`super::prekeys`]).
    pub(super) prekeys: prekeys::Behaviour,
    /// `/parley/account/1`, client side: this user's account at the rendezvous
    /// ([`super::account`]).
    pub(super) account: account::Behaviour,
    /// Raw streams: `/parley/message/3` ([`super::links`], [`super::receiving`]) and
    /// `/parley/attachment/1` ([`crate::attachment`]).
    pub(super) streams: libp2p_stream::Behaviour,
    /// Circuit relay v2, client side: the reservation on the rendezvous ([`super::relay`]).
    pub(super) relay: libp2p::relay::client::Behaviour,
    /// Hole punching over a relayed connection ([`super::nat`]).
    pub(super) dcutr: libp2p::dcutr::Behaviour,
    /// What the other side sees of us: our address as observed behind a NAT.
    pub(super) identify: libp2p::identify::Behaviour,
    /// AutoNAT v2, client side: whether an observed address can be dialled from outside.
    pub(super) autonat: libp2p::autonat::v2::client::Behaviour,
    /// Liveness of every connection: a punched connection whose NAT mapping vanished is noticed
    /// and closed ([`super::nat`]).
    pub(super) ping: libp2p::ping::Behaviour,
}

impl Behaviour {
    pub(super) fn new(
        me: &libp2p::identity::PublicKey,
        relay: libp2p::relay::client::Behaviour,
    ) -> Self {
        Self {
            guard: Guard::new(guard::PEER),
            directory: directory::behaviour(),
            mailbox: mailbox::behaviour(),
            renew: super::renew::behaviour(),
            prekeys: prekeys::behaviour(),
            account: account::behaviour(),
            streams: libp2p_stream::Behaviour::new(),
            relay,
            dcutr: libp2p::dcutr::Behaviour::new(me.to_peer_id()),
            identify: identify(me),
            autonat: libp2p::autonat::v2::client::Behaviour::default(),
            ping: ping(),
        }
    }
}

/// The identify protocol as every Parley endpoint runs it.
pub(crate) fn identify(me: &libp2p::identity::PublicKey) -> libp2p::identify::Behaviour {
    libp2p::identify::Behaviour::new(
        libp2p::identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), me.clone())
            .with_agent_version(format!("parley/{}", env!("CARGO_PKG_VERSION")))
            // No cache of the addresses peers claim for themselves: a device dials only what
            // the directory vouched for, or a hole punch's candidates.
            .with_cache_size(0),
    )
}

/// Pings every connection this often; one that does not answer within [`PING_TIMEOUT`] is
/// closed.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(10);
/// How long a ping may take.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The protocol version identify announces.
const IDENTIFY_PROTOCOL: &str = "/parley/1";

/// The ping protocol as every Parley endpoint runs it.
pub(crate) fn ping() -> libp2p::ping::Behaviour {
    libp2p::ping::Behaviour::new(
        libp2p::ping::Config::new()
            .with_interval(PING_EVERY)
            .with_timeout(PING_TIMEOUT),
    )
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
