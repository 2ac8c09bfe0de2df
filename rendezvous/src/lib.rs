//! The Parley rendezvous: a small certificate authority with an HTTPS enrollment API, and the
//! libp2p directory where enrolled peers find each other.
//!
//! **Architecture invariant:** the rendezvous never sees a private key of a peer and never
//! copies anything a CSR asks for into a certificate: issued certificates follow the CA's
//! policy ([`ca::Ca::issue`]) only.
//!
//! Layout: [`ca`] (keys and certificates), [`csr`] (what is taken from a request),
//! [`registry`] (sled records), [`invite`] (the invite line and its QR code), [`mailbox`] (held mail, its own sled), [`prekeys`] (devices' public prekeys, their own sled), [`service`] (the enrollment decision), [`totp`] (the second factor's sealed secrets), [`account`] (`/parley/account/1` on the service), [`api`] (HTTP routes and
//! JSON at the edge), [`https`] (TLS listener and resource bounds), [`limit`] (per-source rate
//! and connection limits), and [`start`], which wires them with the directory from
//! `parley-p2p`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod account;
pub mod api;
pub mod ca;
pub mod csr;
pub mod files;
pub mod hashing;
pub mod https;
pub mod identity;
pub mod invite;
pub mod limit;
pub mod lockout;
pub mod mailbox;
pub mod metrics;
pub mod prekeys;
pub mod registry;
pub mod renewal;
pub mod service;
pub mod totp;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use parley_domain::CaFingerprint;
pub use parley_domain::MailboxLimits;
pub use parley_p2p::RelayLimits;
use parley_p2p::{Credentials, DirectoryServer, MailboxOptions, PrekeyOptions, ServerOptions};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use tokio::sync::watch;

/// How the rendezvous is started (the command line, parsed).
#[derive(Debug, Clone)]
pub struct Config {
    /// Data folder: CA key and certificate, rendezvous key, registry.
    pub data: PathBuf,
    /// Address of the HTTPS API.
    pub https: SocketAddr,
    /// libp2p listen address of the directory.
    pub p2p: Multiaddr,
    /// Addresses handed to peers instead of the listen addresses, when given.
    pub announce: Vec<Multiaddr>,
    /// A CA key file shared by several instances, instead of `<data>/ca-key.pem`.
    pub ca_key: Option<PathBuf>,
    /// How many days device certificates last (1 to 30).
    pub certificate_days: u32,
    /// Where `GET /metrics` is served.
    pub metrics: MetricsAt,
}

/// Where `GET /metrics` is served (`--metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsAt {
    /// On the HTTPS API's listener, beside enrollment: what the rendezvous did before the
    /// choice existed.
    #[default]
    Https,
    /// On a listener of its own at this address, plain HTTP, serving `GET /metrics` only
    /// (for a scraper on loopback or an internal network); the API no longer answers it.
    Listen(SocketAddr),
    /// Nowhere.
    Off,
}

/// How the HTTPS API protects itself from hostile or greedy clients. [`Default`] is what the
/// binary runs with unless told otherwise (see `docs/operations.md`).
#[derive(Debug, Clone)]
pub struct Protection {
    /// Enrollment requests per client: a burst, then so many per minute.
    pub enroll: limit::Rate,
    /// Client sources the enrollment limiter tracks at most.
    pub tracked_sources: usize,
    /// Proxies whose `X-Forwarded-For` names the client; from anyone else it is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// Connections, timeouts and the connection share per source.
    pub https: https::Limits,
    /// How long a request body may take to arrive, in all.
    pub body_timeout: Duration,
    /// What the circuit relay allows.
    pub relay: RelayLimits,
    /// What the mailbox holds, and for how long (a hold of 0 turns it off).
    pub mailbox: MailboxLimits,
}

impl Default for Protection {
    fn default() -> Self {
        Self {
            enroll: limit::Rate {
                burst: 10,
                per_minute: 6,
            },
            tracked_sources: 16_384,
            trusted_proxies: Vec::new(),
            https: https::Limits::default(),
            body_timeout: Duration::from_secs(10),
            relay: RelayLimits::default(),
            mailbox: MailboxLimits::default(),
        }
    }
}

/// Why the rendezvous could not start. Each message is one sentence for a person.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data folder or a key or certificate in it could not be used.
    #[error("{0}")]
    Ca(#[from] ca::Error),
    /// The data folder could not be created.
    #[error("{0}")]
    Data(#[from] files::Error),
    /// The data folder, or something in it, could not be made private.
    #[error("{0}")]
    Private(#[from] parley_process::Error),
    /// The registry could not be opened.
    #[error(
        "cannot open the registry in {dir}: {reason}; is another parley-rendezvous using this --data folder?"
    )]
    Registry {
        /// The registry folder.
        dir: String,
        /// sled's reason.
        reason: String,
    },
    /// The mailbox's store could not be opened.
    #[error(
        "cannot open the mailbox in {dir}: {reason}; is another parley-rendezvous using this --data folder?"
    )]
    Mailbox {
        /// The mailbox folder.
        dir: String,
        /// Why.
        reason: String,
    },
    /// The prekey store could not be opened.
    #[error(
        "cannot open the prekey store in {dir}: {reason}; is another parley-rendezvous using this --data folder?"
    )]
    Prekeys {
        /// The prekey folder.
        dir: String,
        /// Why.
        reason: String,
    },
    /// The HTTPS address could not be bound.
    #[error("cannot listen on {addr}: {reason}; choose another --https address")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why, in words.
        reason: String,
    },
    /// The metrics' own address could not be bound.
    #[error("cannot listen on {addr}: {reason}; choose another --metrics address")]
    MetricsListen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why, in words.
        reason: String,
    },
    /// TLS could not be configured with the rendezvous certificate.
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The libp2p directory could not start.
    #[error("cannot start the directory on {addr}: {reason}; choose another --p2p address")]
    Directory {
        /// The address asked for.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
}

/// A running rendezvous.
pub struct Running {
    fingerprint: CaFingerprint,
    https: SocketAddr,
    p2p_addrs: Vec<Multiaddr>,
    metrics: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    https_task: tokio::task::JoinHandle<()>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    directory: DirectoryServer,
    registry: registry::Registry,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("fingerprint", &self.fingerprint)
            .field("https", &self.https)
            .field("p2p_addrs", &self.p2p_addrs)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The CA fingerprint peers pin.
    #[must_use]
    pub fn fingerprint(&self) -> CaFingerprint {
        self.fingerprint
    }

    /// The address the HTTPS API listens on (the real port when 0 was asked).
    #[must_use]
    pub fn https(&self) -> SocketAddr {
        self.https
    }

    /// The address of the metrics' own listener, when `--metrics` gave one (the real port
    /// when 0 was asked).
    #[must_use]
    pub fn metrics(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// The directory addresses handed to peers, each ending with `/p2p/<peer id>`.
    #[must_use]
    pub fn p2p_addrs(&self) -> &[Multiaddr] {
        &self.p2p_addrs
    }

    /// Stops accepting, lets requests in flight finish (bounded), stops the directory and
    /// flushes the registry.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.https_task.await {
            tracing::warn!(error = %e, "the HTTPS task ended abnormally");
        }
        if let Some(task) = self.metrics_task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "the metrics task ended abnormally");
        }
        self.directory.shutdown().await;
        if let Err(e) = self.registry.flush().await {
            tracing::error!(error = %e, "flushing the registry at shutdown failed");
        }
    }
}

/// Starts the CA, the registry, the HTTPS API and the directory with the default
/// [`Protection`]; resolves once all listen.
///
/// # Errors
/// [`StartError`], one sentence naming what failed and what to do.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, Protection::default()).await
}

/// [`start`] with the given protection of the HTTPS API.
///
/// # Errors
/// [`StartError`], one sentence naming what failed and what to do.
pub async fn start_with(config: Config, protection: Protection) -> Result<Running, StartError> {
    // The folder may have been made before (by `mkdir -p`, an older release): whatever it
    // holds becomes the rendezvous's user's only.
    parley_process::private_tree(&config.data)?;
    let now = OffsetDateTime::now_utc();
    let ca = Arc::new(
        ca::Ca::open(&config.data, config.ca_key.as_deref(), now)?
            .with_certificate_days(config.certificate_days)?,
    );
    let secret = identity::load_or_create(&config.data)?;
    let leaf = ca.issue(
        &ca::Subject::Rendezvous,
        &identity::public_key(&secret),
        now,
    )?;

    let registry_dir = config.data.join(registry::DB_DIR);
    let registry = registry::Registry::open(&registry_dir).map_err(|e| StartError::Registry {
        dir: registry_dir.display().to_string(),
        reason: e.to_string(),
    })?;

    let listener = tokio::net::TcpListener::bind(config.https)
        .await
        .map_err(|e| listen_error(config.https, &e))?;
    let https = listener
        .local_addr()
        .map_err(|e| listen_error(config.https, &e))?;
    let metrics_listener = match config.metrics {
        MetricsAt::Listen(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| metrics_listen_error(addr, &e))?;
            let bound = listener
                .local_addr()
                .map_err(|e| metrics_listen_error(addr, &e))?;
            Some((listener, bound))
        }
        MetricsAt::Https | MetricsAt::Off => None,
    };

    let directory_error = |reason: String| StartError::Directory {
        addr: config.p2p.clone(),
        reason,
    };
    let credentials = Credentials::new(&secret, leaf.der.clone(), ca.certificate_der().to_vec())
        .map_err(|e| directory_error(e.to_string()))?;
    let peer_id = credentials.peer_id();
    let mailbox = if protection.mailbox.enabled() {
        let dir = config.data.join(mailbox::DB_DIR);
        // Held mail is sealed, but who gets mail, how much and when is the operator's only.
        files::private_dir(&dir)?;
        let store = mailbox::SledMailbox::open(&dir).map_err(|e| StartError::Mailbox {
            dir: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        Some(MailboxOptions {
            limits: protection.mailbox,
            store: Arc::new(store),
            book: Arc::new(registry.clone()),
        })
    } else {
        None
    };
    let prekeys_dir = config.data.join(prekeys::DB_DIR);
    files::private_dir(&prekeys_dir)?;
    let prekey_store =
        prekeys::SledPrekeys::open(&prekeys_dir).map_err(|e| StartError::Prekeys {
            dir: prekeys_dir.display().to_string(),
            reason: e.to_string(),
        })?;
    // One service for enrollments and the directory's account requests: one lockout per name.
    let service = service::Service::new(Arc::clone(&ca), registry.clone(), Vec::new());
    let options = ServerOptions {
        relay: protection.relay,
        prekeys: Some(PrekeyOptions {
            store: Arc::new(prekey_store),
        }),
        announce: config.announce.clone(),
        mailbox,
        renewer: Some(Arc::new(renewal::CaRenewer::new(
            Arc::clone(&ca),
            registry.clone(),
        ))),
        accounts: Some(Arc::new(service.clone())),
        ..ServerOptions::default()
    };
    let directory = DirectoryServer::start_with(credentials, config.p2p.clone(), options)
        .await
        .map_err(|e| directory_error(e.to_string()))?;
    let p2p_addrs = if config.announce.is_empty() {
        directory.addresses()
    } else {
        config
            .announce
            .iter()
            .map(|a| parley_p2p::with_peer(a, peer_id))
            .collect()
    };

    let chain = vec![
        CertificateDer::from(leaf.der),
        CertificateDer::from(ca.certificate_der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(parley_domain::pki::ed25519_pkcs8(
        &secret,
    )));
    let tls = Arc::new(https::tls_config(chain, key)?);
    let service = service.with_p2p_addrs(p2p_addrs.iter().map(ToString::to_string).collect());
    let metrics = Arc::new(metrics::Metrics::new(directory.stats()));
    let guard = api::Guard {
        body_timeout: protection.body_timeout,
        clients: limit::Clients::new(protection.trusted_proxies),
        enrollments: limit::Buckets::new(protection.enroll, protection.tracked_sources),
        metrics_route: config.metrics == MetricsAt::Https,
    };
    let api = Arc::new(api::Api::new(service, metrics, guard));
    let (stop, stopped) = watch::channel(false);
    let metrics_addr = metrics_listener.as_ref().map(|(_, bound)| *bound);
    let metrics_task = metrics_listener.map(|(listener, bound)| {
        tracing::info!(metrics = %bound, "metrics listening");
        tokio::spawn(https::serve(
            listener,
            None,
            api::Surface::Metrics,
            Arc::clone(&api),
            protection.https,
            stopped.clone(),
        ))
    });
    let https_task = tokio::spawn(https::serve(
        listener,
        Some(tls),
        api::Surface::Api,
        api,
        protection.https,
        stopped,
    ));
    tracing::info!(%https, fingerprint = %ca.fingerprint(), "rendezvous listening");
    Ok(Running {
        fingerprint: ca.fingerprint(),
        https,
        p2p_addrs,
        metrics: metrics_addr,
        stop,
        https_task,
        metrics_task,
        directory,
        registry,
    })
}

fn metrics_listen_error(addr: SocketAddr, e: &std::io::Error) -> StartError {
    StartError::MetricsListen {
        addr,
        reason: bind_reason(e),
    }
}

fn listen_error(addr: SocketAddr, e: &std::io::Error) -> StartError {
    StartError::Listen {
        addr,
        reason: bind_reason(e),
    }
}

/// Why an address could not be bound, in words.
fn bind_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => "address in use".to_owned(),
        ErrorKind::AddrNotAvailable => "no such address on this machine".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}
