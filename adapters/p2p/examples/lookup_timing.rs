//! Does the directory's response time say whether a username exists? Measures look-ups of
//! never-enrolled names against look-ups of an enrolled user who went offline (and, for scale,
//! one who is online), through a real node, over real mutual TLS on loopback, and prints the
//! medians and their difference.
//!
//! `cargo run --release -p parley-p2p --example lookup_timing [SAMPLES]`
//!
//! The look-ups are paced below the per-device and per-address rate limits (three devices in
//! turn), so every sample is a real answer.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Ca, directory, node};
use parley_domain::Username;
use parley_usecases::ports::Directory;

/// Time between two look-ups: 14 a second, under the address's 15 and each device's 5.
const PACE: Duration = Duration::from_millis(72);

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let ca = Ca::new("Parley CA");
    let dir = directory(&ca).await;
    let lookers = [
        node(ca.user("looker-a", 11), "looker-a", dir.addresses())
            .await
            .0,
        node(ca.user("looker-b", 12), "looker-b", dir.addresses())
            .await
            .0,
        node(ca.user("looker-c", 13), "looker-c", dir.addresses())
            .await
            .0,
    ];
    // bob enrolls (holds a certificate), comes online, and leaves: enrolled but offline.
    let (bob, _) = node(ca.user("bob", 2), "bob", dir.addresses()).await;
    let (carol, _) = node(ca.user("carol", 3), "carol", dir.addresses()).await;
    let bob_name = Username::parse("bob").unwrap();
    let carol_name = Username::parse("carol").unwrap();
    common::eventually("bob and carol online", async || {
        matches!(lookers[0].lookup(&bob_name).await, Ok(found) if !found.is_empty())
            && matches!(lookers[0].lookup(&carol_name).await, Ok(found) if !found.is_empty())
    })
    .await;
    bob.shutdown().await;
    common::eventually(
        "bob offline",
        async || matches!(lookers[0].lookup(&bob_name).await, Ok(found) if found.is_empty()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await; // let the buckets refill

    let mut unknown = Vec::new();
    let mut offline = Vec::new();
    let mut online = Vec::new();
    let mut limited = 0;
    // Warm-up round, not counted.
    for i in 0..(3 * samples + 6) {
        // The order of the three kinds changes from round to round (all six orders in turn),
        // so that no kind always follows another.
        const ORDERS: [[usize; 3]; 6] = [
            [0, 1, 2],
            [1, 2, 0],
            [2, 0, 1],
            [0, 2, 1],
            [2, 1, 0],
            [1, 0, 2],
        ];
        let (name, kind) = match ORDERS[(i / 3) % 6][i % 3] {
            0 => (format!("never-{i:05}"), 0),
            1 => ("bob".to_owned(), 1),
            _ => ("carol".to_owned(), 2),
        };
        let name = Username::parse(&name).unwrap();
        // Every looker asks for every kind in turn.
        let looker = &lookers[(i + i / 3) % lookers.len()];
        let started = Instant::now();
        let answer = looker.lookup(&name).await;
        let took = started.elapsed();
        tokio::time::sleep(PACE.saturating_sub(took)).await;
        if i < 6 {
            continue;
        }
        match (answer, kind) {
            (Ok(found), 0) if found.is_empty() => unknown.push(took),
            (Ok(found), 1) if found.is_empty() => offline.push(took),
            (Ok(found), 2) if !found.is_empty() => online.push(took),
            (Err(_), _) => limited += 1,
            (other, kind) => panic!("unexpected answer for kind {kind}: {other:?}"),
        }
    }
    let report = |label: &str, s: &mut Vec<Duration>| {
        let m = median(s);
        println!(
            "{label:<28} n={:<4} median {:>8.1} µs   p10 {:>8.1} µs   p90 {:>8.1} µs",
            s.len(),
            m.as_secs_f64() * 1e6,
            quantile(s, 0.1).as_secs_f64() * 1e6,
            quantile(s, 0.9).as_secs_f64() * 1e6,
        );
        m
    };
    let m_unknown = report("never enrolled", &mut unknown);
    let m_offline = report("enrolled, offline", &mut offline);
    let m_online = report("enrolled, online (scale)", &mut online);
    let diff = m_offline.as_secs_f64() - m_unknown.as_secs_f64();
    println!(
        "difference of medians (offline - never enrolled): {:+.1} µs ({:+.2} % of the median)",
        diff * 1e6,
        100.0 * diff / m_unknown.as_secs_f64()
    );
    println!(
        "online - never enrolled: {:+.1} µs (an online user is found: the answer itself says so)",
        (m_online.as_secs_f64() - m_unknown.as_secs_f64()) * 1e6
    );
    println!("rate-limited (not counted): {limited}");
    for looker in &lookers {
        looker.shutdown().await;
    }
    carol.shutdown().await;
    dir.shutdown().await;
}
