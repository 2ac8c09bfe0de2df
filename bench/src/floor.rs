//! The baselines: the same durable work as Parley's receipt done with the thinnest tools
//! (raw tokio-rustls mutual TLS, one sled insert + `flush()` per message), stock rust-libp2p
//! (noise + yamux) doing the same store step, the disk's own `fdatasync` rate, raw TLS
//! streaming, and the envelope's cryptographic primitives alone.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A CA, a server and a client certificate (Ed25519), and the two TLS 1.3 configurations:
/// the server requires and verifies the client's certificate, the client the server's.
struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl Tls {
    fn new() -> Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ED25519};
        let ca_key = KeyPair::generate_for(&PKCS_ED25519)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |name: &str| -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
            let key = KeyPair::generate_for(&PKCS_ED25519)?;
            let cert = CertificateParams::new(vec![name.to_owned()])?.signed_by(&key, &issuer)?;
            Ok((
                cert.der().clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            ))
        };
        let (server_cert, server_key) = leaf("localhost")?;
        let (client_cert, client_key) = leaf("client")?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone())?;
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert], server_key)?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![client_cert], client_key)?;
        // A new Parley device has no session to resume: every baseline connect is a full
        // handshake too.
        client.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    async fn connect(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(self
            .connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?)
    }
}

/// A mutual-TLS server on loopback storing each framed message (u32 BE length + bytes) into a
/// sled tree with `flush()` before it answers one byte. Returns its address.
async fn durable_server(
    tls: &Tls,
    dir: &Path,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let db = sled::Config::new().path(dir).open()?;
    let tree = db.open_tree("messages")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tls.acceptor.clone();
    let task = tokio::spawn(async move {
        let mut seq = 0u64;
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let Ok(mut stream) = acceptor.accept(tcp).await else {
                continue;
            };
            let (tree, db) = (tree.clone(), db.clone());
            let mut buf = Vec::new();
            while let Ok(len) = stream.read_u32().await {
                buf.resize(len as usize, 0);
                if stream.read_exact(&mut buf).await.is_err() {
                    break;
                }
                seq += 1;
                let (t, d, key, value) = (tree.clone(), db.clone(), seq.to_be_bytes(), buf.clone());
                let stored = tokio::task::spawn_blocking(move || {
                    t.insert(key, value)?;
                    d.flush()
                })
                .await;
                if !matches!(stored, Ok(Ok(_))) || stream.write_all(&[1]).await.is_err() {
                    break;
                }
            }
        }
    });
    Ok((addr, task))
}

async fn echo_once<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    stream: &mut S,
    message: &[u8],
) -> Result<()> {
    stream.write_u32(u32::try_from(message.len())?).await?;
    stream.write_all(message).await?;
    stream.flush().await?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await?;
    Ok(())
}

/// Round-trip times of `n` `size`-byte messages over one mutual-TLS connection to a server that
/// stores each with one sled insert + `flush()` before answering.
pub async fn durable_echo(dir: &Path, n: usize, size: usize) -> Result<Vec<Duration>> {
    let tls = Tls::new()?;
    let (addr, server) = durable_server(&tls, dir).await?;
    let mut stream = tls.connect(addr).await?;
    let message = vec![0x5a; size];
    echo_once(&mut stream, &message).await?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        echo_once(&mut stream, &message).await?;
        times.push(start.elapsed());
    }
    server.abort();
    Ok(times)
}

/// `n` times: TCP connect + mutual-TLS handshake + one durable echo of 256 bytes.
pub async fn tls_connect(dir: &Path, n: usize) -> Result<Vec<Duration>> {
    let tls = Tls::new()?;
    let (addr, server) = durable_server(&tls, dir).await?;
    let message = vec![0x5a; 256];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut stream = tls.connect(addr).await?;
        echo_once(&mut stream, &message).await?;
        times.push(start.elapsed());
    }
    server.abort();
    Ok(times)
}

/// Raw mutual-TLS loopback throughput: `bytes` streamed one way in 64 KiB writes, the
/// receiver acknowledging the end. Bytes per second.
pub async fn tls_bulk(bytes: u64) -> Result<f64> {
    let tls = Tls::new()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tls.acceptor.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut stream = acceptor.accept(tcp).await?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(anyhow!("the stream ended early"));
            }
            left -= n as u64;
        }
        stream.write_all(&[1]).await?;
        stream.flush().await?;
        Ok::<_, anyhow::Error>(())
    });
    let mut stream = tls.connect(addr).await?;
    let block = vec![0xa5u8; 64 * 1024];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        stream.write_all(&block[..n]).await?;
        left -= n as u64;
    }
    stream.flush().await?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await?;
    let rate = bytes as f64 / start.elapsed().as_secs_f64();
    server.await??;
    Ok(rate)
}

/// `fdatasync` calls per second on the disk under `dir`: append 1 KiB, `sync_data()`, repeat,
/// for about `duration`.
pub async fn fdatasync_rate(dir: &Path, duration: Duration) -> Result<f64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fdatasync.bin");
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut file = std::fs::File::create(&path)?;
        let block = [0x33u8; 1024];
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < duration || calls < 10 {
            file.write_all(&block)?;
            file.sync_data()?;
            calls += 1;
        }
        Ok::<_, anyhow::Error>(calls as f64 / start.elapsed().as_secs_f64())
    })
    .await?
}

/// Stock rust-libp2p: noise + yamux over loopback TCP, request-response with the JSON codec,
/// the responder storing each request with one sled insert + `flush()` before it answers;
/// `n` sequential requests of `size` bytes on an open connection.
pub async fn stock_libp2p_echo(dir: &Path, n: usize, size: usize) -> Result<Vec<Duration>> {
    use futures::StreamExt;
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;
    use libp2p::{StreamProtocol, SwarmBuilder};

    type Behaviour = request_response::json::Behaviour<Vec<u8>, u8>;
    const PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/echo/1");
    let build = || -> Result<libp2p::Swarm<Behaviour>> {
        Ok(SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )?
            .with_behaviour(|_| {
                Behaviour::new(
                    [(PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default(),
                )
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build())
    };
    let db = sled::Config::new().path(dir).open()?;
    let tree = db.open_tree("messages")?;
    let mut server = build()?;
    server.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let server_id = *server.local_peer_id();
    let responder = tokio::spawn(async move {
        let mut seq = 0u64;
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = server.select_next_some().await
            {
                seq += 1;
                let stored = tree
                    .insert(seq.to_be_bytes(), request)
                    .and_then(|_| db.flush());
                if stored.is_ok() {
                    let _ = server.behaviour_mut().send_response(channel, 1);
                }
            }
        }
    });
    let mut client = build()?;
    client.dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_id)))?;
    let payload = vec![0x5au8; size];
    let mut times = Vec::with_capacity(n);
    for round in 0..=n {
        let start = Instant::now();
        client
            .behaviour_mut()
            .send_request(&server_id, payload.clone());
        loop {
            match client.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { .. },
                    ..
                }) => break,
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    error, ..
                }) => {
                    responder.abort();
                    return Err(anyhow!("stock libp2p request failed: {error}"));
                }
                _ => {}
            }
        }
        if round > 0 {
            times.push(start.elapsed()); // round 0 opened the connection
        }
    }
    responder.abort();
    Ok(times)
}

/// The primitives of one ratchet message measured alone, averaged over `n`: (seal side, open
/// side). Each side steps the chain (HMAC-SHA256 twice), derives the message key and nonce
/// (HKDF-SHA256), runs AES-256-GCM over the body and hashes the envelope (SHA-256); the sender
/// signs it (Ed25519), the recipient verifies the signature (`verify_strict`).
pub fn crypto_primitives(n: usize, size: usize) -> Result<(Duration, Duration)> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};
    use ed25519_dalek::{Signer, SigningKey};
    use hkdf::hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    let signing = SigningKey::from_bytes(&[1u8; 32]);
    let verifying = signing.verifying_key();
    let plain = vec![0x61u8; size];
    let framing = 300;
    let chain_step = |chain: &[u8; 32]| -> Result<([u8; 32], [u8; 32])> {
        let step = |byte: u8| -> Result<[u8; 32]> {
            let mut mac = <Hmac<Sha256> as hkdf::hmac::KeyInit>::new_from_slice(chain)
                .map_err(|_| anyhow!("hmac"))?;
            mac.update(&[byte]);
            Ok(mac.finalize().into_bytes().into())
        };
        Ok((step(1)?, step(2)?))
    };
    let message_key = |message: &[u8; 32]| -> Result<([u8; 32], [u8; 12])> {
        let mut out = [0u8; 44];
        hkdf::Hkdf::<Sha256>::new(None, message)
            .expand(b"parley/ratchet/v1/message", &mut out)
            .map_err(|_| anyhow!("hkdf"))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&out[..32]);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&out[32..]);
        Ok((key, nonce))
    };
    let mut sealed = Vec::with_capacity(n);
    let mut chain = [7u8; 32];
    let start = Instant::now();
    for _ in 0..n {
        let (message, next) = chain_step(&chain)?;
        chain = next;
        let (key, nonce) = message_key(&message)?;
        let ct = Aes256Gcm::new(&key.into())
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: b"header",
                },
            )
            .map_err(|_| anyhow!("aes-gcm"))?;
        let mut envelope = ct;
        envelope.resize(envelope.len() + framing, 0);
        let signature = signing.sign(&envelope);
        std::hint::black_box(Sha256::digest(&envelope));
        sealed.push((envelope, signature));
    }
    let seal = start.elapsed() / u32::try_from(n)?;
    let mut chain = [7u8; 32];
    let start = Instant::now();
    for (envelope, signature) in &sealed {
        verifying
            .verify_strict(envelope, signature)
            .context("signature")?;
        let (message, next) = chain_step(&chain)?;
        chain = next;
        let (key, nonce) = message_key(&message)?;
        let ct = &envelope[..envelope.len() - framing];
        std::hint::black_box(
            Aes256Gcm::new(&key.into())
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: ct,
                        aad: b"header",
                    },
                )
                .map_err(|_| anyhow!("aes-gcm"))?,
        );
        std::hint::black_box(Sha256::digest(envelope));
    }
    let open = start.elapsed() / u32::try_from(n)?;
    Ok((seal, open))
}

/// The nearest-rank percentile `p` (0..=1) of a sample.
pub fn percentile(sample: &[Duration], p: f64) -> Duration {
    if sample.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = sample.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sample: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sample, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&sample, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_baseline_measures_something() {
        let dir = tempfile::tempdir().expect("tmp");
        let echo = durable_echo(&dir.path().join("echo"), 5, 256)
            .await
            .expect("echo");
        assert_eq!(echo.len(), 5);
        assert!(echo.iter().all(|d| *d > Duration::ZERO));
        assert_eq!(
            tls_connect(&dir.path().join("connect"), 2)
                .await
                .expect("connect")
                .len(),
            2
        );
        assert!(tls_bulk(1 << 20).await.expect("bulk") > 0.0);
        assert!(
            fdatasync_rate(&dir.path().join("sync"), Duration::from_millis(50))
                .await
                .expect("sync")
                > 0.0
        );
        assert_eq!(
            stock_libp2p_echo(&dir.path().join("stock"), 3, 256)
                .await
                .expect("stock")
                .len(),
            3
        );
        let (seal, open) = crypto_primitives(10, 256).expect("crypto");
        assert!(seal > Duration::ZERO && open > Duration::ZERO);
    }
}
