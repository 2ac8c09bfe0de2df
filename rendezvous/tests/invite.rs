//! `parley-rendezvous invite`: the invite line the start printed, again, with a QR code of it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

use parley_testkit::{Rendezvous, binary, stderr};

fn invite(args: &[&str]) -> std::process::Output {
    Command::new(binary("parley-rendezvous"))
        .arg("invite")
        .args(args)
        .output()
        .expect("run parley-rendezvous invite")
}

#[test]
fn the_invite_command_prints_the_start_line_and_a_qr_code() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rendezvous");
    let rv = Rendezvous::start(&data);
    let expected = format!("invite: {}", rv.invite);
    let stopped = rv.stop();
    assert!(stopped.success());

    let out = invite(&["--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(expected.as_str()));
    let qr: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    assert!(qr.len() > 10, "a QR block follows: {stdout}");
    let width = qr[0].chars().count();
    assert!(
        qr.iter()
            .all(|l| l.chars().count() == width
                && l.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' '))),
        "the QR block is half blocks of one width: {stdout}"
    );
    assert_eq!(qr.len(), width.div_ceil(2), "square: {stdout}");

    // Another URL on request, the same CA.
    let out = invite(&[
        "--data",
        data.to_str().unwrap(),
        "--server",
        "https://[2001:db8::7]:8443",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let fingerprint = rv_fingerprint(&expected);
    assert_eq!(
        first,
        format!(
            "invite: parley://join?server=https%3A%2F%2F%5B2001%3Adb8%3A%3A7%5D%3A8443&ca={fingerprint}"
        )
    );

    // A folder no rendezvous used, and a URL that is not https: one sentence, exit 1.
    let empty = dir.path().join("empty");
    for args in [
        vec!["--data", empty.to_str().unwrap()],
        vec!["--data", data.to_str().unwrap(), "--server", "http://h:1"],
    ] {
        let out = invite(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_eq!(
            stderr(&out).trim_end().lines().count(),
            1,
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_public_url_goes_into_the_invite_and_a_bad_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .args(&["--public-url", "https://rendezvous.example.org:8443"])
        .start();
    assert!(
        rv.invite
            .starts_with("parley://join?server=https%3A%2F%2Frendezvous.example.org%3A8443&ca="),
        "{}",
        rv.invite
    );
    drop(rv);
    let out = Command::new(binary("parley-rendezvous"))
        .arg("--data")
        .arg(dir.path().join("other"))
        .args(["--https", "127.0.0.1:0", "--p2p", "/ip4/127.0.0.1/tcp/0"])
        .args(["--public-url", "http://h:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--public-url"), "{}", stderr(&out));
}

fn rv_fingerprint(line: &str) -> &str {
    line.rsplit_once("&ca=").map(|(_, ca)| ca).unwrap()
}
