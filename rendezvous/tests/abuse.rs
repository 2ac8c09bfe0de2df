//! Abuse of the HTTPS API from the attacker's side: the enrollment rate limit per source (and
//! what `X-Forwarded-For` can and cannot do about it), and slow clients against the others.
//! Distinct sources are distinct loopback addresses (Linux answers all of 127/8).

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::https;
use parley_testkit::{Rendezvous, https::Answer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("an IP literal"))
}

/// `POST /v1/enroll` from `source` with an empty JSON object (refused as `invalid_json` when
/// the limit lets it through) and these extra header lines.
async fn enroll_from(server: &Rendezvous, source: Option<IpAddr>, extra: &str) -> Answer {
    let head = format!(
        "POST /v1/enroll HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2{extra}"
    );
    https(server).raw_from(source, &head, b"{}").await
}

fn assert_limited(answer: &Answer, what: &str) {
    answer.assert_error(429, "rate_limited");
    let retry: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: Retry-After in whole seconds: {answer:?}"));
    assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start:?} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn enrollment_is_limited_per_source_and_a_forged_forwarded_for_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(
        dir.path(),
        &["--enroll-burst", "3", "--enroll-per-minute", "1"],
    );
    for _ in 0..3 {
        enroll_from(&server, ip("127.0.0.1"), "")
            .await
            .assert_error(400, "invalid_json");
    }
    let refused = enroll_from(&server, ip("127.0.0.1"), "").await;
    assert_limited(&refused, "the fourth request");
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(
        retry > 50,
        "one token a minute: a retry in about 60 s, not {retry}"
    );
    for n in 0..5 {
        let forged = format!("\r\nX-Forwarded-For: 198.51.100.{n}");
        assert_limited(
            &enroll_from(&server, ip("127.0.0.1"), &forged).await,
            "a rotating X-Forwarded-For from an untrusted peer",
        );
    }
    enroll_from(&server, ip("127.0.0.2"), "")
        .await
        .assert_error(400, "invalid_json");
    let health = https(&server)
        .raw_from(ip("127.0.0.1"), "GET /healthz HTTP/1.1", b"")
        .await;
    assert_eq!(health.status, 200, "the health check is not limited");
    let ca = https(&server)
        .raw_from(ip("127.0.0.1"), "GET /v1/ca HTTP/1.1", b"")
        .await;
    assert_eq!(ca.status, 200, "the CA is not limited");
    let metrics = https(&server).raw("GET /metrics HTTP/1.1", b"").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert_eq!(
        metric(
            &text,
            "parley_https_refusals_total{reason=\"rate_limited\"} "
        ),
        6
    );
    assert_eq!(
        metric(&text, "parley_enrollments_total{outcome=\"rate_limited\"} "),
        6
    );
    assert_eq!(metric(&text, "parley_rate_limit_sources "), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(
        dir.path(),
        &[
            "--enroll-burst",
            "2",
            "--enroll-per-minute",
            "1",
            "--trusted-proxy",
            "127.0.0.5",
        ],
    );
    let proxy = ip("127.0.0.5");
    let first = "\r\nX-Forwarded-For: 203.0.113.1";
    // A client may put anything left of what the proxy appends; only the proxy's entry counts.
    let second = "\r\nX-Forwarded-For: 203.0.113.1, 203.0.113.2";
    for _ in 0..2 {
        enroll_from(&server, proxy, first)
            .await
            .assert_error(400, "invalid_json");
    }
    assert_limited(
        &enroll_from(&server, proxy, first).await,
        "the third request of one forwarded client",
    );
    for _ in 0..2 {
        enroll_from(&server, proxy, second)
            .await
            .assert_error(400, "invalid_json");
    }
    assert_limited(
        &enroll_from(&server, proxy, second).await,
        "the third request of the other forwarded client",
    );
    // Without the header, the proxy's own address is the client.
    for _ in 0..2 {
        enroll_from(&server, proxy, "")
            .await
            .assert_error(400, "invalid_json");
    }
    assert_limited(&enroll_from(&server, proxy, "").await, "the proxy itself");
    // Another peer is not the proxy: its header is ignored.
    let other = ip("127.0.0.6");
    for n in 0..2 {
        enroll_from(&server, other, &format!("\r\nX-Forwarded-For: 192.0.2.{n}"))
            .await
            .assert_error(400, "invalid_json");
    }
    assert_limited(
        &enroll_from(&server, other, "\r\nX-Forwarded-For: 192.0.2.9").await,
        "an untrusted peer with a new forwarded address",
    );
}

/// Opens a TLS connection from `source` and starts a request head it never finishes, writing
/// one header byte now and then. Returns when the server closes it, with how long it lived;
/// `None` when the server refused it before the TLS handshake completed.
async fn slow_client(server: &Rendezvous, source: Option<IpAddr>) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = https(server).try_tls_from(source).await.ok()?;
    if stream
        .write_all(b"POST /v1/enroll HTTP/1.1\r\nX-Slow: ")
        .await
        .is_err()
    {
        return Some(started.elapsed());
    }
    let mut buf = [0u8; 256];
    loop {
        let _ = stream.flush().await;
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // an answer (hyper's 408); the close follows
            Err(_) => {
                if stream.write_all(b"a").await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            panic!("a slow client was still connected after 30 s: the header timeout failed");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slowloris_from_one_source_cannot_starve_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = std::sync::Arc::new(common::start(
        dir.path(),
        &[
            "--max-connections-per-source",
            "4",
            "--header-timeout-secs",
            "3",
        ],
    ));
    // Ten slow clients from 127.0.0.1, over its share of 4.
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let server = std::sync::Arc::clone(&server);
        slow.spawn(async move { slow_client(&server, ip("127.0.0.1")).await });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile a normal client from another address gets its answer promptly.
    let started = Instant::now();
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        https(&server).raw_from(ip("127.0.0.2"), "GET /healthz HTTP/1.1", b""),
    )
    .await
    .expect("another source was answered within 5 s while the slow clients held their share");
    assert_eq!(health.status, 200);
    let prompt = started.elapsed();
    // And the slow source itself cannot open a fifth connection for a normal request.
    let mut tcp = https(&server).tcp_from(ip("127.0.0.1")).await;
    let mut byte = [0u8; 1];
    let refused = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await;
    assert!(
        matches!(refused, Ok(Ok(0) | Err(_))),
        "a connection over the source's share is closed at once: {refused:?}"
    );
    drop(tcp);

    let mut refused_at_once = 0;
    let mut lifetimes = Vec::new();
    while let Some(outcome) = slow.join_next().await {
        match outcome.expect("slow client task") {
            None => refused_at_once += 1,
            Some(lived) => lifetimes.push(lived),
        }
    }
    lifetimes.sort();
    eprintln!(
        "slowloris: normal client from 127.0.0.2 answered in {} ms; of 10 slow clients from \
         127.0.0.1, {refused_at_once} were closed before the TLS handshake completed and {} were \
         served until the header timeout cut them after {:?}",
        prompt.as_millis(),
        lifetimes.len(),
        lifetimes
    );
    assert_eq!(lifetimes.len(), 4, "exactly the share of 4 was served");
    assert_eq!(refused_at_once, 6);
    for lived in &lifetimes {
        assert!(
            *lived >= Duration::from_millis(2500) && *lived < Duration::from_secs(10),
            "a slow client is cut at the 3 s header timeout, not after {lived:?}"
        );
    }
    let metrics = https(&server).raw("GET /metrics HTTP/1.1", b"").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert_eq!(
        metric(
            &text,
            "parley_https_refusals_total{reason=\"too_many_connections\"} "
        ),
        7
    );
}
