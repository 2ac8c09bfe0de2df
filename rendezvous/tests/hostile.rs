//! Hostile input to the enrollment API, as one table: each row is sent to the real binary over
//! real TLS and must get exactly its status and `code`. Afterwards the server still answers,
//! its memory stayed bounded (also under a flood of large bodies), and every certificate it
//! issued during the run is a leaf for exactly the enrolled user.

mod common;
mod csr;

use std::path::Path;
use std::time::{Duration, Instant};

use common::https;
use csr::Device;
use parley_domain::pki::{RENDEZVOUS_URI, user_uri};
use parley_testkit::{
    Rendezvous,
    https::{Answer, read_answer},
    tools::tool_available,
};
use rcgen::{BasicConstraints, CustomExtension, IsCa, KeyPair, KeyUsagePurpose, SanType};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Resident memory the server may reach during the whole run (debug build). It idles near
/// 20 MiB; Argon2id holds 19 MiB on each of its two threads once used; the rest is sled's
/// cache and buffers of connections in flight (at most 64 KiB of body and 64 KiB of head each).
const RSS_BOUND_KIB: u64 = 128 * 1024;

/// How a row is sent.
enum Send {
    /// `POST /v1/enroll` with this JSON.
    Json(serde_json::Value),
    /// `POST /v1/enroll` with these bytes and their true `Content-Length`.
    Body(Vec<u8>),
    /// The request line and headers (no final blank line), then these body bytes.
    Raw(String, Vec<u8>),
    /// The request line and headers, then the body in pieces with a pause between them.
    Trickle(String, Vec<Vec<u8>>, Duration),
}

struct Row {
    name: String,
    send: Send,
    status: u16,
    /// The error code; empty for a 200.
    code: &'static str,
}

fn row(name: impl Into<String>, send: Send, status: u16, code: &'static str) -> Row {
    Row {
        name: name.into(),
        send,
        status,
        code,
    }
}

fn enroll(user: &str, password: &str, csr: &str) -> Send {
    Send::Json(json!({"username": user, "password": password, "csr_pem": csr}))
}

fn post(content_length: &str) -> String {
    format!(
        "POST /v1/enroll HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {content_length}"
    )
}

fn pem(label: &str, der: &[u8]) -> String {
    parley_rendezvous::ca::pem_certificate(der).replace("CERTIFICATE", label)
}

fn der_of(csr: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(csr.as_bytes())
        .expect("a PEM CSR")
        .1
        .contents
}

/// A CSR made by the `openssl` CLI with `-newkey <newkey>` in `dir` (the key stays there and
/// is deleted with it), or `None` when openssl is not installed.
fn openssl_csr(dir: &Path, tag: &str, newkey: &[&str]) -> Option<String> {
    if !tool_available("openssl", "openssl") {
        return None;
    }
    let out = dir.join(format!("{tag}.csr"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", "/CN=hostile", "-newkey"])
        .args(newkey)
        .arg("-keyout")
        .arg(dir.join(format!("{tag}.key")))
        .arg("-out")
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl made no {tag} CSR");
    Some(std::fs::read_to_string(out).expect("the CSR file"))
}

fn table(keys_dir: &Path) -> Vec<Row> {
    let alice = Device::new();
    let bob = Device::new();
    let fresh = || Device::new().csr();
    let wish = |shape: &dyn Fn(&mut rcgen::CertificateParams)| Device::new().csr_with(shape);
    let good = fresh();
    let good_der = der_of(&good);
    let mut rows = vec![
        // Controls first: they enroll the names the rows below lean on.
        row(
            "control: a plain CSR enrolls alice",
            enroll("alice", "alice-pw", &alice.csr()),
            200,
            "",
        ),
        row(
            "control: a CSR naming exactly its own user enrolls bob",
            enroll(
                "bob",
                "bob-pw",
                &bob.csr_with(|p| {
                    p.subject_alt_names = vec![SanType::URI(
                        user_uri(&csr::name("bob")).try_into().expect("URI"),
                    )];
                }),
            ),
            200,
            "",
        ),
        row(
            "control: alice re-enrolls with her password",
            enroll("alice", "alice-pw", &alice.csr()),
            200,
            "",
        ),
        // PEM and DER.
        row("CSR: empty", enroll("csr-a", "pw", ""), 400, "invalid_csr"),
        row(
            "CSR: garbage text",
            enroll("csr-a", "pw", "hello, certificate authority"),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: base64 garbage in a CSR block",
            enroll(
                "csr-a",
                "pw",
                &pem("CERTIFICATE REQUEST", b"\x30\x03\x02\x01"),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: PEM cut in half",
            enroll("csr-a", "pw", &good[..good.len() / 2]),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: DER cut in half",
            enroll(
                "csr-a",
                "pw",
                &pem("CERTIFICATE REQUEST", &good_der[..good_der.len() / 2]),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: wrong label CERTIFICATE",
            enroll(
                "csr-a",
                "pw",
                &good.replace("CERTIFICATE REQUEST", "CERTIFICATE"),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: wrong label PUBLIC KEY",
            enroll(
                "csr-a",
                "pw",
                &good.replace("CERTIFICATE REQUEST", "PUBLIC KEY"),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: legacy label NEW CERTIFICATE REQUEST",
            enroll(
                "csr-a",
                "pw",
                &good.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: trailing bytes after the PEM block",
            enroll("csr-a", "pw", &format!("{good}trailing")),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: text before the PEM block",
            enroll("csr-a", "pw", &format!("hello\n{good}")),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: two PEM blocks",
            enroll("csr-a", "pw", &format!("{good}{}", fresh())),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: trailing byte inside the DER",
            enroll(
                "csr-a",
                "pw",
                &pem("CERTIFICATE REQUEST", &[&good_der[..], &[0]].concat()),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: signature bit flipped",
            enroll("csr-a", "pw", &{
                let mut der = good_der.clone();
                let last = der.len() - 1;
                der[last] ^= 0x01;
                pem("CERTIFICATE REQUEST", &der)
            }),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: another key put in place of the signer's",
            enroll("csr-a", "pw", &{
                let signer = Device::new();
                let csr = der_of(&signer.csr());
                let (from, to) = (
                    signer.key.public_key_raw(),
                    Device::new().key.public_key_raw().to_vec(),
                );
                let at = csr
                    .windows(32)
                    .position(|w| w == from)
                    .expect("the key in the DER");
                let mut der = csr.clone();
                der[at..at + 32].copy_from_slice(&to);
                pem("CERTIFICATE REQUEST", &der)
            }),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: P-256 key",
            enroll("csr-a", "pw", &{
                let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256");
                rcgen::CertificateParams::default()
                    .serialize_request(&key)
                    .expect("CSR")
                    .pem()
                    .expect("PEM")
            }),
            400,
            "invalid_csr",
        ),
        // Wishes beyond the policy.
        row(
            "CSR: asks for CA:true",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for CA:true with a path length",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for keyCertSign",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    p.key_usages = vec![
                        KeyUsagePurpose::DigitalSignature,
                        KeyUsagePurpose::KeyCertSign,
                    ]
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for cRLSign",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| p.key_usages = vec![KeyUsagePurpose::CrlSign]),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for 100 SANs",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    p.subject_alt_names = (0..100)
                        .map(|i| {
                            SanType::URI(format!("parley://user/u{i:03}").try_into().expect("URI"))
                        })
                        .collect();
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for its own name twice",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    let own = SanType::URI(user_uri(&csr::name("csr-a")).try_into().expect("URI"));
                    p.subject_alt_names = vec![own.clone(), own];
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for another user's name",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    p.subject_alt_names =
                        vec![SanType::URI("parley://user/alice".try_into().expect("URI"))]
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for the rendezvous's name",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    p.subject_alt_names =
                        vec![SanType::URI(RENDEZVOUS_URI.try_into().expect("URI"))]
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for a DNS name",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    p.subject_alt_names = vec![SanType::DnsName(
                        "rendezvous.example".try_into().expect("DNS"),
                    )]
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for an IP address",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    p.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().expect("IP"))]
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for a century of validity (privateKeyUsagePeriod to 2126)",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    let mut content = vec![0x30, 0x11, 0x81, 0x0f];
                    content.extend_from_slice(b"21261201000000Z");
                    p.custom_extensions
                        .push(CustomExtension::from_oid_content(&[2, 5, 29, 16], content));
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: asks for name constraints",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    p.custom_extensions.push(CustomExtension::from_oid_content(
                        &[2, 5, 29, 30],
                        vec![0x30, 0x00],
                    ))
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: an unknown critical extension",
            enroll(
                "csr-a",
                "pw",
                &wish(&|p| {
                    let mut ext = CustomExtension::from_oid_content(
                        &[1, 3, 6, 1, 4, 1, 99999, 1],
                        vec![0x05, 0x00],
                    );
                    ext.set_criticality(true);
                    p.custom_extensions.push(ext);
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: X25519 extension of 31 bytes",
            enroll(
                "csr-a",
                "pw",
                &Device::new().csr_with(|p| {
                    p.custom_extensions = vec![CustomExtension::from_oid_content(
                        parley_domain::pki::X25519_EXTENSION_OID,
                        [&[0x04, 0x1f][..], &[9; 31]].concat(),
                    )];
                }),
            ),
            400,
            "invalid_csr",
        ),
        row(
            "CSR: X25519 extension twice",
            enroll(
                "csr-a",
                "pw",
                &Device::new().csr_with(|p| p.custom_extensions.push(csr::x25519_ext(&[4; 32]))),
            ),
            400,
            "invalid_csr",
        ),
        // Keys and names already in the registry.
        row(
            "key bound to alice, offered for a new name",
            enroll("keythief", "pw", &alice.csr()),
            409,
            "key_in_use",
        ),
        row(
            "key bound to alice, offered for bob with a wrong password",
            enroll("bob", "wrong", &alice.csr()),
            409,
            "key_in_use",
        ),
        row(
            "key bound to alice, offered for bob with bob's password",
            enroll("bob", "bob-pw", &alice.csr()),
            409,
            "key_in_use",
        ),
        row(
            "alice's own key with a wrong password",
            enroll("alice", "wrong", &alice.csr()),
            401,
            "invalid_credentials",
        ),
        row(
            "a new key for alice with a wrong password",
            enroll("alice", "wrong", &fresh()),
            401,
            "invalid_credentials",
        ),
        row(
            "alice, wrong password and a bad CSR: the CSR is refused first",
            enroll("alice", "wrong", "garbage"),
            400,
            "invalid_csr",
        ),
        // Passwords: refused before any hashing.
        row(
            "password: empty",
            enroll("alice", "", &alice.csr()),
            400,
            "invalid_password",
        ),
        row(
            "password: 1025 bytes",
            enroll("alice", &"p".repeat(1025), &alice.csr()),
            400,
            "invalid_password",
        ),
        row(
            "password: 600 characters, 1200 bytes",
            enroll("alice", &"é".repeat(600), &alice.csr()),
            400,
            "invalid_password",
        ),
        row(
            "password: 60 KiB",
            enroll("newname", &"p".repeat(60 * 1024), &fresh()),
            400,
            "invalid_password",
        ),
    ];
    // Usernames: confusables, layout tricks, paths, control characters, lengths.
    for (what, name) in [
        ("upper case", "Alice".to_owned()),
        ("all upper case", "ALICE".to_owned()),
        ("Cyrillic а", "\u{430}lice".to_owned()),
        ("Greek omicron", "b\u{3bf}b".to_owned()),
        ("dotless i", "al\u{131}ce".to_owned()),
        (
            "full-width letters",
            "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}".to_owned(),
        ),
        ("zero-width joiner", "ali\u{200d}ce".to_owned()),
        ("zero-width space", "ali\u{200b}ce".to_owned()),
        ("right-to-left mark", "\u{200f}alice".to_owned()),
        ("right-to-left override", "\u{202e}ecila".to_owned()),
        ("combining accent", "alice\u{301}".to_owned()),
        ("emoji", "\u{1f600}\u{1f600}\u{1f600}".to_owned()),
        ("../", "../etc".to_owned()),
        ("percent-encoded ../", "%2e%2e%2f".to_owned()),
        ("a slash", "a/b".to_owned()),
        ("a dot", "alice.bob".to_owned()),
        ("an e-mail address", "alice@example.org".to_owned()),
        ("NUL", "al\u{0}ice".to_owned()),
        ("a newline", "alice\n".to_owned()),
        ("a leading space", " alice".to_owned()),
        ("300 characters", "a".repeat(300)),
        ("33 characters", "a".repeat(33)),
        ("2 characters", "ab".to_owned()),
        ("empty", String::new()),
    ] {
        rows.push(row(
            format!("username: {what}"),
            enroll(&name, "pw", &fresh()),
            400,
            "invalid_username",
        ));
    }
    // Other key types, made by the openssl CLI at run time.
    for (tag, what, newkey) in [
        ("rsa1024", "RSA-1024 key", &["rsa:1024"][..]),
        (
            "p192",
            "P-192 key",
            &["ec", "-pkeyopt", "ec_paramgen_curve:prime192v1"][..],
        ),
        ("ed448", "Ed448 key", &["ed448"][..]),
    ] {
        if let Some(csr) = openssl_csr(keys_dir, tag, newkey) {
            rows.push(row(
                format!("CSR: {what}"),
                enroll("csr-b", "pw", &csr),
                400,
                "invalid_csr",
            ));
        }
    }
    // Bodies that are not the expected JSON.
    let valid = json!({"username": "jsonuser", "password": "pw", "csr_pem": good}).to_string();
    for (what, body) in [
        ("empty", Vec::new()),
        ("null", b"null".to_vec()),
        ("an array", b"[]".to_vec()),
        ("a string", b"\"enroll me\"".to_vec()),
        ("binary garbage", vec![0xff, 0xfe, 0x00, 0x80, 0x7b]),
        (
            "invalid UTF-8 in a string",
            b"{\"username\":\"\xc3\x28\",\"password\":\"pw\",\"csr_pem\":\"x\"}".to_vec(),
        ),
        (
            "a byte-order mark",
            [&b"\xef\xbb\xbf"[..], valid.as_bytes()].concat(),
        ),
        (
            "trailing bytes after the JSON",
            format!("{valid} trailing").into_bytes(),
        ),
        (
            "an unknown field",
            br#"{"username":"x","password":"y","csr_pem":"z","admin":true}"#.to_vec(),
        ),
        (
            "a missing field",
            br#"{"username":"x","password":"y"}"#.to_vec(),
        ),
        (
            "a number for the username",
            br#"{"username":7,"password":"y","csr_pem":"z"}"#.to_vec(),
        ),
        (
            "the username twice",
            br#"{"username":"alice","username":"bob","password":"y","csr_pem":"z"}"#.to_vec(),
        ),
        (
            "nesting 10000 deep",
            [vec![b'['; 10_000], vec![b']'; 10_000]].concat(),
        ),
        ("a form", b"username=alice&password=pw".to_vec()),
    ] {
        rows.push(row(
            format!("body: {what}"),
            Send::Body(body),
            400,
            "invalid_json",
        ));
    }
    // Sizes, lying lengths and slow bodies (the server runs with a 1 s body timeout).
    let big = vec![b'a'; 65 * 1024];
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    rows.extend([
        row(
            "size: Content-Length 65 KiB",
            Send::Raw(post("66560"), Vec::new()),
            413,
            "body_too_large",
        ),
        row(
            "size: Content-Length of a terabyte",
            Send::Raw(post("1000000000000"), Vec::new()),
            413,
            "body_too_large",
        ),
        row(
            "size: 65 KiB chunked without a length",
            Send::Raw(
                "POST /v1/enroll HTTP/1.1\r\nTransfer-Encoding: chunked".to_owned(),
                chunked,
            ),
            413,
            "body_too_large",
        ),
        row(
            "Content-Length says 500, 100 bytes come, then nothing",
            Send::Raw(post("500"), vec![b' '; 100]),
            408,
            "request_timeout",
        ),
        row(
            "Content-Length says 20, a whole valid request follows",
            Send::Raw(post("20"), valid.clone().into_bytes()),
            400,
            "invalid_json",
        ),
        row(
            "slow body: 10 bytes every 300 ms",
            Send::Trickle(
                post("200"),
                vec![vec![b' '; 10]; 20],
                Duration::from_millis(300),
            ),
            408,
            "request_timeout",
        ),
        row(
            "slow body: a chunk that never ends",
            Send::Raw(
                "POST /v1/enroll HTTP/1.1\r\nTransfer-Encoding: chunked".to_owned(),
                b"100\r\n{\"username\"".to_vec(),
            ),
            408,
            "request_timeout",
        ),
    ]);
    // Routes and methods.
    for (what, line, status, code) in [
        (
            "GET on the enrollment",
            "GET /v1/enroll HTTP/1.1",
            405,
            "method_not_allowed",
        ),
        (
            "PUT on the enrollment",
            "PUT /v1/enroll HTTP/1.1",
            405,
            "method_not_allowed",
        ),
        (
            "DELETE on the CA",
            "DELETE /v1/ca HTTP/1.1",
            405,
            "method_not_allowed",
        ),
        (
            "POST on the health check",
            "POST /healthz HTTP/1.1",
            405,
            "method_not_allowed",
        ),
        (
            "a trailing slash",
            "POST /v1/enroll/ HTTP/1.1",
            404,
            "not_found",
        ),
        (
            "upper-case path",
            "POST /V1/ENROLL HTTP/1.1",
            404,
            "not_found",
        ),
        (
            "dot segments",
            "POST /v1/../v1/enroll HTTP/1.1",
            404,
            "not_found",
        ),
        (
            "an encoded NUL",
            "POST /v1/enroll%00 HTTP/1.1",
            404,
            "not_found",
        ),
    ] {
        rows.push(row(
            format!("route: {what}"),
            Send::Raw(format!("{line}\r\nContent-Length: 0"), Vec::new()),
            status,
            code,
        ));
    }
    rows
}

async fn send(server: &Rendezvous, how: &Send) -> Answer {
    match how {
        Send::Json(json) => https(server).post_json("/v1/enroll", json).await,
        Send::Body(body) => {
            https(server)
                .request("POST", "/v1/enroll", "application/json", body)
                .await
        }
        Send::Raw(head, body) => https(server).raw(head, body).await,
        Send::Trickle(head, pieces, gap) => {
            let mut stream = https(server).tls().await;
            let head = format!(
                "{head}\r\nHost: {}\r\nConnection: close\r\n\r\n",
                server.addr
            );
            stream
                .write_all(head.as_bytes())
                .await
                .expect("send the head");
            for piece in pieces {
                if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
                    break; // The server answered and closed.
                }
                tokio::time::sleep(*gap).await;
            }
            read_answer(&mut stream).await
        }
    }
}

/// Checks that a certificate issued during the run is a leaf for `user` only.
fn assert_leaf_for(pem: &str, user: &str) {
    let der = der_of(pem);
    let (_, cert) = X509Certificate::from_der(&der).expect("the certificate parses");
    assert!(!cert.is_ca(), "{user}: CA:false");
    let bc = cert.basic_constraints().expect("one basicConstraints");
    assert!(bc.is_none_or(|bc| !bc.value.ca), "{user}: CA:false");
    let ku = cert.key_usage().expect("one keyUsage");
    assert!(
        ku.is_none_or(|ku| !ku.value.key_cert_sign() && !ku.value.crl_sign()),
        "{user}: no keyCertSign or cRLSign"
    );
    let san = cert
        .subject_alternative_name()
        .expect("one SAN extension")
        .expect("a SAN");
    let uri = user_uri(&csr::name(user));
    assert!(
        matches!(san.value.general_names.as_slice(), [GeneralName::URI(u)] if *u == uri),
        "{user}: exactly the enrolled user's URI, got {:?}",
        san.value.general_names
    );
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert!(
        days <= 31,
        "{user}: a short-lived certificate, not {days} days"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_request_gets_its_4xx_and_the_server_stays_up_and_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("temp dir for openssl's throwaway keys");
    let server = common::start(
        dir.path(),
        &[
            "--enroll-burst",
            "100000",
            "--enroll-per-minute",
            "100000",
            "--body-timeout-secs",
            "1",
            "--max-connections-per-source",
            "64",
        ],
    );
    let rows = table(keys.path());
    assert!(rows.len() >= 50, "only {} rows", rows.len());
    let rss_start = server.rss_kib();
    let mut rss_peak = rss_start;
    let mut issued = Vec::new();
    let started = Instant::now();
    for row in &rows {
        let answer = send(&server, &row.send).await;
        if row.status == 200 {
            assert_eq!(answer.status, 200, "{}: {answer:?}", row.name);
            let Send::Json(body) = &row.send else {
                panic!("{}: only JSON rows enroll", row.name)
            };
            let user = body["username"].as_str().expect("a username").to_owned();
            let cert = answer.json()["certificate_pem"]
                .as_str()
                .expect("a certificate")
                .to_owned();
            issued.push((user, cert));
        } else {
            assert_eq!(answer.status, row.status, "{}: {answer:?}", row.name);
            let json = answer.json();
            assert_eq!(json["code"], row.code, "{}: {json}", row.name);
            assert!(
                json["error"]
                    .as_str()
                    .is_some_and(|e| e.ends_with('.') && e.len() > 20),
                "{}: one sentence: {json}",
                row.name
            );
            assert!(
                json.get("certificate_pem").is_none(),
                "{}: no certificate",
                row.name
            );
        }
        rss_peak = rss_peak.max(server.rss_kib());
    }
    eprintln!(
        "hostile table: {} rows in {:.1} s; RSS {} KiB at start, peak {} KiB",
        rows.len(),
        started.elapsed().as_secs_f64(),
        rss_start,
        rss_peak
    );

    // A flood: 64 connections at once, each with a 63 KiB body that is not JSON.
    let server = std::sync::Arc::new(server);
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let server = std::sync::Arc::clone(&server);
        flood.spawn(async move {
            https(&server)
                .request(
                    "POST",
                    "/v1/enroll",
                    "application/json",
                    &vec![b'{'; 63 * 1024],
                )
                .await
        });
    }
    let rss_watch = {
        let pid = server.pid();
        tokio::spawn(async move {
            let mut peak = 0;
            for _ in 0..50 {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let rss = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        .unwrap_or(0);
                    peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    while let Some(answer) = flood.join_next().await {
        answer
            .expect("flood task")
            .assert_error(400, "invalid_json");
    }
    rss_peak = rss_peak.max(rss_watch.await.expect("RSS watcher"));
    let rss_end = server.rss_kib();
    eprintln!("after a flood of 64 × 63 KiB bodies: peak {rss_peak} KiB, now {rss_end} KiB");

    let health = https(&server).raw("GET /healthz HTTP/1.1", b"").await;
    assert_eq!(health.status, 200, "the server still answers: {health:?}");
    assert!(
        rss_peak < RSS_BOUND_KIB,
        "resident memory reached {rss_peak} KiB, over the {RSS_BOUND_KIB} KiB bound"
    );
    assert_eq!(issued.len(), 3, "only the controls enrolled");
    for (user, cert) in &issued {
        assert_leaf_for(cert, user);
    }
}
