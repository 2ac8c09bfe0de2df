//! The harness shared by the end-to-end tests: real `parley` and `parley-rendezvous`
//! processes on system-chosen loopback ports, homes in temporary folders, and every process
//! stopped at the end, also on failure (see `Proc`'s `Drop`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

pub const WAIT: Duration = Duration::from_secs(30);

pub fn parley_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_parley"))
}

pub fn rendezvous_bin() -> PathBuf {
    let path = parley_bin().with_file_name("parley-rendezvous");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (test.sh does) before this test",
        path.display()
    );
    path
}

/// A child process, killed when dropped; its stdout lines arrive on a channel.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    pub fn spawn(cmd: Command) -> Self {
        Self::spawn_logging(cmd, Stdio::null())
    }

    /// Spawns with stderr (the logs) going to `stderr`.
    pub fn spawn_logging(mut cmd: Command, stderr: Stdio) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (seen so far or coming within `WAIT`) that satisfies `pred`.
    pub fn line_where(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.seen.iter().find(|l| pred(l)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line {what} within {WAIT:?}; saw {:?}", self.seen),
            }
        }
    }

    /// The value after `prefix` on the first line that starts with it.
    pub fn field(&mut self, prefix: &str) -> String {
        let line = self.line_where(&format!("starting with {prefix:?}"), |l| {
            l.starts_with(prefix)
        });
        line[prefix.len()..].trim().to_owned()
    }

    /// The first line that contains `needle`.
    pub fn field_containing(&mut self, needle: &str) -> String {
        self.line_where(&format!("containing {needle:?}"), |l| l.contains(needle))
    }

    pub fn type_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}").expect("the process reads its input");
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.exit_status("stop on SIGTERM")
    }

    /// Waits up to `WAIT` for the process to exit.
    pub fn exit_status(&mut self, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Rendezvous {
    pub proc: Proc,
    pub url: String,
    pub fingerprint: String,
    pub p2p: String,
}

pub fn rendezvous(dir: &Path) -> Rendezvous {
    rendezvous_on(dir, "127.0.0.1:0", "/ip4/127.0.0.1/tcp/0")
}

pub fn rendezvous_on(dir: &Path, https: &str, p2p: &str) -> Rendezvous {
    let data = dir.join("rendezvous");
    let mut cmd = Command::new(rendezvous_bin());
    cmd.arg("--data")
        .arg(&data)
        .args(["--https", https, "--p2p", p2p]);
    let mut proc = Proc::spawn(cmd);
    let fingerprint = proc.field("ca-fingerprint:");
    let url = proc.field("https:");
    let p2p = proc.field("p2p:");
    Rendezvous {
        proc,
        url,
        fingerprint,
        p2p,
    }
}

pub fn parley(home: &Path, args: &[&str]) -> Output {
    Command::new(parley_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run parley")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn enroll(rv: &Rendezvous, home: &Path, user: &str, password: &str) -> Output {
    enroll_pinned(rv, home, user, password, &rv.fingerprint)
}

pub fn enroll_pinned(
    rv: &Rendezvous,
    home: &Path,
    user: &str,
    password: &str,
    pin: &str,
) -> Output {
    Command::new(parley_bin())
        .arg("--home")
        .arg(home)
        .args([
            "enroll",
            "--server",
            &rv.url,
            "--user",
            user,
            "--ca-fingerprint",
            pin,
        ])
        .env("PARLEY_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn daemon(home: &Path) -> Proc {
    let mut cmd = Command::new(parley_bin());
    cmd.arg("--home")
        .arg(home)
        .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    started(Proc::spawn(cmd), home)
}

/// Waits for a daemon just spawned for `home` to serve its control socket and reach the
/// rendezvous.
pub fn started(mut proc: Proc, home: &Path) -> Proc {
    proc.field("control:");
    wait_for(
        &format!("{} to reach the rendezvous", home.display()),
        || {
            let out = parley(home, &["status", "--json"]);
            out.status.success() && json(&out)["rendezvous"]["connected"] == true
        },
    );
    proc
}

/// A rendezvous with bob, then alice, enrolled (no daemon yet), in a temporary folder.
pub fn enrolled_pair() -> (tempfile::TempDir, Rendezvous, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rv = rendezvous(dir.path());
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
    assert!(enroll(&rv, &alice, "alice", "pw-alice").status.success());
    (dir, rv, alice, bob)
}

pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

pub fn texts(home: &Path, with: &str) -> Vec<(String, String)> {
    let out = parley(home, &["history", with, "--json"]);
    assert!(out.status.success(), "history failed: {}", stderr(&out));
    json(&out)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn pair(s: &str, t: &str) -> (String, String) {
    (s.to_owned(), t.to_owned())
}

/// A daemon with its logs (at `RUST_LOG=debug`) in `log`, extra arguments and environment.
pub fn daemon_with(home: &Path, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(parley_bin());
    cmd.arg("--home")
        .arg(home)
        .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(args)
        .env("RUST_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    started(
        Proc::spawn_logging(cmd, std::fs::File::create(log).unwrap().into()),
        home,
    )
}

/// One request over the daemon's control socket; `Err` when the daemon is not there or died
/// before it answered.
pub fn control(home: &Path, request: &Value) -> Result<Value, String> {
    let mut stream = UnixStream::connect(home.join("control.sock")).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut line = request.to_string();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    if answer.is_empty() {
        return Err("the daemon closed the socket without an answer".into());
    }
    serde_json::from_str(&answer).map_err(|e| format!("not JSON ({e}): {answer}"))
}

/// The history of `home` with `with`, waiting (up to a minute) for a daemon to answer.
/// The texts `from` wrote in a history document, in its order.
pub fn texts_from(history: &Value, from: &str) -> Vec<String> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["from"] == from)
        .map(|m| m["text"].as_str().expect("text").to_owned())
        .collect()
}

pub fn history(home: &Path, with: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match control(home, &json!({ "cmd": "history", "with": with })) {
            Ok(answer) if answer["status"] == "ok" => return answer["data"].clone(),
            Ok(answer) => panic!("history of {} failed: {answer}", home.display()),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no daemon answered in {} for a minute: {e}",
                    home.display()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `true` when nothing is `missing`; otherwise says on stderr that the test is skipped and
/// returns `false`, or fails under `CI`, whose machine runs the suite as root with every tool.
pub fn runnable(missing: Option<&str>) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing} is needed and missing on this CI machine"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!`.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: this test needs {missing}; run the tests as root with it"
    );
    false
}
