//! Password guessing from the attacker's side: wrong passwords for one name from many
//! addresses lock that name (and only it), guesses sent at once past the free allowance are
//! taken one at a time, and the owner's right password clears the record once the lock is
//! over. Distinct sources are distinct loopback addresses (Linux answers all of 127/8).

mod common;
mod csr;

use std::time::Duration;

use common::https;
use csr::Device;
use parley_testkit::{Rendezvous, https::Answer};
use serde_json::json;

const RIGHT: &str = "correct horse battery";

/// `POST /v1/enroll` of `user` with `password` and a fresh device, from 127.0.0.`source`.
async fn enroll_from(server: &Rendezvous, source: u8, user: &str, password: &str) -> Answer {
    let body = json!({ "username": user, "password": password, "csr_pem": Device::new().csr() });
    common::enroll_json_from(server, source, &body).await
}

fn assert_locked(answer: &Answer, what: &str) -> u64 {
    answer.assert_error(429, "locked_out");
    let retry: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: Retry-After in whole seconds: {answer:?}"));
    assert!((1..=900).contains(&retry), "{what}: Retry-After {retry}");
    retry
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_from_many_addresses_lock_the_name_and_only_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The per-address limit out of the way: this is about the name.
    let server = common::start(dir.path(), &["--enroll-burst", "1000"]);
    assert_eq!(enroll_from(&server, 1, "bob", RIGHT).await.status, 200);

    // Five free wrong passwords and the sixth, each from another address: all plain refusals.
    for source in 10..16 {
        enroll_from(&server, source, "bob", "a wrong guess")
            .await
            .assert_error(401, "invalid_credentials");
    }
    // Now bob's name is locked, even for the right password from a fresh address: its
    // password is not checked at all.
    let retry = assert_locked(
        &enroll_from(&server, 20, "bob", RIGHT).await,
        "the right password during the lock",
    );
    assert_eq!(retry, 1, "the first lock is a second");
    // Another name is untouched, from one of the guessing addresses.
    assert_eq!(enroll_from(&server, 10, "carol", RIGHT).await.status, 200);

    // The lock over, a guess locks for 2 s; the guesses sent at once after that are taken one
    // at a time: at most one is checked, the others are refused unchecked.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    enroll_from(&server, 21, "bob", "another guess")
        .await
        .assert_error(401, "invalid_credentials");
    let retry = assert_locked(&enroll_from(&server, 22, "bob", RIGHT).await, "second lock");
    assert_eq!(retry, 2, "each wrong password doubles the lock");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let at_once = futures::future::join_all(
        (30..40).map(|source| enroll_from(&server, source, "bob", "guess at once")),
    )
    .await;
    let checked = at_once.iter().filter(|a| a.status == 401).count();
    let refused = at_once.iter().filter(|a| a.status == 429).count();
    assert_eq!(
        (checked, refused),
        (1, 9),
        "one guess checked, the rest locked out: {at_once:?}"
    );
    for answer in at_once.iter().filter(|a| a.status == 429) {
        assert_locked(answer, "a guess sent at once");
    }

    // The owner, once the lock is over, gets in, and that clears the record: five free
    // wrong passwords again before any lock.
    let retry = assert_locked(&enroll_from(&server, 1, "bob", RIGHT).await, "third lock");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(enroll_from(&server, 1, "bob", RIGHT).await.status, 200);
    for source in 50..55 {
        enroll_from(&server, source, "bob", "a wrong guess")
            .await
            .assert_error(401, "invalid_credentials");
    }
    let metrics = https(&server).raw("GET /metrics HTTP/1.1", b"").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("parley_enrollments_total{outcome=\"locked_out\"}")),
        "lockouts are counted:\n{text}"
    );
}

/// A flood of guesses against many known names (each within its free allowance, from as many
/// addresses) fills the queue of password checks: what does not fit is refused at once with
/// 503 `busy`, and a new name enrolled in the middle of the flood is hashed in its turn, long
/// before the flood is through.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_guesses_is_bounded_and_does_not_starve_a_new_name() {
    const NAMES: u8 = 60;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &["--enroll-burst", "1000"]);
    for n in 0..NAMES {
        let answer = enroll_from(&server, 1, &format!("known{n}"), RIGHT).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let server = std::sync::Arc::new(server);
    let started = std::time::Instant::now();
    let flood: Vec<_> = (0..NAMES)
        .map(|n| {
            let server = server.clone();
            tokio::spawn(async move {
                let answer =
                    enroll_from(&server, 100 + n, &format!("known{n}"), "a wrong guess").await;
                (answer, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_name = enroll_from(&server, 200, "newcomer", RIGHT).await;
    let new_done = started.elapsed();
    assert_eq!(
        new_name.status, 200,
        "the new name is enrolled: {new_name:?}"
    );

    let mut checked = Vec::new();
    let mut busy = 0;
    for task in flood {
        let (answer, done) = task.await.expect("the guess ran");
        match answer.status {
            401 => checked.push(done),
            503 => {
                answer.assert_error(503, "busy");
                assert!(answer.header("retry-after").is_some(), "{answer:?}");
                busy += 1;
            }
            _ => panic!("a guess is checked or refused as busy: {answer:?}"),
        }
    }
    assert!(
        busy > 0,
        "{NAMES} guesses at once do not all wait: the queue is bounded"
    );
    let after = checked.iter().filter(|done| **done > new_done).count();
    assert!(
        after >= 10,
        "the new name was served in its turn, with most of the flood still waiting ({after} of {} checked after it)",
        checked.len()
    );
}
