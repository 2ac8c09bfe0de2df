//! The real `parley` binary: one-shot commands, enrollment against a [`Rendezvous`], the
//! daemon with its start lines read, and requests over its control socket.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader, Write},
    ops::{Deref, DerefMut},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    bin::binary,
    process::{Log, Proc, launched},
    rendezvous::Rendezvous,
    wait::wait_for,
};

/// `parley --home <home>`, to add a command to.
pub fn command(home: &Path) -> Command {
    let mut cmd = Command::new(binary("parley"));
    cmd.arg("--home").arg(home);
    cmd
}

/// Runs `parley --home <home> <args>` with no input and returns what it did.
///
/// # Panics
/// When the binary cannot be run.
pub fn parley(home: &Path, args: &[&str]) -> Output {
    command(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run parley")
}

/// `parley save-attachment WITH ID --to TO` in `home`: the first attachment of message `id`
/// in the conversation with `with`, saved to `to`.
pub fn save_attachment(home: &Path, with: &str, id: &str, to: &Path) -> Output {
    let to = to.to_str().expect("a UTF-8 path");
    parley(home, &["save-attachment", with, id, "--to", to])
}

/// The command's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command's stdout, parsed as one JSON document.
///
/// # Panics
/// When it is not JSON.
pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// `parley enroll` of `user` with `password` on `rv`, pinned to its fingerprint.
pub fn enroll(rv: &Rendezvous, home: &Path, user: &str, password: &str) -> Output {
    enroll_pinned(rv, home, user, password, &rv.fingerprint)
}

/// [`enroll`] pinned to the fingerprint `pin`.
///
/// # Panics
/// When the binary cannot be run.
pub fn enroll_pinned(
    rv: &Rendezvous,
    home: &Path,
    user: &str,
    password: &str,
    pin: &str,
) -> Output {
    command(home)
        .args(["enroll", "--server", &rv.url, "--user", user])
        .args(["--ca-fingerprint", pin])
        .env("PARLEY_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run parley enroll")
}

/// `parley enroll --invite <invite> --user <user>` with `password`, and any `extra` arguments.
///
/// # Panics
/// When the binary cannot be run.
pub fn enroll_invite(
    home: &Path,
    invite: &str,
    user: &str,
    password: &str,
    extra: &[&str],
) -> Output {
    command(home)
        .args(["enroll", "--invite", invite, "--user", user])
        .args(extra)
        .env("PARLEY_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run parley enroll")
}

/// [`enroll`] run through `via` (a launcher such as `ip netns exec NS`, for a home inside a
/// network namespace of a lab).
///
/// # Panics
/// When the binary cannot be run.
pub fn enroll_via<S: Into<OsString> + Clone>(
    via: &[S],
    rv: &Rendezvous,
    home: &Path,
    user: &str,
    password: &str,
) -> Output {
    let via: Vec<OsString> = via.iter().cloned().map(Into::into).collect();
    launched(&via, &binary("parley"))
        .arg("--home")
        .arg(home)
        .args(["enroll", "--server", &rv.url, "--user", user])
        .args(["--ca-fingerprint", &rv.fingerprint])
        .env("PARLEY_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run parley enroll")
}

/// A rendezvous with bob, then alice, enrolled (no daemon yet), in a temporary folder:
/// `(folder, rendezvous, alice's home, bob's home)`.
///
/// # Panics
/// When an enrollment fails.
pub fn enrolled_pair() -> (tempfile::TempDir, Rendezvous, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
    assert!(enroll(&rv, &alice, "alice", "pw-alice").status.success());
    (dir, rv, alice, bob)
}

/// A running `parley daemon`, killed when dropped, with what its start lines said. It
/// dereferences to its [`Proc`].
pub struct Daemon {
    proc: Proc,
    /// The `user:` line.
    pub user: String,
    /// The `peer-id:` line.
    pub peer_id: String,
    /// Every `listen:` line.
    pub listen: Vec<String>,
    /// The `control:` line: the control socket's path.
    pub control: PathBuf,
}

impl Daemon {
    /// The daemon of `home` on `/ip4/127.0.0.1/tcp/0`, once it serves its control socket and
    /// reached the rendezvous.
    pub fn start(home: &Path) -> Self {
        Self::options(home).start()
    }

    /// Options for the daemon of `home`, to start it.
    pub fn options(home: &Path) -> Options {
        Options {
            home: home.to_owned(),
            listen: "/ip4/127.0.0.1/tcp/0".to_owned(),
            global: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            log: Log::Null,
            via: Vec::new(),
        }
    }
}

impl Deref for Daemon {
    type Target = Proc;

    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// How to start a [`Daemon`]; [`Daemon::options`] makes one.
#[must_use]
pub struct Options {
    home: PathBuf,
    listen: String,
    global: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log: Log,
    via: Vec<OsString>,
}

impl Options {
    /// Listens on `multiaddr` instead of `/ip4/127.0.0.1/tcp/0`.
    pub fn listen(mut self, multiaddr: &str) -> Self {
        multiaddr.clone_into(&mut self.listen);
        self
    }

    /// Global arguments, before the `daemon` command (`--log-format json`).
    pub fn global<S: Into<OsString> + Clone>(mut self, args: &[S]) -> Self {
        self.global.extend(args.iter().cloned().map(Into::into));
        self
    }

    /// More arguments of the `daemon` command, after `--listen`.
    pub fn args<S: Into<OsString> + Clone>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().cloned().map(Into::into));
        self
    }

    /// One more environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Where its stderr (the logs) goes; discarded unless said.
    pub fn log(mut self, log: Log) -> Self {
        self.log = log;
        self
    }

    /// Its logs at `RUST_LOG=debug` into the file `path`.
    pub fn debug_log(self, path: &Path) -> Self {
        self.env("RUST_LOG", "debug")
            .log(Log::File(path.to_owned()))
    }

    /// Runs the binary through `launcher` (for example `ip netns exec NS`).
    pub fn via<S: Into<OsString> + Clone>(mut self, launcher: &[S]) -> Self {
        self.via = launcher.iter().cloned().map(Into::into).collect();
        self
    }

    /// Starts it and reads its start lines (`user:`, `peer-id:`, `listen:`…, `control:`):
    /// it serves its control socket, but may not have reached the rendezvous yet.
    ///
    /// # Panics
    /// When a line does not come within 30 s.
    pub fn spawn(self) -> Daemon {
        let bin = binary("parley");
        let mut cmd = launched(&self.via, &bin);
        cmd.arg("--home")
            .arg(&self.home)
            .args(&self.global)
            .args(["daemon", "--listen", &self.listen])
            .args(&self.args)
            .envs(self.env);
        let name = format!("the daemon of {}", self.home.display());
        let mut proc = Proc::spawn(&name, cmd, &self.log);
        let user = proc.field("user:");
        let peer_id = proc.field("peer-id:");
        let control = PathBuf::from(proc.field("control:"));
        let listen = proc
            .seen()
            .iter()
            .filter_map(|l| l.strip_prefix("listen:"))
            .map(|a| a.trim().to_owned())
            .collect();
        Daemon {
            proc,
            user,
            peer_id,
            listen,
            control,
        }
    }

    /// [`Options::spawn`], then waits until the daemon reached the rendezvous.
    ///
    /// # Panics
    /// When it has not within 30 s.
    pub fn start(self) -> Daemon {
        let home = self.home.clone();
        let daemon = self.spawn();
        wait_for(
            &format!("{} to reach the rendezvous", home.display()),
            || {
                let out = parley(&home, &["status", "--json"]);
                out.status.success() && json(&out)["rendezvous"]["connected"] == true
            },
        );
        daemon
    }
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

/// The history document of `home` with `with`, over the control socket, waiting (up to a
/// minute) for a daemon to answer.
///
/// # Panics
/// When the daemon answers with an error, or none answers within a minute.
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

/// The texts `from` wrote in a history document, in its order.
///
/// # Panics
/// When the document has no `messages` array or a message no `text`.
pub fn texts_from(history: &Value, from: &str) -> Vec<String> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["from"] == from)
        .map(|m| m["text"].as_str().expect("text").to_owned())
        .collect()
}

/// `(from, text)` of every message in `home`'s history with `with` (`parley history --json`).
///
/// # Panics
/// When the command fails or its document lacks `messages`, `from` or `text`.
pub fn texts(home: &Path, with: &str) -> Vec<(String, String)> {
    let out = parley(home, &["history", with, "--json"]);
    assert!(out.status.success(), "history failed: {}", stderr(&out));
    let history = json(&out);
    history["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages array in {history}"))
        .iter()
        .map(|m| {
            (
                m["from"].as_str().expect("from").to_owned(),
                m["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect()
}

/// `(from, text)` as [`texts`] returns them.
pub fn pair(from: &str, text: &str) -> (String, String) {
    (from.to_owned(), text.to_owned())
}
