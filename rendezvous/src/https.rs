//! The HTTPS listener: TLS 1.3 only (rustls with aws-lc-rs), HTTP/1.1 (hyper), with bounded
//! per-connection resources.
//!
//! Bounds: at most [`Limits::max_connections`] connections at once (a semaphore: the accept
//! loop waits for a free slot), a TLS handshake deadline, hyper's header read timeout, the
//! API's body timeout, and a cap on a connection's lifetime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::api::Api;

/// Resource bounds of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: u32,
    /// Deadline for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline for a request's headers.
    pub header_timeout: Duration,
    /// Longest life of one connection.
    pub connection_lifetime: Duration,
    /// How long shutdown waits for connections in flight.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// A rustls server configuration: TLS 1.3 only, aws-lc-rs, no client authentication.
///
/// # Errors
/// [`rustls::Error`] when the key does not match the certificate or is unsupported.
pub fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `api` on `listener` until `shutdown` turns true, then waits (at most
/// [`Limits::drain_timeout`]) for connections in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    api: Arc<Api>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    loop {
        let permit = tokio::select! {
            () = stopped(&mut shutdown) => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let api = Arc::clone(&api);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(acceptor, tcp, peer, api, limits, stop).await;
            drop(permit);
        });
    }
    let all = limits.max_connections;
    if tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("some HTTPS connections were still open at shutdown");
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    api: Arc<Api>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let service = service_fn(move |request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, std::convert::Infallible>(api.handle(request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(tls), service);
    let mut connection = std::pin::pin!(connection);
    let lifetime = tokio::time::sleep(limits.connection_lifetime);
    tokio::pin!(lifetime);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
                }
                return;
            }
            () = stopped(&mut shutdown), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = &mut lifetime, if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
