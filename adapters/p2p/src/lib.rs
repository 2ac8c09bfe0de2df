//! Parley's peer-to-peer adapter: libp2p over TCP + yamux, secured by **mutual TLS 1.3
//! verified against the Parley CA** (not libp2p's self-signed scheme), and the protocols
//! that run over it: `/parley/message/3` ([`message`]: one stream per contact, CBOR frames)
//! and `/parley/attachment/1` between peers, `/parley/directory/2`, `/parley/mailbox/1`,
//! `/parley/renew/1`, `/parley/prekeys/1` and `/parley/account/1` between a peer and its
//! rendezvous.
//!
//! Layout: [`upgrade`] and [`tls`] secure a connection (the certificate policy itself is
//! `parley-pki`; [`refresh`] renews its TLS traffic keys on a random timer), [`registry`] records what each connection's certificate proved, [`guard`]
//! admits connections; the peer's node (`node/`: one behaviour per concern, one task owning the
//! swarm) and the rendezvous's directory (`server/`) run the [`protocol`]s;
//! [`attachment`] is the file stream; [`prekeys`] is the wire format of `/parley/prekeys/1`,
//! [`account`] that of `/parley/account/1`.
//!
//! **Architecture invariant:** this crate implements the `Transport`, `Directory`, `NodeInfo`,
//! `Mailbox`, `PrekeyService` and `AccountService` ports of `parley-usecases`; it never stores anything and knows nothing of sled
//! or of the CLI.
//! Identity on a connection comes from the verified certificate only (see [`registry`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod account;
pub mod attachment;
mod credentials;
pub mod guard;
pub mod message;
mod node;
pub mod pki;
pub mod prekeys;
pub mod protocol;
pub mod refresh;
pub mod registry;
mod server;
mod swarm;
pub mod tls;
pub mod trace;
pub mod upgrade;

pub use attachment::{AttachmentConfig, StagingName};
pub use credentials::Credentials;
pub use libp2p::{Multiaddr, PeerId};
pub use node::{
    CLOSE_GRACE, COMMAND_QUEUE, DIRECTORY_STREAMS_PER_CONNECTION, HeldCertificate, Inbound,
    MAILBOX_STREAMS_PER_CONNECTION, MAX_INBOUND_QUEUE, MAX_VIOLATIONS_PER_PEER,
    MESSAGE_STREAMS_PER_PEER, Node, NodeConfig, PREKEY_CLIENT_STREAMS_PER_CONNECTION, PeerAddress,
};
pub use server::{
    ACCOUNT_STREAMS_PER_CONNECTION, AccountKeeper, AccountRefusal, AddressLimit, DirectoryServer,
    DirectoryStats, IP_LOOKUP_BURST, IP_LOOKUPS_PER_SECOND, LOOKUP_BURST, LOOKUPS_PER_SECOND,
    MAX_ACCOUNT_JOBS, MAX_PREKEY_JOBS, MAX_RENEWALS_IN_FLIGHT, MailboxOptions,
    PREKEY_STREAMS_PER_CONNECTION, PrekeyOptions, PrekeyStore, PrekeyStoreError, RENEW_EVERY,
    RelayLimits, RenewError, Renewer, SERVER_MAILBOX_STREAMS_PER_CONNECTION, ServerOptions,
    StatsSnapshot, TakenPrekeys,
};
pub use swarm::{
    HANDSHAKE_TIMEOUT, MAX_NEGOTIATING_STREAMS, MAX_STREAMS_PER_CONNECTION, Traffic, with_peer,
};

impl From<parley_pki::Error> for Error {
    fn from(error: parley_pki::Error) -> Self {
        Self::Certificate(error.to_string())
    }
}

/// Errors of this adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key or certificate could not be used.
    #[error("invalid credentials: {0}")]
    Credentials(String),
    /// A certificate does not follow the Parley CA policy.
    #[error("certificate refused: {0}")]
    Certificate(String),
    /// TLS configuration failed.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// libp2p could not listen on the address.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why.
        reason: String,
    },
    /// An address is not a multiaddr Parley can use.
    #[error("{0} is not a usable address")]
    Address(String),
    /// The node's task has stopped.
    #[error("the network task has stopped")]
    Stopped,
}
