//! An HTTP refusal reaches the client whatever the client's send pattern: a client that
//! writes its whole request before it reads a byte (as curl does below 1 MiB, and as a plain
//! `http.client` or a script does) gets the 413 for a body over the cap, and the 431 for a head
//! over the documented 64 KiB, instead of a connection reset that throws the answer away. The
//! client here is a blocking TCP socket under rustls: it writes everything, then reads.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use parley_domain::CaFingerprint;
use parley_enroll::verifier::PinnedCa;
use parley_testkit::Rendezvous;
use parley_testkit::https::{Answer, parse_answer};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy)]
enum Framing {
    ContentLength,
    Chunked,
}

/// Writes `head` (request line and headers, without the blank line; `Host` and
/// `Connection: close` are added) and `body` to `server`, all of it, and only then reads the
/// answer to its end.
///
/// # Errors
/// A sentence when the request could not be written whole, or no answer came back.
fn write_then_read(server: &Rendezvous, head: &str, body: &[u8]) -> Result<Answer, String> {
    let fingerprint = CaFingerprint::parse(&server.fingerprint).expect("a fingerprint line");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa::new(Some(fingerprint), provider)))
        .with_no_client_auth();
    let addr: std::net::SocketAddr = server.addr.parse().expect("the https line's address");
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("TCP connect");
    tcp.set_write_timeout(Some(Duration::from_secs(30)))
        .expect("a write timeout");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let connection = rustls::ClientConnection::new(
        Arc::new(config),
        rustls_pki_types::ServerName::from(addr.ip()),
    )
    .expect("a TLS client");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let request = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .and_then(|()| tls.write_all(body))
        .and_then(|()| tls.flush())
        .map_err(|e| {
            format!(
                "the {} bytes of the request could not all be written: {e}",
                request.len() + body.len()
            )
        })?;
    let mut answer = Vec::new();
    let mut chunk = vec![0u8; 16 * KIB];
    let end = loop {
        match tls.read(&mut chunk) {
            Ok(0) => break None,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => break Some(e),
        }
    };
    if answer.is_empty() {
        return Err(format!(
            "no answer came back ({})",
            end.map_or_else(|| "the server closed".to_owned(), |e| e.to_string())
        ));
    }
    Ok(parse_answer(&answer))
}

/// `POST /v1/enroll` with a body of `size` bytes framed as `framing`.
fn oversized(server: &Rendezvous, size: usize, framing: Framing) -> Result<Answer, String> {
    let body = vec![b'{'; size];
    match framing {
        Framing::ContentLength => write_then_read(
            server,
            &format!(
                "POST /v1/enroll HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {size}"
            ),
            &body,
        ),
        Framing::Chunked => {
            let mut chunked = format!("{size:x}\r\n").into_bytes();
            chunked.extend_from_slice(&body);
            chunked.extend_from_slice(b"\r\n0\r\n\r\n");
            write_then_read(
                server,
                "POST /v1/enroll HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
                &chunked,
            )
        }
    }
}

#[test]
fn a_body_over_the_cap_gets_its_413_whatever_its_size_and_the_next_enrollment_works() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &["--enroll-burst", "1000"]);
    let mut failures = Vec::new();
    for size in [65 * KIB, 70 * KIB, 200 * KIB, MIB, 16 * MIB] {
        for framing in [Framing::ContentLength, Framing::Chunked] {
            let what = format!("{} KiB, {framing:?}", size / KIB);
            match oversized(&server, size, framing) {
                Ok(answer) if answer.status == 413 => {
                    answer.assert_error(413, "body_too_large");
                    assert_eq!(
                        answer.header("connection").as_deref(),
                        Some("close"),
                        "{what}: the answer says the connection ends"
                    );
                }
                Ok(answer) => failures.push(format!("{what}: {answer:?}")),
                Err(e) => failures.push(format!("{what}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "every oversized body must get its 413:\n{}",
        failures.join("\n")
    );
    common::enroll_with_client(&server, "alice");
    // And the server is still well: another over-the-cap request, then another enrollment.
    oversized(&server, 70 * KIB, Framing::ContentLength)
        .expect("an answer")
        .assert_error(413, "body_too_large");
    common::enroll_with_client(&server, "bob");
    let health = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(common::https(&server).raw("GET /healthz HTTP/1.1", b""));
    assert_eq!(health.status, 200, "{health:?}");
}

#[test]
fn curl_gets_the_413_for_a_body_it_sends_at_once_and_for_one_it_announces() {
    if !parley_testkit::tools::tool_available("curl", "curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(&dir.path().join("data"), &["--enroll-burst", "1000"]);
    // curl sends a body below 1 MiB at once; a larger one it announces with
    // `Expect: 100-continue` and sends only when told to.
    for (size, what) in [
        (70 * KIB, "70 KiB"),
        (1_000_000, "1 MB"),
        (2 * MIB, "2 MiB"),
    ] {
        let body = dir.path().join("body.json");
        std::fs::write(&body, vec![b'{'; size]).expect("write the body");
        let out = dir.path().join("answer.json");
        let curl = std::process::Command::new("curl")
            // -k: the test is about HTTP, not about the certificate (which names the
            // rendezvous by URI, not by this address).
            .args(["-sS", "-k", "--max-time", "30", "-o"])
            .arg(&out)
            .args(["-w", "%{http_code}", "-H", "Content-Type: application/json"])
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(format!("{}/v1/enroll", server.url))
            .output()
            .expect("run curl");
        let code = String::from_utf8_lossy(&curl.stdout);
        assert_eq!(
            code,
            "413",
            "{what}: curl saw HTTP code {code}; {}",
            String::from_utf8_lossy(&curl.stderr)
        );
        let answer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).expect("curl wrote the answer"))
                .expect("a JSON answer");
        assert_eq!(answer["code"], "body_too_large", "{what}: {answer}");
    }
    common::enroll_with_client(&server, "alice");
}

/// `GET /healthz` whose whole head — request line, headers (`Host` and `Connection` as
/// [`write_then_read`] adds them), blank line — is exactly `size` bytes, padded by `X-Pad`
/// headers of at most `per_header` bytes each.
fn head_of(server: &Rendezvous, size: usize, per_header: usize) -> Result<Answer, String> {
    let added = format!("\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr).len();
    let mut head = String::from("GET /healthz HTTP/1.1");
    let prefix = "\r\nX-Pad: ".len();
    let room = size - head.len() - added;
    let count = room.div_ceil(prefix + per_header);
    let values = room - count * prefix;
    for n in 0..count {
        head.push_str("\r\nX-Pad: ");
        head.push_str(&"p".repeat(values / count + usize::from(n < values % count)));
    }
    assert_eq!(head.len() + added, size, "the head is exactly {size} bytes");
    write_then_read(server, &head, b"")
}

/// Asserts a 431 that the client could read: the API's JSON when it has a body, hyper's bare
/// one (refused while still arriving) otherwise.
fn assert_head_refused(answer: &Result<Answer, String>, what: &str) {
    let answer = answer
        .as_ref()
        .unwrap_or_else(|e| panic!("{what}: the 431 must reach the client: {e}"));
    assert_eq!(answer.status, 431, "{what}: {answer:?}");
    if !answer.body.is_empty() {
        answer.assert_error(431, "headers_too_large");
    }
}

/// Asserts the API's own 431: a head up to twice the cap is always read whole, however its
/// TLS records happened to arrive, so it gets the JSON error and not hyper's bare one.
fn assert_head_refused_whole(answer: &Result<Answer, String>, what: &str) {
    let answer = answer
        .as_ref()
        .unwrap_or_else(|e| panic!("{what}: the 431 must reach the client: {e}"));
    answer.assert_error(431, "headers_too_large");
}

#[test]
fn a_head_over_64_kib_gets_its_431_and_one_of_64_kib_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let at_cap = head_of(&server, 64 * KIB, 64 * KIB).expect("an answer");
    assert_eq!(at_cap.status, 200, "a head of exactly 64 KiB: {at_cap:?}");
    let at_cap = head_of(&server, 64 * KIB, 4 * KIB).expect("an answer");
    assert_eq!(at_cap.status, 200, "64 KiB in 17 headers: {at_cap:?}");
    assert_head_refused_whole(
        &head_of(&server, 64 * KIB + 1, 64 * KIB),
        "64 KiB and 1 byte",
    );
    assert_head_refused_whole(
        &head_of(&server, 64 * KIB + 1, 4 * KIB),
        "64 KiB and 1 byte, 17 headers",
    );
    assert_head_refused_whole(
        &head_of(&server, 100_000, 8 * KIB),
        "about 100 KB of headers",
    );
    assert_head_refused(&head_of(&server, 1_000_000, 8 * KIB), "1 MB of headers");
    // Over 100 header lines, however short.
    let many = (0..101)
        .map(|n| format!("\r\nX-Pad-{n}: p"))
        .collect::<String>();
    assert_head_refused(
        &write_then_read(&server, &format!("GET /healthz HTTP/1.1{many}"), b""),
        "103 header lines",
    );
    let metrics = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(common::https(&server).raw("GET /metrics HTTP/1.1", b""));
    let text = String::from_utf8_lossy(&metrics.body);
    let counted: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("parley_https_refusals_total{reason=\"headers_too_large\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no headers_too_large count in\n{text}"));
    assert_eq!(
        counted, 3,
        "the three complete heads over the cap are counted, and only they"
    );
    common::enroll_with_client(&server, "alice");
}
