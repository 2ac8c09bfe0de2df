//! The second factor with real processes: bob's daemon turns it on (`parley totp enable`
//! prints the otpauth:// URI), and from then on `parley enroll` of bob needs a current code
//! in PARLEY_TOTP: none or a wrong one exits 1 with one sentence and leaves no home behind,
//! `oathtool`'s code (an independent RFC 6238 implementation) enrolls a new device of bob, and
//! the same code a second time does not. `parley totp disable` needs a current code too.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Output, Stdio};

use parley_testkit::{Daemon, Rendezvous, enroll, parley, peer::command, stderr, tools};

fn oathtool(secret: &str, ahead: u32) -> String {
    tools::oathtool(secret, ahead)
}

/// `parley enroll` of bob into `home`, with PARLEY_TOTP set to `code` when given.
fn enroll_bob(rv: &Rendezvous, home: &Path, code: Option<&str>) -> Output {
    let mut cmd = command(home);
    cmd.args(["enroll", "--server", &rv.url, "--user", "bob"])
        .args(["--ca-fingerprint", &rv.fingerprint])
        .env("PARLEY_PASSWORD", "pw-bob")
        .env_remove("PARLEY_TOTP")
        .stdin(Stdio::null());
    if let Some(code) = code {
        cmd.env("PARLEY_TOTP", code);
    }
    cmd.output().expect("run parley enroll")
}

fn one_sentence(out: &Output) -> String {
    let text = stderr(out);
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "one sentence on stderr: {text}"
    );
    text
}

#[test]
fn enrolling_a_name_with_the_second_factor_on_needs_a_fresh_code() {
    if tools::on_path("oathtool").is_none() {
        tools::skip("the second-factor test needs oathtool (apt-get install oathtool)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let laptop = dir.path().join("laptop");
    assert!(enroll(&rv, &laptop, "bob", "pw-bob").status.success());
    let _daemon = Daemon::start(&laptop);

    let on = parley(&laptop, &["totp", "enable"]);
    assert!(on.status.success(), "totp enable: {}", stderr(&on));
    let uri = String::from_utf8(on.stdout).unwrap();
    let uri = uri.trim_end();
    assert_eq!(uri.lines().count(), 1, "one line on stdout: {uri}");
    let secret = uri
        .strip_prefix("otpauth://totp/Parley:bob?secret=")
        .and_then(|rest| rest.strip_suffix("&issuer=Parley"))
        .unwrap_or_else(|| panic!("the contract's URI: {uri}"));
    assert!(
        secret.len() == 32
            && secret
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "base32 of 160 bits: {secret}"
    );
    let again = parley(&laptop, &["totp", "enable"]);
    assert_eq!(again.status.code(), Some(1), "a second enable is refused");
    assert!(
        one_sentence(&again).contains("already"),
        "{}",
        stderr(&again)
    );

    // A new device of bob: without a code, with a wrong one, then with oathtool's.
    let desktop = dir.path().join("desktop");
    let out = enroll_bob(&rv, &desktop, None);
    assert_eq!(out.status.code(), Some(1), "no code: {}", stderr(&out));
    assert!(
        one_sentence(&out).contains("second factor") && stderr(&out).contains("PARLEY_TOTP"),
        "says a code is needed: {}",
        stderr(&out)
    );
    assert!(!desktop.exists(), "a refused enrollment leaves no home");
    let code = oathtool(secret, 0);
    let wrong = format!(
        "{:06}",
        (code.parse::<u32>().unwrap() + 500_000) % 1_000_000
    );
    let out = enroll_bob(&rv, &desktop, Some(&wrong));
    assert_eq!(out.status.code(), Some(1), "a wrong code: {}", stderr(&out));
    assert!(
        one_sentence(&out).contains("wrong or was used"),
        "{}",
        stderr(&out)
    );
    let out = enroll_bob(&rv, &desktop, Some(&code));
    assert!(out.status.success(), "the current code: {}", stderr(&out));
    // The same code again, for a third device: used.
    let phone = dir.path().join("phone");
    let out = enroll_bob(&rv, &phone, Some(&code));
    assert_eq!(out.status.code(), Some(1), "a used code: {}", stderr(&out));

    // Off again, with the next code (a malformed one is refused here, before the rendezvous).
    let mut off = command(&laptop);
    off.args(["totp", "disable"])
        .env("PARLEY_TOTP", "12 34")
        .stdin(Stdio::null());
    let out = off.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(one_sentence(&out).contains("6 digits"), "{}", stderr(&out));
    let mut off = command(&laptop);
    off.args(["totp", "disable"])
        .env("PARLEY_TOTP", oathtool(secret, 1))
        .stdin(Stdio::null());
    let out = off.output().unwrap();
    assert!(out.status.success(), "totp disable: {}", stderr(&out));
    let out = enroll_bob(&rv, &phone, None);
    assert!(out.status.success(), "no code needed now: {}", stderr(&out));
}
