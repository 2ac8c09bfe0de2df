//! The libp2p security upgrade: mutual TLS 1.3 against the Parley CA.
//!
//! Modelled on libp2p-tls's upgrade, with the CA-verified identity instead of a self-signed
//! one. The upgrade's protocol name is `/parley/mtls/1.0.0`; neither `/tls/1.0.0` nor `/noise`
//! is offered, so a stock libp2p peer fails at negotiation, and a peer without a certificate
//! from this CA fails the handshake.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use futures::{AsyncRead, AsyncWrite, FutureExt, future::BoxFuture};
use futures_rustls::TlsStream;
use libp2p::{
    PeerId,
    core::{
        UpgradeInfo,
        upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade},
    },
};
use parley_domain::Role;
use rustls::CommonState;
use rustls_pki_types::ServerName;

use crate::{
    Credentials, Error, pki,
    refresh::{Refresh, Refreshing},
    registry::{Refusal, Registry},
    tls,
};

/// The protocol name negotiated for the security upgrade.
pub const PROTOCOL: &str = "/parley/mtls/1.0.0";

/// Who may connect to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Only enrolled users (what the rendezvous and peers accept inbound).
    Users,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The TLS handshake failed (wrong CA, expired certificate, no certificate, not TLS 1.3).
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    /// The certificate verified but does not follow the policy.
    #[error(transparent)]
    Policy(#[from] Error),
    /// The certificate names someone else than the dialer meant to reach.
    #[error("the peer is {actual}, not {expected}")]
    WrongIdentity {
        /// Who we meant.
        expected: Role,
        /// Who it is.
        actual: Role,
    },
    /// The certificate names the expected user, with other keys than the pinned ones.
    #[error("the peer is {0} with other keys than the pinned ones")]
    KeysChanged(Role),
    /// An outbound connection to a peer id nobody asked for.
    #[error("no identity was expected for this peer")]
    Unexpected,
    /// An inbound connection from an identity this endpoint does not serve.
    #[error("{0} may not connect here")]
    NotAccepted(Role),
}

/// The upgrade itself: cheap to clone, one per transport.
#[derive(Clone)]
pub struct MutualTls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    registry: Registry,
    accept: Accept,
    refresh: Refresh,
}

impl MutualTls {
    /// Builds both TLS halves from the endpoint's credentials.
    ///
    /// # Errors
    /// [`Error`] when the credentials cannot make a TLS configuration.
    pub fn new(
        credentials: &Credentials,
        registry: Registry,
        accept: Accept,
    ) -> Result<Self, Error> {
        Self::with_identity(
            credentials,
            tls::Identity::new(credentials)?,
            registry,
            accept,
        )
    }

    /// [`MutualTls::new`], presenting whatever `identity` holds at each handshake (a renewed
    /// certificate from the next connection on).
    ///
    /// # Errors
    /// [`Error`] when the credentials cannot make a TLS configuration.
    pub fn with_identity(
        credentials: &Credentials,
        identity: tls::Identity,
        registry: Registry,
        accept: Accept,
    ) -> Result<Self, Error> {
        Ok(Self {
            server: Arc::new(tls::server_config_with(credentials, identity.clone())?),
            client: Arc::new(tls::client_config_with(credentials, identity)?),
            registry,
            accept,
            refresh: Refresh::default(),
        })
    }

    /// This upgrade, its connections refreshing their traffic keys on `refresh`'s timer
    /// (by default every [`crate::refresh::DEFAULT_TLS_REFRESH`], with a counter of its own).
    #[must_use]
    pub fn with_refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = refresh;
        self
    }

    /// Checks the verified peer against policy and expectations, and records it.
    fn admit(&self, state: &CommonState, outbound: bool) -> Result<PeerId, UpgradeError> {
        // rustls only completes a mutual handshake with a verified chain, so a certificate is
        // present here; treat its absence as a handshake failure all the same.
        let [cert, ..] = state.peer_certificates().unwrap_or_default() else {
            return Err(Error::Certificate("no certificate presented".into()).into());
        };
        let certified = pki::inspect(cert)?;
        let peer = pki::peer_id(&certified.ed25519)?;
        match self.registry.expectation(&peer) {
            Some(expected) if expected.role != certified.role => {
                let reason = format!("the peer is {}, not {}", certified.role, expected.role);
                self.registry
                    .record_refusal(peer, Refusal::WrongIdentity(reason));
                return Err(UpgradeError::WrongIdentity {
                    expected: expected.role,
                    actual: certified.role,
                });
            }
            Some(expected) if expected.keys.is_some_and(|k| k != certified.keys()) => {
                self.registry
                    .record_refusal(peer, Refusal::KeysChanged(certified.keys()));
                return Err(UpgradeError::KeysChanged(certified.role));
            }
            Some(_) => {}
            // A second connection to an identity already verified on another one, with the
            // same certificate's role and keys: the AutoNAT dial-back a rendezvous makes to a
            // connected peer, or a hole-punched connection beside a relayed one.
            None if outbound
                && self.registry.certified(&peer).is_some_and(|known| {
                    known.role == certified.role && known.keys() == certified.keys()
                }) => {}
            None if outbound => return Err(UpgradeError::Unexpected),
            None => {}
        }
        if !outbound {
            match (self.accept, &certified.role) {
                (Accept::Users, Role::User(_)) => {}
                // The own rendezvous, as declared: its AutoNAT dial-back comes in.
                (Accept::Users, role)
                    if self
                        .registry
                        .expectation(&peer)
                        .is_some_and(|e| e.role == *role) => {}
                (Accept::Users, role) => return Err(UpgradeError::NotAccepted(role.clone())),
            }
        }
        tracing::debug!(%peer, role = %certified.role, outbound, "peer verified");
        self.registry.certify(peer, certified);
        Ok(peer)
    }
}

impl UpgradeInfo for MutualTls {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL)
    }
}

impl<C> InboundConnectionUpgrade<C> for MutualTls
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Refreshing<C>);
    type Error = UpgradeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let stream = futures_rustls::TlsAcceptor::from(self.server.clone())
                .accept(socket)
                .await
                .map_err(UpgradeError::Handshake)?;
            let peer = self.admit(stream.get_ref().1, false)?;
            Ok((peer, self.refresh.wrap(TlsStream::from(stream))))
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for MutualTls
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Refreshing<C>);
    type Error = UpgradeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // No server name: peers have none. An unspecified IP disables SNI.
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let stream = futures_rustls::TlsConnector::from(self.client.clone())
                .connect(name, socket)
                .await
                .map_err(UpgradeError::Handshake)?;
            let peer = self.admit(stream.get_ref().1, true)?;
            Ok((peer, self.refresh.wrap(TlsStream::from(stream))))
        }
        .boxed()
    }
}
