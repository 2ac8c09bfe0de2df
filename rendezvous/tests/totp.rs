//! The second factor from the attacker's side, against the real binary. A device turns it on
//! and off over `/parley/account/1` (the real mutual-TLS upgrade, raw requests); enrollments
//! are raw HTTPS. Codes come from `oathtool`, an implementation of RFC 6238 independent of
//! this one. With the second factor on, the right password alone gets `totp_required`; a
//! wrong code `invalid_totp`; a code works once; wrong codes from many addresses lock the
//! name; a device whose key is not bound to the name cannot turn it off; and the secret is
//! nowhere in the data folder in the clear.

mod common;
mod csr;

use std::path::Path;
use std::time::Duration;

use csr::Device;
use parley_p2p::account::{ACCOUNT_PROTOCOL, AccountRequest, AccountResponse};
use parley_testkit::{Rendezvous, https::Answer, tools};
use serde_json::json;

/// How long connecting and the answers may take.
const ANSWER: Duration = Duration::from_secs(20);

fn oathtool(secret: &str, ahead: u32) -> String {
    tools::oathtool(secret, ahead)
}

fn have_oathtool() -> bool {
    if tools::on_path("oathtool").is_some() {
        return true;
    }
    tools::skip("the second-factor tests need oathtool (apt-get install oathtool)");
    false
}

/// A code that is not the current one (nor, by construction, its neighbours').
fn wrong(secret: &str) -> String {
    let near: Vec<u32> = (0..3)
        .map(|ahead| oathtool(secret, ahead).parse().expect("six digits"))
        .collect();
    let guess = (0..1_000_000u32)
        .map(|n| (near[0] + 500_000 + n) % 1_000_000)
        .find(|n| !near.contains(n))
        .expect("a code nobody uses");
    format!("{guess:06}")
}

/// `POST /v1/enroll` of `user` with `password`, a fresh device and `totp` if given, from
/// 127.0.0.`source`.
async fn enroll_from(
    server: &Rendezvous,
    source: u8,
    user: &str,
    password: &str,
    totp: Option<&str>,
) -> Answer {
    let mut body =
        json!({ "username": user, "password": password, "csr_pem": Device::new().csr() });
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    common::enroll_json_from(server, source, &body).await
}

/// `requests`, one after the other on one connection of `device`, and their answers.
async fn account(
    server: &Rendezvous,
    device: &common::Enrolled,
    requests: Vec<AccountRequest>,
) -> Vec<AccountResponse> {
    common::ask(server, device, ACCOUNT_PROTOCOL, requests, ANSWER).await
}

fn enable() -> AccountRequest {
    AccountRequest::TotpEnable {
        meta: Default::default(),
    }
}

fn disable(code: &str) -> AccountRequest {
    AccountRequest::TotpDisable {
        code: code.to_owned(),
        meta: Default::default(),
    }
}

fn refused_with(answer: &AccountResponse) -> &str {
    match answer {
        AccountResponse::Refused { code, .. } => code,
        other => panic!("a refusal, not {other:?}"),
    }
}

/// Turns the second factor of `device`'s user on; its secret.
async fn turn_on(server: &Rendezvous, device: &common::Enrolled) -> String {
    match account(server, device, vec![enable()]).await.as_slice() {
        [AccountResponse::TotpEnabled { secret }] => secret.clone(),
        other => panic!("the second factor turned on: {other:?}"),
    }
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_second_factor_on_a_name_needs_a_fresh_code_once() {
    if !have_oathtool() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = common::start(&data, &["--enroll-burst", "1000"]);
    let bob = common::enroll(&server, "bob").await;
    let right = "pw-bob";

    let secret = turn_on(&server, &bob).await;
    assert_eq!(secret.len(), 32, "160 bits in base32: {secret}");
    // A second `enable` must not replace the secret the user's app holds.
    let again = account(&server, &bob, vec![enable()]).await;
    assert_eq!(refused_with(&again[0]), "totp_on");

    // The right password alone is no longer enough; a wrong password says nothing of the
    // second factor; a wrong or malformed code is refused.
    enroll_from(&server, 1, "bob", right, None)
        .await
        .assert_error(401, "totp_required");
    enroll_from(&server, 1, "bob", "not bob's", Some(&oathtool(&secret, 0)))
        .await
        .assert_error(401, "invalid_credentials");
    enroll_from(&server, 1, "bob", right, Some(&wrong(&secret)))
        .await
        .assert_error(401, "invalid_totp");
    enroll_from(&server, 1, "bob", right, Some("12345"))
        .await
        .assert_error(401, "invalid_totp");

    // oathtool's current code works, once.
    let code = oathtool(&secret, 0);
    let answer = enroll_from(&server, 1, "bob", right, Some(&code)).await;
    assert_eq!(answer.status, 200, "the current code: {answer:?}");
    enroll_from(&server, 1, "bob", right, Some(&code))
        .await
        .assert_error(401, "invalid_totp");

    // The secret is not in the data folder in the clear, neither as base32 nor as its bytes.
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .expect("base32");
    let stored = files(&data);
    assert!(
        stored
            .iter()
            .any(|(_, bytes)| bytes.windows(8).any(|w| w == b"\"sealed\"")),
        "the sealed secret is on disk, where this looks"
    );
    for (path, bytes) in stored {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret in base32",
            path.display()
        );
        assert!(
            !bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
            "{} holds the secret's bytes",
            path.display()
        );
    }

    // A certificate the CA signed for bob outside enrollment (its key bound to nobody) cannot
    // turn the second factor off, even with a current code.
    let forged = forged(&data, "bob", &bob.ca);
    let answer = account(&server, &forged, vec![disable(&oathtool(&secret, 1))]).await;
    assert_eq!(refused_with(&answer[0]), "key_not_bound");

    // Bob's device turns it off with the next code (a wrong one first), and the password
    // alone enrolls again.
    let answers = account(
        &server,
        &bob,
        vec![disable(&wrong(&secret)), disable(&oathtool(&secret, 1))],
    )
    .await;
    assert_eq!(refused_with(&answers[0]), "invalid_totp");
    assert_eq!(answers[1], AccountResponse::Done, "{answers:?}");
    let answer = enroll_from(&server, 1, "bob", right, None).await;
    assert_eq!(answer.status, 200, "the password alone again: {answer:?}");
    let off = account(&server, &bob, vec![disable(&oathtool(&secret, 1))]).await;
    assert_eq!(refused_with(&off[0]), "totp_off");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_from_many_addresses_lock_the_name_and_a_missing_code_clears_nothing() {
    if !have_oathtool() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(&dir.path().join("data"), &["--enroll-burst", "1000"]);
    let carol = common::enroll(&server, "carol").await;
    let right = "pw-carol";
    let secret = turn_on(&server, &carol).await;

    // The attacker knows carol's password. Five free wrong codes and a sixth, each from
    // another address, with a code-less request between them (which must not clear the count).
    for source in 10..16 {
        enroll_from(&server, source, "carol", right, Some(&wrong(&secret)))
            .await
            .assert_error(401, "invalid_totp");
        if source < 15 {
            enroll_from(&server, source, "carol", right, None)
                .await
                .assert_error(401, "totp_required");
        }
    }
    // Now the name is locked for everyone, even with the current code.
    let locked = enroll_from(&server, 20, "carol", right, Some(&oathtool(&secret, 0))).await;
    locked.assert_error(429, "locked_out");
    let retry: u64 = locked
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    // Turning the second factor off is locked too.
    let answer = account(&server, &carol, vec![disable(&oathtool(&secret, 0))]).await;
    assert_eq!(refused_with(&answer[0]), "locked_out");

    // Once the lock is over, carol's own code gets her in.
    tokio::time::sleep(Duration::from_secs(retry + 1)).await;
    let answer = enroll_from(&server, 1, "carol", right, Some(&oathtool(&secret, 0))).await;
    assert_eq!(answer.status, 200, "the owner after the lock: {answer:?}");
}

/// A device the CA signed for `name` outside enrollment, with a fresh key bound to nobody.
fn forged(data: &Path, name: &str, ca_der: &[u8]) -> common::Enrolled {
    common::forged(data, name, ca_der)
}
