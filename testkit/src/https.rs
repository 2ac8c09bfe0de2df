//! Raw HTTP/1.1 over TLS 1.3, for tests that send a server what a well-behaved client would
//! not (cut bodies, lying lengths, slow writers) and read the answer byte for byte.

use std::{io, net::IpAddr, net::SocketAddr, sync::Arc, time::Duration};

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// A client of one HTTPS server, with the certificate verifier the test chose.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    /// A TLS 1.3-only client of `addr` (`<ip>:<port>`), checking the server with `verifier`.
    ///
    /// # Panics
    /// When `addr` is not an address or the provider has no TLS 1.3.
    pub fn new(
        addr: &str,
        verifier: Arc<dyn ServerCertVerifier>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Self {
            addr: addr.parse().expect("the https line is an address"),
            config: Arc::new(config),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A TCP connection to the server from the loopback address `source` (Linux answers all
    /// of 127/8), or from the default address.
    ///
    /// # Panics
    /// When `source` cannot be bound or the connection is not made within 10 s.
    pub async fn tcp_from(&self, source: Option<IpAddr>) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("a socket");
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .unwrap_or_else(|e| panic!("cannot bind {ip}: {e}"));
        }
        tokio::time::timeout(Duration::from_secs(10), socket.connect(self.addr))
            .await
            .expect("TCP connect within 10 s")
            .expect("connect")
    }

    /// A TLS connection from the default address.
    pub async fn tls(&self) -> TlsStream<TcpStream> {
        self.tls_from(None).await
    }

    /// [`Client::tls`] from `source`.
    ///
    /// # Panics
    /// When the handshake fails.
    pub async fn tls_from(&self, source: Option<IpAddr>) -> TlsStream<TcpStream> {
        self.try_tls_from(source).await.expect("TLS handshake")
    }

    /// [`Client::tls_from`], or the handshake's error (the server may close at once).
    pub async fn try_tls_from(&self, source: Option<IpAddr>) -> io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp_from(source).await;
        let name = rustls_pki_types::ServerName::from(self.addr.ip());
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(self.config.clone()).connect(name, tcp),
        )
        .await
        .unwrap_or_else(|_| Err(io::Error::other("no TLS handshake within 10 s")))
    }

    /// Writes `head` (request line and headers, without the final blank line; `Host` and
    /// `Connection: close` are added) and `body`, then reads the answer until the server
    /// closes.
    pub async fn raw(&self, head: &str, body: &[u8]) -> Answer {
        self.raw_from(None, head, body).await
    }

    /// [`Client::raw`] from the loopback address `source`.
    pub async fn raw_from(&self, source: Option<IpAddr>, head: &str, body: &[u8]) -> Answer {
        let mut stream = self.tls_from(source).await;
        let request = format!("{head}\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        let _ = stream.write_all(request.as_bytes()).await;
        let _ = stream.write_all(body).await;
        let _ = stream.flush().await;
        read_answer(&mut stream).await
    }

    /// A request with a body of `content_type`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Answer {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}",
            body.len()
        );
        self.raw(&head, body).await
    }

    /// `POST <path>` with this JSON.
    pub async fn post_json(&self, path: &str, json: &serde_json::Value) -> Answer {
        self.request(
            "POST",
            path,
            "application/json",
            json.to_string().as_bytes(),
        )
        .await
    }
}

/// An HTTP answer, raw.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The status line and the headers, as sent.
    pub headers: String,
    /// Everything after the blank line.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "JSON body expected, got {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// Asserts a JSON error with `status` and `code` and a sentence (`{"error", "code"}`).
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        let json = self.json();
        assert_eq!(json["code"], code, "{json}");
        assert!(
            json["error"].as_str().is_some_and(|e| e.len() > 10),
            "{json}"
        );
        assert!(
            self.headers
                .to_ascii_lowercase()
                .contains("content-type: application/json")
        );
    }
}

/// Reads until the server closes (at most 20 s) and parses the HTTP answer.
///
/// # Panics
/// When the server does not close within 20 s, or what it sent is no HTTP answer.
pub async fn read_answer(stream: &mut TlsStream<TcpStream>) -> Answer {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 20 s");
    parse_answer(&bytes)
}

/// Parses an HTTP answer.
///
/// # Panics
/// When `bytes` have no head and blank line, or no status line.
pub fn parse_answer(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    Answer {
        status,
        headers: head.to_owned(),
        body: body.as_bytes().to_vec(),
    }
}
