//! Test harness: the real `parley-rendezvous` binary on free ports, and a raw HTTPS client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use parley_domain::{CaFingerprint, Secret32, Username};
use parley_enroll::verifier::PinnedCa;
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running server, killed when dropped (even when the test panics).
pub struct Server {
    child: Child,
    pub fingerprint: CaFingerprint,
    pub https: String,
    pub addr: String,
    pub p2p: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary on `data` with free ports and `extra` arguments.
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley-rendezvous"))
            .arg("--data")
            .arg(data)
            .args(["--https", "127.0.0.1:0", "--p2p", "/ip4/127.0.0.1/tcp/0"])
            .args(extra)
            .env("RUST_LOG", "warn,rustls=error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the rendezvous binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            fingerprint: CaFingerprint::from_digest([0; 32]),
            https: String::new(),
            addr: String::new(),
            p2p: String::new(),
        };
        let next = |prefix: &str| -> String {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| {
                    panic!("the rendezvous did not print its `{prefix}` line within 30 s")
                });
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected `{prefix}…`, got {line:?}"))
                .to_owned()
        };
        let fingerprint = next("ca-fingerprint: ");
        server.fingerprint = CaFingerprint::parse(&fingerprint).expect("a valid fingerprint line");
        assert_eq!(fingerprint.len(), "sha256:".len() + 64);
        assert_eq!(fingerprint, fingerprint.to_lowercase());
        server.https = next("https: ");
        server.addr = server
            .https
            .strip_prefix("https://")
            .expect("https URL")
            .to_owned();
        server.p2p = next("p2p: ");
        assert!(
            server.p2p.contains("/p2p/12D3KooW"),
            "p2p line {}",
            server.p2p
        );
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory (`VmRSS` in `/proc/<pid>/status`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status is readable (is it still running?)");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS line in {status}"))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the rendezvous did not stop within 10 s of SIGTERM");
    }
}

/// An HTTP answer, raw.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
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

    /// Asserts a JSON error with `status` and `code` and a sentence.
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

/// TLS 1.3 to the server, pinned to its CA (the enrollment client's own verifier).
pub async fn tls(server: &Server) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_from(server, None).await
}

/// A TCP connection to the server from the loopback address `source` (Linux answers all of
/// 127/8), or from the default address.
pub async fn tcp_from(server: &Server, source: Option<IpAddr>) -> tokio::net::TcpStream {
    let to: std::net::SocketAddr = server.addr.parse().expect("the https line is an address");
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    if let Some(ip) = source {
        socket
            .bind(std::net::SocketAddr::new(ip, 0))
            .unwrap_or_else(|e| panic!("cannot bind {ip}: {e}"));
    }
    tokio::time::timeout(Duration::from_secs(10), socket.connect(to))
        .await
        .expect("TCP connect within 10 s")
        .expect("connect")
}

/// [`tls`] from `source`.
pub async fn tls_from(
    server: &Server,
    source: Option<IpAddr>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    try_tls_from(server, source).await.expect("TLS handshake")
}

/// [`tls_from`], or the handshake's error (the server may close at once).
pub async fn try_tls_from(
    server: &Server,
    source: Option<IpAddr>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedCa::new(Some(server.fingerprint), provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let tcp = tcp_from(server, source).await;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("IP name");
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .unwrap_or_else(|_| Err(std::io::Error::other("no TLS handshake within 10 s")))
}

/// Writes `head` (request line and headers, without the final blank line) and `body`, then
/// reads the answer until the server closes.
pub async fn raw(server: &Server, head: &str, body: &[u8]) -> Answer {
    raw_from(server, None, head, body).await
}

/// [`raw`] from the loopback address `source`.
pub async fn raw_from(server: &Server, source: Option<IpAddr>, head: &str, body: &[u8]) -> Answer {
    let mut stream = tls_from(server, source).await;
    let request = format!(
        "{head}\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.flush().await;
    read_answer(&mut stream).await
}

/// Reads until the server closes (at most 20 s) and parses the HTTP answer.
pub async fn read_answer(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> Answer {
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

/// A request with a body.
pub async fn request(
    server: &Server,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Answer {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}",
        body.len()
    );
    raw(server, &head, body).await
}

/// `POST /v1/enroll` with this JSON.
pub async fn enroll_json(server: &Server, json: &serde_json::Value) -> Answer {
    request(
        server,
        "POST",
        "/v1/enroll",
        "application/json",
        json.to_string().as_bytes(),
    )
    .await
}

/// A device: Ed25519 key pair and X25519 public key.
pub struct Device {
    pub key: KeyPair,
    pub x25519: [u8; 32],
}

impl Device {
    pub fn new() -> Self {
        let secret = parley_rendezvous::ca::random_secret();
        let x25519 = *parley_rendezvous::ca::random_secret().expose();
        Self {
            key: parley_rendezvous::ca::key_pair(&secret).expect("Ed25519 key"),
            x25519,
        }
    }

    /// A CSR with the X25519 extension and whatever `shape` adds.
    pub fn csr_with(&self, shape: impl FnOnce(&mut CertificateParams)) -> String {
        let mut params = CertificateParams::default();
        params
            .custom_extensions
            .push(parley_rendezvous::ca::x25519_extension(&self.x25519));
        shape(&mut params);
        params
            .serialize_request(&self.key)
            .expect("CSR")
            .pem()
            .expect("PEM")
    }

    pub fn csr(&self) -> String {
        self.csr_with(|_| {})
    }
}

pub fn x25519_ext(key: &[u8; 32]) -> CustomExtension {
    parley_rendezvous::ca::x25519_extension(key)
}

pub fn name(raw: &str) -> Username {
    Username::parse(raw).expect("valid test name")
}

pub fn secret_public(secret: &Secret32) -> [u8; 32] {
    parley_rendezvous::identity::public_key(secret)
}

/// Whether the external program `tool` (Debian package `package`) is installed. When it is not:
/// with `CI` set the test fails; otherwise a visible line on stderr says the check was skipped.
pub fn tool_available(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed (CI is set, so this fails); apt-get install {package}"
        );
        // Straight to the process's stderr, past the test harness's capture, so it shows.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {tool} not installed; apt-get install {package}"
        );
    }
    found
}
