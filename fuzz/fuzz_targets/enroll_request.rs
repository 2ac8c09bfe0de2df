//! The body of `POST /v1/enroll` at the rendezvous: JSON, then the checks at the edge
//! (username, password, CSR), as `rendezvous::api::decode_enroll_body` runs them.
//!
//! Invariants, against a plain reading of the same JSON: the body is refused as
//! `invalid_json` exactly when it is not an object of the three string fields (and, optional,
//! the second-factor code, a string or null); otherwise the
//! first rule broken names the refusal (username, then password, then CSR), and an accepted
//! request carries the username, password and code it was sent, a password of 1 to 1024 bytes,
//! and the keys the CSR parser reads from its CSR.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_domain::Username;
use parley_rendezvous::api::decode_enroll_body;
use parley_rendezvous::csr;
use parley_rendezvous::service::MAX_PASSWORD_BYTES;
use serde::Deserialize;

/// The body as the protocol documents it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    username: String,
    password: String,
    csr_pem: String,
    #[serde(default)]
    totp: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    let decoded = decode_enroll_body(data);
    let Ok(body) = serde_json::from_slice::<Body>(data) else {
        assert!(
            matches!(decoded, Err("invalid_json")),
            "a body that is not the documented JSON was not refused as invalid_json"
        );
        return;
    };
    let user = Username::parse(&body.username);
    let password_ok = !body.password.is_empty() && body.password.len() <= MAX_PASSWORD_BYTES;
    let keys = user.as_ref().ok().map(|u| csr::parse(&body.csr_pem, u));
    match decoded {
        Ok(request) => {
            assert_eq!(request.user.as_str(), body.username);
            assert_eq!(request.password.expose(), body.password);
            assert_eq!(request.totp, body.totp, "the code is not the one sent");
            assert!(password_ok, "a password out of bounds was accepted");
            assert_eq!(keys, Some(Ok(request.keys)), "the keys are not the CSR's");
        }
        Err(code) => {
            let expected = if user.is_err() {
                "invalid_username"
            } else if !password_ok {
                "invalid_password"
            } else if matches!(keys, Some(Err(_))) {
                "invalid_csr"
            } else {
                panic!("a valid body was refused as {code}")
            };
            assert_eq!(
                code, expected,
                "the refusal does not name the first rule broken"
            );
        }
    }
});
