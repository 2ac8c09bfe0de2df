//! End to end: the real binary, enrollment through `parley-enroll`, and hostile requests.

mod common;
mod csr;

use std::os::unix::fs::PermissionsExt;

use common::https;
use csr::{Device, name};
use parley_domain::pki::{RENDEZVOUS_URI, X25519_EXTENSION_OID, user_uri};
use parley_domain::{CaFingerprint, Password};
use parley_enroll::HttpsEnrollment;
use parley_testkit::Rendezvous;
use parley_usecases::ports::{EnrollError, EnrollRequest, Enrollment};
use rcgen::{BasicConstraints, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use serde_json::json;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The CA fingerprint `server` printed, typed.
fn ca_pin(server: &Rendezvous) -> CaFingerprint {
    CaFingerprint::parse(&server.fingerprint).expect("a valid fingerprint line")
}

fn enroll_request(server: &Rendezvous, user: &str, password: &str) -> EnrollRequest {
    EnrollRequest {
        server: server.url.clone(),
        user: name(user),
        password: Password::new(password.into()),
        ca_pin: Some(ca_pin(server)),
        keys: None,
        totp: None,
    }
}

/// The DER of the PEM certificate in `json[field]`.
fn pem_der(json: &serde_json::Value, field: &str) -> Vec<u8> {
    let pem = json[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {json}"));
    rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap_or_else(|e| panic!("{field} is not a PEM certificate: {e:?}"))
}

/// Checks every rule of the CA policy on an issued certificate.
fn assert_policy(
    cert_der: &[u8],
    ca_der: &[u8],
    user: &str,
    ed25519: &[u8],
    x25519: Option<&[u8; 32]>,
) {
    let (_, cert) = X509Certificate::from_der(cert_der).expect("certificate parses");
    let (_, ca) = X509Certificate::from_der(ca_der).expect("CA parses");
    assert!(!cert.is_ca(), "CA:false");
    let bc = cert
        .basic_constraints()
        .expect("one basic constraints")
        .expect("present");
    assert!(!bc.value.ca);
    let eku = cert
        .extended_key_usage()
        .expect("one EKU")
        .expect("EKU present");
    assert!(eku.value.server_auth && eku.value.client_auth, "both EKUs");
    let ku = cert.key_usage().expect("one KU").expect("KU present");
    assert!(ku.value.digital_signature() && !ku.value.key_cert_sign());
    let san = cert
        .subject_alternative_name()
        .expect("one SAN ext")
        .expect("SAN present");
    let uri = user_uri(&name(user));
    assert!(
        matches!(san.value.general_names.as_slice(), [GeneralName::URI(u)] if *u == uri),
        "exactly one SAN, the user URI: {:?}",
        san.value.general_names
    );
    let oid = Oid::from(X25519_EXTENSION_OID).expect("valid OID");
    let ext = cert.extensions().iter().find(|e| e.oid == oid);
    match (ext, x25519) {
        (Some(ext), Some(x25519)) => {
            assert!(!ext.critical, "X25519 extension is non-critical");
            assert_eq!(ext.value, [&[0x04, 0x20][..], &x25519[..]].concat());
        }
        (None, None) => {}
        (ext, _) => panic!("X25519 extension {ext:?} does not match the CSR's offer {x25519:?}"),
    }
    let validity = cert.validity();
    let lifetime =
        validity.not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        lifetime <= 30 * 86_400 && lifetime > 29 * 86_400,
        "validity ≤ 30 days: {lifetime}"
    );
    assert!(validity.not_before.timestamp() <= time::OffsetDateTime::now_utc().unix_timestamp());
    assert_eq!(
        cert.issuer().as_raw(),
        ca.subject().as_raw(),
        "issuer is the CA"
    );
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        ed25519,
        "the CSR's key"
    );
    assert!(!matches!(
        cert.extensions()
            .iter()
            .find(|e| matches!(
                e.parsed_extension(),
                ParsedExtension::SubjectAlternativeName(_)
            ))
            .map(|e| e.critical),
        Some(true)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn enrollment_succeeds_and_the_certificate_obeys_the_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let identity = HttpsEnrollment::new()
        .enroll(&enroll_request(&server, "alice", "correct horse"))
        .await
        .expect("enrollment succeeds");
    assert_eq!(identity.ca_fingerprint, ca_pin(&server));
    assert_eq!(identity.rendezvous_addrs, vec![server.p2p.clone()]);
    assert_eq!(identity.server, server.url);
    let x25519 =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*identity.x25519.expose()));
    let ed25519 = parley_rendezvous::identity::public_key(&identity.ed25519);
    assert_policy(
        &identity.certificate_der,
        &identity.ca_der,
        "alice",
        &ed25519,
        Some(x25519.as_bytes()),
    );
    assert_eq!(
        parley_rendezvous::ca::fingerprint(&identity.ca_der),
        Some(ca_pin(&server))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_pin_gives_a_fingerprint_mismatch_and_no_identity() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let pin = CaFingerprint::from_digest([7; 32]);
    let mut request = enroll_request(&server, "alice", "pw");
    request.ca_pin = Some(pin);
    let result = HttpsEnrollment::new().enroll(&request).await;
    assert_eq!(
        result.err(),
        Some(EnrollError::FingerprintMismatch {
            expected: pin,
            actual: ca_pin(&server)
        })
    );
    // Nothing was created: the name is still free for another password.
    HttpsEnrollment::new()
        .enroll(&enroll_request(&server, "alice", "other"))
        .await
        .expect("the name was never taken");
}

#[tokio::test(flavor = "multi_thread")]
async fn trust_on_first_use_reports_the_fingerprint_it_trusted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let mut request = enroll_request(&server, "tofu", "pw");
    request.ca_pin = None;
    let identity = HttpsEnrollment::new()
        .enroll(&request)
        .await
        .expect("TOFU enrollment");
    assert_eq!(identity.ca_fingerprint, ca_pin(&server));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_or_bad_url_is_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let server = format!("https://127.0.0.1:{port}");
    let request = EnrollRequest {
        server: server.clone(),
        user: name("alice"),
        password: Password::new("pw".into()),
        ca_pin: None,
        keys: None,
        totp: None,
    };
    assert_eq!(
        HttpsEnrollment::new().enroll(&request).await.err(),
        Some(EnrollError::Unreachable(server))
    );
    let request = EnrollRequest {
        server: "http://127.0.0.1:1".into(),
        ..request
    };
    assert!(
        matches!(HttpsEnrollment::new().enroll(&request).await, Err(EnrollError::Failed(m)) if m.contains("https://"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn csr_wishes_beyond_the_policy_are_refused_and_the_own_name_is_granted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let device = Device::new();
    type Wish = fn(&mut rcgen::CertificateParams);
    let wishes: [(&str, Wish); 3] = [
        ("CA", |params| {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }),
        ("the rendezvous's name", |params| {
            params.subject_alt_names = vec![SanType::URI(RENDEZVOUS_URI.try_into().expect("URI"))];
        }),
        ("extra names", |params| {
            params.subject_alt_names = vec![
                SanType::URI("parley://user/mallory".try_into().expect("URI")),
                SanType::DnsName("evil.example".try_into().expect("DNS")),
            ];
        }),
    ];
    for (what, wish) in wishes {
        let answer = https(&server)
            .post_json(
                "/v1/enroll",
                &json!({"username": "mallory", "password": "pw", "csr_pem": device.csr_with(wish)}),
            )
            .await;
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        answer.assert_error(400, "invalid_csr");
    }
    let csr = device.csr_with(|params| {
        params.is_ca = IsCa::ExplicitNoCa;
        params.subject_alt_names = vec![SanType::URI(
            user_uri(&name("mallory")).try_into().expect("URI"),
        )];
    });
    let answer = https(&server)
        .post_json(
            "/v1/enroll",
            &json!({"username": "mallory", "password": "pw", "csr_pem": csr}),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let json = answer.json();
    assert_policy(
        &pem_der(&json, "certificate_pem"),
        &pem_der(&json, "ca_pem"),
        "mallory",
        device.key.public_key_raw(),
        Some(&device.x25519),
    );
    assert_eq!(json["p2p_addrs"], json!([server.p2p]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_refused_and_the_right_one_re_enrolls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let client = HttpsEnrollment::new();
    client
        .enroll(&enroll_request(&server, "bob", "first"))
        .await
        .expect("first enrollment");
    assert_eq!(
        client
            .enroll(&enroll_request(&server, "bob", "second"))
            .await
            .err(),
        Some(EnrollError::InvalidCredentials)
    );
    let device = Device::new();
    let answer = https(&server)
        .post_json(
            "/v1/enroll",
            &json!({"username": "bob", "password": "second", "csr_pem": device.csr()}),
        )
        .await;
    answer.assert_error(401, "invalid_credentials");
    assert!(answer.json().get("certificate_pem").is_none());
    client
        .enroll(&enroll_request(&server, "bob", "first"))
        .await
        .expect("right password re-enrolls");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_usernames_and_passwords_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let csr = Device::new().csr();
    let long = "a".repeat(300);
    for bad in ["Alice", "\u{430}lice", long.as_str(), "../x", "ab", ""] {
        let answer = https(&server)
            .post_json(
                "/v1/enroll",
                &json!({"username": bad, "password": "pw", "csr_pem": csr}),
            )
            .await;
        answer.assert_error(400, "invalid_username");
    }
    for bad in [String::new(), "p".repeat(1025)] {
        let answer = https(&server)
            .post_json(
                "/v1/enroll",
                &json!({"username": "carol", "password": bad, "csr_pem": csr}),
            )
            .await;
        answer.assert_error(400, "invalid_password");
    }
    let answer = https(&server)
        .post_json(
            "/v1/enroll",
            &json!({"username": "carol", "password": "p".repeat(1024), "csr_pem": csr}),
        )
        .await;
    assert_eq!(
        answer.status, 200,
        "a 1024-byte password is fine: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_csrs_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let good = Device::new().csr();
    let (_, block) = x509_parser::pem::parse_x509_pem(good.as_bytes()).expect("PEM");
    let mut der = block.contents;
    let last = der.len() - 1;
    der[last] ^= 0x40;
    let tampered =
        parley_rendezvous::ca::pem_certificate(&der).replace("CERTIFICATE", "CERTIFICATE REQUEST");
    let p256 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256");
    let mut params = rcgen::CertificateParams::default();
    params.custom_extensions.push(csr::x25519_ext(&[3; 32]));
    let not_ed25519 = params
        .serialize_request(&p256)
        .expect("CSR")
        .pem()
        .expect("PEM");
    for (what, csr) in [
        (
            "garbage",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_owned(),
        ),
        ("not PEM", "hello".to_owned()),
        ("tampered", tampered),
        ("P-256", not_ed25519),
    ] {
        let answer = https(&server)
            .post_json(
                "/v1/enroll",
                &json!({"username": "dave", "password": "pw", "csr_pem": csr}),
            )
            .await;
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        answer.assert_error(400, "invalid_csr");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_key_serves_one_username_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let csr = Device::new().csr();
    let first = https(&server)
        .post_json(
            "/v1/enroll",
            &json!({"username": "erin", "password": "pw", "csr_pem": csr}),
        )
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = https(&server)
        .post_json(
            "/v1/enroll",
            &json!({"username": "erin", "password": "pw", "csr_pem": csr}),
        )
        .await;
    assert_eq!(
        again.status, 200,
        "the same user may present the same key again: {again:?}"
    );
    https(&server)
        .post_json(
            "/v1/enroll",
            &json!({"username": "frank", "password": "pw", "csr_pem": csr}),
        )
        .await
        .assert_error(409, "key_in_use");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_malformed_and_mistyped_bodies_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let big = vec![b'a'; 65 * 1024];
    // Declared too large: refused from the headers alone.
    https(&server)
        .raw(
            &format!(
                "POST /v1/enroll HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
                big.len()
            ),
            b"",
        )
        .await
        .assert_error(413, "body_too_large");
    // Not declared (chunked): refused once 64 KiB were read.
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    https(&server).raw("POST /v1/enroll HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
        &chunked,
    )
    .await
    .assert_error(413, "body_too_large");
    https(&server)
        .request("POST", "/v1/enroll", "application/json", b"{\"username\": ")
        .await
        .assert_error(400, "invalid_json");
    https(&server)
        .request(
            "POST",
            "/v1/enroll",
            "application/json",
            br#"{"username":"x","password":"y","csr_pem":"z","admin":true}"#,
        )
        .await
        .assert_error(400, "invalid_json");
    // The body is read as JSON whatever the Content-Type says (curl's default is a form type).
    https(&server)
        .request("POST", "/v1/enroll", "text/plain", b"{}")
        .await
        .assert_error(400, "invalid_json");
}

#[tokio::test(flavor = "multi_thread")]
async fn of_eight_concurrent_enrollments_of_a_new_name_exactly_one_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = std::sync::Arc::new(common::start(dir.path(), &[]));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let csr = Device::new().csr();
            https(&server)
                .post_json(
                    "/v1/enroll",
                    &json!({"username": "race", "password": format!("pw{i}"), "csr_pem": csr}),
                )
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let answer = task.await.expect("task");
        match answer.status {
            200 => ok += 1,
            401 => answer.assert_error(401, "invalid_credentials"),
            409 => answer.assert_error(409, "username_taken"),
            other => panic!("unexpected {other}: {answer:?}"),
        }
    }
    assert_eq!(ok, 1, "exactly one enrollment wins");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_the_ca_and_the_users() {
    let parent = tempfile::tempdir().expect("temp dir");
    let data = parent.path().join("data");
    let server = common::start(&data, &[]);
    let fingerprint = ca_pin(&server);
    HttpsEnrollment::new()
        .enroll(&enroll_request(&server, "gina", "kept"))
        .await
        .expect("enrolls");
    let status = server.stop();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let server = common::start(&data, &[]);
    assert_eq!(ca_pin(&server), fingerprint, "same CA after restart");
    let client = HttpsEnrollment::new();
    assert_eq!(
        client
            .enroll(&enroll_request(&server, "gina", "other"))
            .await
            .err(),
        Some(EnrollError::InvalidCredentials)
    );
    client
        .enroll(&enroll_request(&server, "gina", "kept"))
        .await
        .expect("same password still works");
    let mode = std::fs::metadata(data.join("ca-key.pem"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "ca-key.pem is private");
    let mode = std::fs::metadata(&data)
        .expect("data dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the data folder is private");
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_sharing_a_ca_key_print_the_same_fingerprint() {
    let first = tempfile::tempdir().expect("temp dir");
    let second = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("temp dir");
    let key = keys.path().join("shared-ca.pem");
    let secret = parley_rendezvous::ca::random_secret();
    let pem = parley_rendezvous::ca::key_pair(&secret)
        .expect("key")
        .serialize_pem();
    std::fs::write(&key, pem).expect("write key");
    let key_arg = key.to_str().expect("UTF-8 path");
    let a = common::start(first.path(), &["--ca-key", key_arg]);
    let b = common::start(second.path(), &["--ca-key", key_arg]);
    assert_eq!(ca_pin(&a), ca_pin(&b));
    assert!(
        !first.path().join("ca-key.pem").exists(),
        "nothing is written for a given key"
    );
    // A certificate from one instance chains to the CA the other presents.
    let identity = HttpsEnrollment::new()
        .enroll(&enroll_request(&a, "hank", "pw"))
        .await
        .expect("enrolls");
    assert_eq!(
        parley_rendezvous::ca::fingerprint(&identity.ca_der),
        Some(ca_pin(&b))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_ca_and_unknown_routes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let health = https(&server).raw("GET /healthz HTTP/1.1", b"").await;
    assert_eq!(health.status, 200);
    assert_eq!(String::from_utf8_lossy(&health.body).trim(), "ok");
    let ca = https(&server).raw("GET /v1/ca HTTP/1.1", b"").await;
    assert_eq!(ca.status, 200);
    assert!(
        ca.headers
            .to_ascii_lowercase()
            .contains("content-type: application/x-pem-file")
    );
    let der: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_slice(&ca.body).expect("PEM CA");
    assert_eq!(
        parley_rendezvous::ca::fingerprint(&der),
        Some(ca_pin(&server))
    );
    https(&server)
        .raw("GET /nowhere HTTP/1.1", b"")
        .await
        .assert_error(404, "not_found");
    let wrong = https(&server).raw("GET /v1/enroll HTTP/1.1", b"").await;
    wrong.assert_error(405, "method_not_allowed");
    assert!(wrong.headers.to_ascii_lowercase().contains("allow: post"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_1_2_client_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    // The workspace's rustls has no `tls12` feature, so a TLS 1.2-only ClientHello is written
    // by hand: legacy_version 1.2, no supported_versions extension, ECDHE-ECDSA-AES128-GCM.
    let hello = tls12_client_hello();
    let mut tcp = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    tcp.write_all(&hello).await.expect("send ClientHello");
    let mut answer = [0u8; 7];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_exact(&mut answer),
    )
    .await
    .expect("an answer within 10 s")
    .expect("an alert");
    assert_eq!(
        answer[0], 0x15,
        "a TLS alert record, not a ServerHello: {answer:?}"
    );
    assert_eq!(answer[5], 2, "fatal");
    assert_eq!(answer[6], 70, "protocol_version");
}

fn tls12_client_hello() -> Vec<u8> {
    let extensions: Vec<u8> = [
        &[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d][..], // supported_groups: x25519
        &[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00][..],             // ec_point_formats: uncompressed
        &[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x08, 0x07, 0x04, 0x03][..], // sig algs
    ]
    .concat();
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0xc0, 0x2b]); // cipher suites
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(
        &u16::try_from(extensions.len())
            .expect("small")
            .to_be_bytes(),
    );
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).expect("small").to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn startup_and_usage_errors_exit_1_and_2_with_a_sentence() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_parley-rendezvous"))
        .arg("--data")
        .arg(dir.path())
        .args(["--https", &addr, "--p2p", "/ip4/127.0.0.1/tcp/0"])
        .env("RUST_LOG", "off")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "nothing on stdout: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        format!("cannot listen on {addr}: address in use; choose another --https address")
    );
    let usage = std::process::Command::new(env!("CARGO_BIN_EXE_parley-rendezvous"))
        .args(["--https", "not-an-address"])
        .output()
        .expect("runs");
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enrolled_peer_cannot_pose_as_the_rendezvous() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let peer = HttpsEnrollment::new()
        .enroll(&enroll_request(&server, "ivan", "pw"))
        .await
        .expect("enrolls");
    // Ivan serves HTTPS with his own CA-signed certificate and the real CA behind it.
    let chain = vec![
        rustls_pki_types::CertificateDer::from(peer.certificate_der.clone()),
        rustls_pki_types::CertificateDer::from(peer.ca_der.clone()),
    ];
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(
        parley_domain::pki::ed25519_pkcs8(&peer.ed25519).into(),
    );
    let tls = parley_rendezvous::https::tls_config(chain, key).expect("TLS config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let impostor = tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    let request = EnrollRequest {
        server: format!("https://{addr}"),
        user: name("victim"),
        password: Password::new("secret".into()),
        ca_pin: Some(ca_pin(&server)),
        keys: None,
        totp: None,
    };
    let result = HttpsEnrollment::new().enroll(&request).await;
    assert!(
        matches!(&result, Err(EnrollError::Failed(m)) if m.contains("does not name the rendezvous")),
        "{result:?}"
    );
    impostor.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn announce_replaces_the_addresses_and_a_new_ca_key_gets_a_new_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let own = common::start(dir.path(), &[]);
    let own_fingerprint = ca_pin(&own);
    let peer_id = own.p2p.rsplit('/').next().expect("peer id").to_owned();
    assert!(own.stop().success());

    let keys = tempfile::tempdir().expect("temp dir");
    let key = keys.path().join("ca.pem");
    let pem = parley_rendezvous::ca::key_pair(&parley_rendezvous::ca::random_secret())
        .expect("key")
        .serialize_pem();
    std::fs::write(&key, pem).expect("write key");
    let announced = "/dns4/rendezvous.example/tcp/4001";
    let server = common::start(
        dir.path(),
        &[
            "--ca-key",
            key.to_str().expect("UTF-8"),
            "--announce",
            announced,
        ],
    );
    assert_ne!(
        ca_pin(&server),
        own_fingerprint,
        "the certificate follows the given key"
    );
    assert_eq!(
        server.p2p,
        format!("{announced}/p2p/{peer_id}"),
        "same peer id, announced address"
    );
    let identity = HttpsEnrollment::new()
        .enroll(&enroll_request(&server, "judy", "pw"))
        .await
        .expect("enrolls");
    assert_eq!(identity.rendezvous_addrs, vec![server.p2p.clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csr_without_an_x25519_key_gets_a_policy_certificate_without_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let device = Device::new();
    let csr = device.csr_with(|p| p.custom_extensions.clear());
    let answer = https(&server)
        .post_json(
            "/v1/enroll",
            &json!({"username": "plain", "password": "pw", "csr_pem": csr}),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let json = answer.json();
    assert_policy(
        &pem_der(&json, "certificate_pem"),
        &pem_der(&json, "ca_pem"),
        "plain",
        device.key.public_key_raw(),
        None,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_enrollments_by_outcome_and_name_nobody() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    let csr = Device::new().csr();
    for password in ["right", "wrong"] {
        https(&server)
            .post_json(
                "/v1/enroll",
                &json!({"username": "metered", "password": password, "csr_pem": csr}),
            )
            .await;
    }
    let metrics = https(&server).raw("GET /metrics HTTP/1.1", b"").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "parley_enrollments_total{outcome=\"issued\"} 1",
        "parley_enrollments_total{outcome=\"invalid_credentials\"} 1",
        "parley_lookups_total 0",
        "parley_connected_peers 0",
        "# TYPE parley_refusals_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("metered"), "metrics name no user");
}
