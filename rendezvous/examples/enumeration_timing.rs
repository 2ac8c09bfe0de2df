//! Does the enrollment API's response time tell whether a username exists?
//!
//! ```sh
//! cargo run --release -p parley-rendezvous --example enumeration_timing [-- ROUNDS]
//! ```
//!
//! Starts a rendezvous in this process (rate limit lifted, data in a temporary folder), enrolls
//! `existing`, and then sends pairs of requests, interleaved, that differ only in the name: one
//! names `existing`, the other a name never enrolled. Each request is a fresh TLS connection, as
//! an attacker's would be. For each pair it prints the median and 90th percentile of both and
//! the difference of the medians.
//!
//! Pairs whose refusal does not depend on the name (a bad CSR, a password over the cap, a
//! device key bound to another user) are decided before the user record is read, so their
//! times should not differ beyond noise. The last pair is the inherent one: a wrong password
//! for an existing name (401 after one Argon2id) against the first enrollment of a new name
//! (200 after one Argon2id, a certificate and a flushed write). Its status codes already tell
//! the names apart; the timing adds nothing to that.
//!
//! Not a test: timings on a shared machine are noisy, so nothing is asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use parley_enroll::verifier::PinnedCa;
use parley_rendezvous::{Config, Protection, limit};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Client {
    addr: std::net::SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    /// One `POST /v1/enroll` on a fresh connection: the status and the time to the full answer.
    async fn enroll(&self, body: &serde_json::Value) -> Result<(u16, Duration)> {
        let body = body.to_string();
        let started = Instant::now();
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?;
        let mut stream = self.tls.connect(name, tcp).await?;
        let request = format!(
            "POST /v1/enroll HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let elapsed = started.elapsed();
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status in the answer")?;
        Ok((status, elapsed))
    }
}

fn csr(key: &rcgen::KeyPair) -> Result<String> {
    let mut params = rcgen::CertificateParams::default();
    params
        .custom_extensions
        .push(parley_rendezvous::ca::x25519_extension(&[9; 32]));
    Ok(params.serialize_request(key)?.pem()?)
}

fn device() -> Result<rcgen::KeyPair> {
    Ok(parley_rendezvous::ca::key_pair(
        &parley_rendezvous::ca::random_secret(),
    )?)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Sends `rounds` interleaved pairs, checks each status, prints one line.
async fn pair(
    client: &Client,
    what: &str,
    rounds: usize,
    mut existing: impl FnMut(usize) -> Result<serde_json::Value>,
    mut never: impl FnMut(usize) -> Result<serde_json::Value>,
    expected: (u16, u16),
) -> Result<()> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let (first, second) = (existing(i)?, never(i)?);
        // Alternate which goes first, so drift hits both alike.
        let order = if i % 2 == 0 {
            [(&first, 0), (&second, 1)]
        } else {
            [(&second, 1), (&first, 0)]
        };
        for (body, side) in order {
            let (status, took) = client.enroll(body).await?;
            let want = if side == 0 { expected.0 } else { expected.1 };
            anyhow::ensure!(status == want, "{what}: expected {want}, got {status}");
            let times = if side == 0 { &mut a } else { &mut b };
            times.push(took);
        }
    }
    a.sort();
    b.sort();
    let (ma, mb) = (quantile(&a, 0.5), quantile(&b, 0.5));
    println!(
        "{what:<58} {rounds:>4}  {:>9.0} {:>9.0}  {:>9.0} {:>9.0}  {:>+9.0} ({:+.1} %)",
        micros(ma),
        micros(quantile(&a, 0.9)),
        micros(mb),
        micros(quantile(&b, 0.9)),
        micros(ma) - micros(mb),
        (micros(ma) - micros(mb)) / micros(mb) * 100.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("ROUNDS is a number")?,
        None => 300,
    };
    let data = tempfile::tempdir()?;
    let protection = Protection {
        enroll: limit::Rate {
            burst: u32::MAX,
            per_minute: u32::MAX,
        },
        ..Protection::default()
    };
    let running = parley_rendezvous::start_with(
        Config {
            data: data.path().to_owned(),
            https: "127.0.0.1:0".parse()?,
            p2p: "/ip4/127.0.0.1/tcp/0".parse()?,
            announce: Vec::new(),
            ca_key: None,
            certificate_days: parley_domain::pki::MAX_CERT_VALIDITY_DAYS,
            metrics: parley_rendezvous::MetricsAt::default(),
        },
        protection,
    )
    .await?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedCa::new(Some(running.fingerprint()), provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let client = Client {
        addr: running.https(),
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
    };

    let existing_key = device()?;
    let held_key = device()?;
    for (name, key) in [("existing", &existing_key), ("holder", &held_key)] {
        let body = json!({"username": name, "password": "right-password", "csr_pem": csr(key)?});
        let (status, _) = client.enroll(&body).await?;
        anyhow::ensure!(status == 200, "enrolling {name} gave {status}");
    }
    let held_csr = csr(&held_key)?;
    let long_password = "p".repeat(1025);
    let never = |i: usize| format!("never-{i}");
    // Warm-up: first connections, first hashes.
    for i in 0..20 {
        let body = json!({"username": never(i), "password": "x", "csr_pem": "garbage"});
        client.enroll(&body).await?;
    }

    println!(
        "medians and 90th percentiles in µs, each request a fresh TLS 1.3 connection on loopback"
    );
    println!(
        "{:<58} {:>4}  {:>9} {:>9}  {:>9} {:>9}  {:>9}",
        "refusal (existing name vs never-enrolled name)",
        "n",
        "exist p50",
        "p90",
        "never p50",
        "p90",
        "Δ p50"
    );
    pair(
        &client,
        "invalid_csr: a CSR that does not parse",
        rounds,
        |_| Ok(json!({"username": "existing", "password": "x", "csr_pem": "garbage"})),
        |i| Ok(json!({"username": never(i), "password": "x", "csr_pem": "garbage"})),
        (400, 400),
    )
    .await?;
    pair(
        &client,
        "invalid_password: 1025 bytes, refused before hashing",
        rounds,
        |_| Ok(json!({"username": "existing", "password": long_password, "csr_pem": held_csr})),
        |i| Ok(json!({"username": never(i), "password": long_password, "csr_pem": held_csr})),
        (400, 400),
    )
    .await?;
    pair(
        &client,
        "key_in_use: a device key bound to another user",
        rounds,
        |_| Ok(json!({"username": "existing", "password": "x", "csr_pem": held_csr})),
        |i| Ok(json!({"username": never(i), "password": "x", "csr_pem": held_csr})),
        (409, 409),
    )
    .await?;
    let argon_rounds = (rounds / 8).max(10);
    pair(
        &client,
        "wrong password (401) vs first enrollment (200), Argon2id",
        argon_rounds,
        |_| Ok(json!({"username": "existing", "password": "wrong", "csr_pem": csr(&existing_key)?})),
        |i| {
            Ok(
                json!({"username": format!("new-{i}"), "password": "pw", "csr_pem": csr(&device()?)?}),
            )
        },
        (401, 200),
    )
    .await?;
    running.shutdown().await;
    Ok(())
}
