//! The HTTPS listener's connection slots, from the attacker's side: sixteen addresses each
//! holding their full share of idle connections take every general slot, and a legitimate
//! enrollment from another address still gets in at once, on a slot kept in reserve for
//! sources with no other connection; accepting never waits for a slot to free up. Distinct
//! sources are distinct loopback addresses (Linux answers all of 127/8).

mod common;
mod csr;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::https;
use csr::Device;
use serde_json::json;

fn ip(n: u8) -> Option<IpAddr> {
    Some(format!("127.0.0.{n}").parse().expect("an address"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sources_holding_every_general_slot_cannot_keep_a_newcomer_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Idle connections stay up for the whole test (the header timeout would end them).
    let server = common::start(dir.path(), &["--header-timeout-secs", "60"]);
    let client = https(&server);
    let (per_source, max) = (16usize, 256usize);
    let general = max - parley_rendezvous::https::reserved_slots(max as u32) as usize;

    // Sixteen sources, sixteen connections each: the general slots go first; what does not
    // fit is closed at once (a handshake that fails), never left waiting.
    let mut held = Vec::new();
    let mut closed = 0;
    for source in 0..16u8 {
        for _ in 0..per_source {
            match client.try_tls_from(ip(10 + source)).await {
                Ok(tls) => held.push(tls),
                Err(_) => closed += 1,
            }
        }
    }
    // The general slots fill after 14 sources; each of the last two, with nothing open yet,
    // gets one reserved slot and no more.
    let late_sources = 16 - general / per_source;
    assert_eq!(
        held.len(),
        general + late_sources,
        "every general slot is held by the attackers, and a reserved one per late source"
    );
    assert_eq!(
        closed,
        16 * per_source - held.len(),
        "the rest was refused at once"
    );

    // A legitimate enrollment from a fresh address: in at once, on a reserved slot.
    let body = json!({ "username": "alice", "password": "correct horse battery", "csr_pem": Device::new().csr() })
        .to_string();
    let head = format!(
        "POST /v1/enroll HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.raw_from(ip(2), &head, body.as_bytes()),
    )
    .await
    .expect("the newcomer is served, not kept waiting for a slot");
    assert_eq!(answer.status, 200, "{answer:?}");
    eprintln!(
        "newcomer enrolled in {:?} with {} connections held",
        started.elapsed(),
        held.len()
    );

    // One of the attacking sources cannot use the reserve: it has connections open.
    assert!(
        client.try_tls_from(ip(10)).await.is_err(),
        "a source with connections open gets no reserved slot"
    );
    let metrics = client.raw("GET /metrics HTTP/1.1", b"").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let full: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("parley_https_refusals_total{reason=\"server_full\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("server_full is counted:\n{text}"));
    assert!(full >= 1, "{full}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_serves_a_bounded_number_of_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let client = https(&server);
    let max = parley_rendezvous::https::MAX_REQUESTS_PER_CONNECTION as usize;
    let mut tls = client.tls().await;
    // More requests than a connection may carry, all at once (HTTP/1.1 pipelining).
    let one = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", client.addr());
    tls.write_all(one.repeat(max + 20).as_bytes())
        .await
        .expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut got))
        .await
        .expect("the server closes the connection after its last answer")
        .ok();
    let text = String::from_utf8_lossy(&got);
    let answers = text.matches("HTTP/1.1 200").count();
    assert_eq!(answers, max, "exactly the cap is served on one connection");
    let last = &text[text.rfind("HTTP/1.1 200").expect("an answer")..];
    assert!(
        last.to_ascii_lowercase().contains("connection: close"),
        "the last answer says so: {last}"
    );
}
