//! Certificate renewal from the attacker's side, against the real binary: devices speak the
//! real mutual-TLS upgrade and raw `/parley/renew/1` requests. A renewal is for the
//! connection's own user and keys only, lasts `--certificate-days`, is refused for a name never
//! enrolled and for a key not bound to the name, and a second one within a minute is
//! rate-limited.

mod common;

use std::time::Duration;

use common::{der, enroll};
use parley_domain::{Role, Username};
use parley_p2p::protocol::{RENEW_PROTOCOL, RenewRequest, RenewResponse};
use parley_testkit::Rendezvous;

/// How long connecting and one answer may take.
const ANSWER: Duration = Duration::from_secs(20);

/// A device's key and certificates.
type Device = common::Enrolled;

/// A device the CA signed for `name` outside enrollment (the attacker holds a CA-signed
/// certificate the registry knows nothing of), with a fresh key.
fn forged(data: &std::path::Path, name: &str, ca_der: &[u8]) -> Device {
    common::forged(data, name, ca_der)
}

/// `requests` renewal requests, one after the other on one connection, and their answers.
async fn renew(server: &Rendezvous, device: &Device, requests: usize) -> Vec<RenewResponse> {
    common::ask(
        server,
        device,
        RENEW_PROTOCOL,
        vec![RenewRequest::default(); requests],
        ANSWER,
    )
    .await
}

fn renewed(answer: &RenewResponse) -> Vec<u8> {
    match answer {
        RenewResponse::Renewed { certificate_pem } => der(certificate_pem),
        other => panic!("expected a renewed certificate, got {other:?}"),
    }
}

fn refusal(answer: &RenewResponse) -> &str {
    match answer {
        RenewResponse::Refused { reason } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_certifies_only_the_connections_own_user_and_keys_for_the_configured_days() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = common::start(data.path(), &["--certificate-days", "3"]);
    let alice = enroll(&server, "alice").await;
    let bob = enroll(&server, "bob").await;

    let answers = renew(&server, &alice, 2).await;
    let new = renewed(&answers[0]);
    let old = parley_pki::inspect(&alice.certificate).expect("alice's certificate");
    let got = parley_pki::inspect(&new).expect("the renewed certificate");
    assert_eq!(got, old, "same name, same Ed25519 and X25519 keys");
    let was = parley_pki::validity(&alice.certificate).expect("validity");
    let is = parley_pki::validity(&new).expect("validity");
    assert!(is.not_after >= was.not_after, "{is:?} against {was:?}");
    let days = (is.not_after.0 - is.not_before.0) / 86_400_000;
    assert_eq!(days, 3, "--certificate-days 3 gives three days: {is:?}");
    match &answers[1] {
        RenewResponse::RateLimited { retry_after_ms } => {
            assert!(
                (1..=60_001).contains(retry_after_ms),
                "wait within the minute: {retry_after_ms}"
            );
        }
        other => panic!("a second renewal within a minute must be rate-limited, got {other:?}"),
    }

    // Bob's connection gets bob's certificate, never alice's.
    let bobs = renewed(&renew(&server, &bob, 1).await[0]);
    let got = parley_pki::inspect(&bobs).expect("bob's renewed certificate");
    assert_eq!(got, parley_pki::inspect(&bob.certificate).expect("bob's"));
    assert_ne!(got.ed25519, old.ed25519);
    assert_eq!(got.role, Role::User(Username::parse("bob").expect("name")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_not_bound_to_the_name_and_a_name_never_enrolled_are_refused_with_a_reason() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = common::start(data.path(), &[]);
    let alice = enroll(&server, "alice").await;

    // A CA-signed certificate naming alice, for a key the registry never bound to her.
    let impostor = forged(data.path(), "alice", &alice.ca);
    let answers = renew(&server, &impostor, 1).await;
    let reason = refusal(&answers[0]);
    assert!(
        reason.contains("no longer bound to alice"),
        "the reason says the key is not alice's: {reason}"
    );

    // A CA-signed certificate for a name nobody enrolled.
    let ghost = forged(data.path(), "ghost", &alice.ca);
    let answers = renew(&server, &ghost, 1).await;
    let reason = refusal(&answers[0]);
    assert!(reason.contains("ghost is not enrolled"), "{reason}");

    // Alice herself still renews.
    let new = renewed(&renew(&server, &alice, 1).await[0]);
    assert_eq!(
        parley_pki::inspect(&new).expect("renewed"),
        parley_pki::inspect(&alice.certificate).expect("alice's")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_days_outside_one_to_thirty_is_a_one_sentence_error() {
    let data = tempfile::tempdir().expect("tempdir");
    for days in ["0", "31", "many"] {
        let out = std::process::Command::new(parley_testkit::bin::binary("parley-rendezvous"))
            .arg("--data")
            .arg(data.path())
            .args(["--certificate-days", days])
            .output()
            .expect("run the rendezvous");
        assert!(
            !out.status.success(),
            "--certificate-days {days} must be refused"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--certificate-days") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}
