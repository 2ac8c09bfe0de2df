//! The HTTPS listener: TLS 1.3 only (rustls with aws-lc-rs), HTTP/1.1 (hyper), with bounded
//! per-connection resources.
//!
//! Bounds: at most [`Limits::max_connections`] connections at once, at most
//! [`Limits::connections_per_source`] of them from one source (an IPv4 address or an IPv6 /64;
//! a connection over that share is closed at once, before the TLS handshake, so one source
//! cannot hold every slot with slow requests), a TLS handshake deadline, hyper's header read
//! timeout (from when a request head is awaited, so it also ends an idle keep-alive connection
//! and one that trickles its headers), a 64 KiB read buffer, the API's body timeout, at most
//! [`MAX_REQUESTS_PER_CONNECTION`] requests on one connection, and a cap on a connection's
//! lifetime (then [`Limits::drain_timeout`] for the answer in flight). Trusted proxies are not held to the per-source share: every client behind them
//! shares their address.
//!
//! Accepting never waits: a connection is accepted, checked against its source's share, and
//! then takes a free slot or is closed at once. An eighth of the slots
//! ([`reserved_slots`]) is kept for sources with no other connection open, so that a few
//! sources holding their full shares of keep-alive connections cannot keep a newcomer out.
//!
//! Every connection ends the same way, whoever ended it: the answers written, the write side
//! closed, and what the client still sends read and thrown away for a bounded time
//! ([`linger`]), so that a refusal reaches a client that writes its whole request before it
//! reads (a body over the cap, a head over it) instead of being lost to a TCP reset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;

use crate::api::{Api, MAX_HEAD_BYTES, Surface};
use crate::limit::{Slots, Source};

/// hyper's read buffer: twice the head cap, so that any head up to 128 KiB is read whole and
/// refused by the API with its JSON 431 (and counted), whatever sizes the TLS records arrive
/// in. With a buffer of exactly the cap, whether a head just over it was complete when the
/// buffer filled depended on the records' boundaries. hyper answers a bare 431 for a head still
/// incomplete at 128 KiB; bodies stream through the buffer.
const READ_BUFFER: usize = 2 * MAX_HEAD_BYTES;

/// At most this many bytes a client sends after its connection's last answer are read (and
/// thrown away) so that the answer reaches it ([`linger`]): a request body 500 times the cap.
pub const LINGER_BYTES: u64 = 32 * 1024 * 1024;
/// For at most this long.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// Lingering ends when the client sends nothing for this long.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);

/// Resource bounds of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: u32,
    /// Connections served at once from one source (trusted proxies excepted).
    pub connections_per_source: u32,
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
            connections_per_source: 16,
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

/// Serves `surface` of `api` on `listener` — over TLS with `tls`, or plain HTTP without (the
/// metrics' own listener) — until `shutdown` turns true, then waits (at most
/// [`Limits::drain_timeout`]) for connections in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    surface: Surface,
    api: Arc<Api>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let reserved = reserved_slots(limits.max_connections);
    let general = Arc::new(Semaphore::new((limits.max_connections - reserved) as usize));
    let reserve = Arc::new(Semaphore::new(reserved as usize));
    let shares = Slots::new(limits.connections_per_source);
    loop {
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
        let share = if api.clients().is_trusted_proxy(peer.ip()) {
            None
        } else if let Some(share) = shares.take(Source::of(peer.ip())) {
            Some(share)
        } else {
            api.metrics().https_refusal("too_many_connections");
            tracing::debug!(%peer, "connection refused: its source has its share of connections");
            drop(tcp);
            continue;
        };
        let newcomer = share.as_ref().is_some_and(crate::limit::Slot::is_first);
        let permit = match Arc::clone(&general).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if newcomer => match Arc::clone(&reserve).try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    api.metrics().https_refusal("server_full");
                    tracing::info!(%peer, "connection refused: every slot is taken");
                    continue;
                }
            },
            Err(_) => {
                api.metrics().https_refusal("server_full");
                tracing::info!(%peer, "connection refused: every general slot is taken");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let api = Arc::clone(&api);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(acceptor, surface, tcp, peer, api, limits, stop).await;
            drop((share, permit));
        });
    }
    let drained = async {
        let _all = (
            general
                .acquire_many(limits.max_connections - reserved)
                .await,
            reserve.acquire_many(reserved).await,
        );
    };
    if tokio::time::timeout(limits.drain_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!("some HTTPS connections were still open at shutdown");
    }
}

/// The slots kept for sources with no other connection open: an eighth, at least one when
/// there are two slots or more.
#[must_use]
pub fn reserved_slots(max_connections: u32) -> u32 {
    if max_connections < 2 {
        0
    } else {
        (max_connections / 8).max(1)
    }
}

/// Requests served on one connection at most; the last one's answer says `Connection: close`.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 100;

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn serve_connection(
    acceptor: Option<TlsAcceptor>,
    surface: Surface,
    tcp: TcpStream,
    peer: SocketAddr,
    api: Arc<Api>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let Some(acceptor) = acceptor else {
        let tcp = serve_http(tcp, surface, peer, api, limits, shutdown).await;
        linger(tcp, |tcp| tcp).await;
        return;
    };
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
    let tls = serve_http(tls, surface, peer, api, limits, shutdown).await;
    linger(tls, |tls| tls.into_inner().0).await;
}

/// Serves HTTP/1.1 requests on `io` until the connection is done, and hands `io` back
/// unclosed.
async fn serve_http<IO>(
    io: IO,
    surface: Surface,
    peer: SocketAddr,
    api: Arc<Api>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> IO
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let served = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let service = service_fn(move |request| {
        let api = Arc::clone(&api);
        let served = Arc::clone(&served);
        // Boxed so that the connection is `Unpin`, which taking its socket back needs.
        Box::pin(async move {
            let mut response = api.handle(surface, peer, request).await;
            let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n >= MAX_REQUESTS_PER_CONNECTION {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, std::convert::Infallible>(response)
        })
    });
    let mut connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(READ_BUFFER)
        .serve_connection(TokioIo::new(io), service);
    serve_requests(&mut connection, peer, limits, shutdown).await;
    connection.into_parts().io.into_inner()
}

/// Serves the requests of one connection until hyper is done with it (the client closed, an
/// answer said `Connection: close`, a request could not be read, or the connection was asked
/// to close), without closing the socket: [`linger`] does that.
async fn serve_requests<IO, S>(
    connection: &mut hyper::server::conn::http1::Connection<TokioIo<IO>, S>,
    peer: SocketAddr,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Unpin,
    S::Future: Unpin,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let lifetime = tokio::time::sleep(limits.connection_lifetime);
    tokio::pin!(lifetime);
    let mut closing = false;
    loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
                }
                return;
            }
            () = stopped(&mut shutdown), if !closing => {
                closing = true;
                std::pin::Pin::new(&mut *connection).graceful_shutdown();
                lifetime.as_mut().reset(Instant::now() + limits.drain_timeout);
            }
            () = &mut lifetime => {
                if closing {
                    // Asked to close a while ago and still not done: a client that reads
                    // nothing keeps an answer from being written. Give up on it.
                    tracing::debug!(%peer, "HTTPS connection still busy when it should be closed");
                    return;
                }
                closing = true;
                std::pin::Pin::new(&mut *connection).graceful_shutdown();
                lifetime.as_mut().reset(Instant::now() + limits.drain_timeout);
            }
        }
    }
}

/// Closes a connection so that what was written to it reaches the client whatever it is
/// still sending.
///
/// Closing a socket whose received bytes were not all read makes the kernel answer with a
/// reset, and a reset makes the client's kernel drop what it received but had not read yet:
/// a client that writes its whole request before it reads (a body over the cap, a head over
/// it) would lose the refusal. So the write side is closed first (TLS `close_notify`, then
/// the TCP FIN: the client reads the whole answer and then an end), and what the client still
/// sends is read and thrown away, undecrypted, until it closes too, stays silent for
/// [`LINGER_IDLE`], has sent [`LINGER_BYTES`], or [`LINGER_TIME`] has passed.
async fn linger<S>(mut stream: S, into_tcp: impl FnOnce(S) -> TcpStream)
where
    S: AsyncWrite + Unpin,
{
    let deadline = Instant::now() + LINGER_TIME;
    // A client that reads nothing can keep the end from being written; the deadline ends it.
    if timeout_at(deadline, stream.shutdown()).await.is_err() {
        return;
    }
    let mut tcp = into_tcp(stream);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut discarded: u64 = 0;
    while discarded < LINGER_BYTES {
        let idle = deadline.min(Instant::now() + LINGER_IDLE);
        match timeout_at(idle, tcp.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return,
            Ok(Ok(n)) => discarded += n as u64,
        }
    }
}
