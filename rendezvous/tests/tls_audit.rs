//! The enrollment endpoint speaks TLS 1.3 only, as seen by real external clients: `openssl
//! s_client` for each version, and `sslscan`'s protocol survey. A missing tool fails the test
//! when `CI` is set, and is reported as skipped otherwise.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use parley_testkit::{Log, Rendezvous, tools::tool_available};

/// Runs `command` to its end, killing it after `limit`.
fn run(mut command: Command, limit: Duration) -> Output {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `openssl s_client` negotiated: the protocol and cipher of its `New, …` line, or `None`
/// when no session was established.
fn s_client(addr: &str, version_flag: &str) -> Option<(String, String)> {
    let mut command = Command::new("openssl");
    // SECLEVEL=0 lets OpenSSL 3 really offer TLS 1.0 and 1.1, so their refusal is the server's.
    command.args([
        "s_client",
        version_flag,
        "-connect",
        addr,
        "-cipher",
        "DEFAULT@SECLEVEL=0",
    ]);
    let output = run(command, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384" or "New, (NONE), Cipher is (NONE)".
    let line = stdout.lines().find(|l| l.starts_with("New, "))?;
    let (protocol, cipher) = line.strip_prefix("New, ")?.split_once(", Cipher is ")?;
    let established = output.status.success() && protocol != "(NONE)" && cipher.trim() != "(NONE)";
    established.then(|| (protocol.trim().to_owned(), cipher.trim().to_owned()))
}

#[test]
fn openssl_connects_with_tls_1_3_only() {
    if !tool_available("openssl", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Rendezvous::options(dir.path())
        .env("RUST_LOG", "warn,rustls=error")
        .log(Log::Inherit)
        .start();
    let (protocol, cipher) =
        s_client(&server.addr, "-tls1_3").expect("openssl s_client -tls1_3 establishes a session");
    assert_eq!(protocol, "TLSv1.3");
    assert!(cipher.starts_with("TLS_"), "a TLS 1.3 suite: {cipher}");
    for flag in ["-tls1_2", "-tls1_1", "-tls1"] {
        assert_eq!(
            s_client(&server.addr, flag),
            None,
            "openssl s_client {flag} must be refused"
        );
    }
}

#[test]
fn sslscan_finds_tls_1_3_enabled_and_everything_older_disabled() {
    if !tool_available("sslscan", "sslscan") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Rendezvous::options(dir.path())
        .env("RUST_LOG", "warn,rustls=error")
        .log(Log::Inherit)
        .start();
    let mut command = Command::new("sslscan");
    command.args(["--no-colour", &server.addr]);
    let output = run(command, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // sslscan 2.x: "  SSL/TLS Protocols:" then one line per protocol, e.g. "TLSv1.3   enabled".
    let state = |protocol: &str| -> String {
        stdout
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                if words.next() == Some(protocol) {
                    words.next().map(str::to_owned)
                } else {
                    None
                }
            })
            .find(|w| w == "enabled" || w == "disabled")
            .unwrap_or_else(|| panic!("sslscan printed no state for {protocol}:\n{stdout}"))
    };
    assert_eq!(state("TLSv1.3"), "enabled", "{stdout}");
    for old in ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2"] {
        assert_eq!(state(old), "disabled", "{old}:\n{stdout}");
    }
    let accepted: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Accepted") || l.starts_with("Preferred"))
        .collect();
    assert!(!accepted.is_empty(), "sslscan lists the suites:\n{stdout}");
    assert!(
        accepted.iter().all(|l| l.contains("TLSv1.3")),
        "every accepted suite is TLS 1.3: {accepted:?}"
    );
}
