//! The real `parley-rendezvous` binary: one way to start it for every suite, on
//! system-chosen ports by default, with its start lines read and checked.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use crate::{
    bin::binary,
    process::{Log, Proc, launched},
    wait::WAIT,
};

/// How long a rendezvous gets to stop on SIGTERM.
const STOP: Duration = Duration::from_secs(10);

/// A running rendezvous, killed when dropped.
pub struct Rendezvous {
    proc: Proc,
    /// `https://<ip>:<port>`, from the `https:` line.
    pub url: String,
    /// `<ip>:<port>` of the HTTPS listener.
    pub addr: String,
    /// `sha256:<64 lowercase hex>`, from the `ca-fingerprint:` line.
    pub fingerprint: String,
    /// The p2p multiaddr including `/p2p/<peer id>`, from the `p2p:` line.
    pub p2p: String,
    /// `parley://join?server=…&ca=…`, from the `invite:` line.
    pub invite: String,
}

impl Rendezvous {
    /// A rendezvous keeping its data in `data`, on `127.0.0.1:0` and `/ip4/127.0.0.1/tcp/0`,
    /// its logs discarded.
    pub fn start(data: &Path) -> Self {
        Self::options(data).start()
    }

    /// Options for a rendezvous keeping its data in `data`, to [`Options::start`] it.
    pub fn options(data: &Path) -> Options {
        Options {
            data: data.to_owned(),
            https: "127.0.0.1:0".to_owned(),
            p2p: "/ip4/127.0.0.1/tcp/0".to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            log: Log::Null,
            via: Vec::new(),
        }
    }

    /// The process.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The process's resident memory (`VmRSS` in `/proc/<pid>/status`), in KiB.
    ///
    /// # Panics
    /// When the status cannot be read (the process is gone) or has no `VmRSS` line.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status is readable (is it still running?)");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS line in {status}"))
    }

    /// Sends SIGTERM and waits (up to 10 s) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.proc.terminate_within(STOP)
    }
}

/// How to start a [`Rendezvous`]; [`Rendezvous::options`] makes one.
#[must_use]
pub struct Options {
    data: PathBuf,
    https: String,
    p2p: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log: Log,
    via: Vec<OsString>,
}

impl Options {
    /// Listens for HTTPS on `addr` instead of `127.0.0.1:0`.
    pub fn https(mut self, addr: &str) -> Self {
        addr.clone_into(&mut self.https);
        self
    }

    /// Listens for libp2p on `multiaddr` instead of `/ip4/127.0.0.1/tcp/0`.
    pub fn p2p(mut self, multiaddr: &str) -> Self {
        multiaddr.clone_into(&mut self.p2p);
        self
    }

    /// More arguments, after `--data`, `--https` and `--p2p`.
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

    /// Runs the binary through `launcher` (for example `ip netns exec NS`).
    pub fn via<S: Into<OsString> + Clone>(mut self, launcher: &[S]) -> Self {
        self.via = launcher.iter().cloned().map(Into::into).collect();
        self
    }

    /// Starts it and reads its four start lines.
    ///
    /// # Panics
    /// When the first four printed lines are not `ca-fingerprint: sha256:<64 lowercase hex>`,
    /// `https: https://…`, `p2p: …/p2p/12D3KooW…` and
    /// `invite: parley://join?server=https%3A%2F%2F…&ca=<the fingerprint>`, in that order,
    /// each within 30 s.
    pub fn start(self) -> Rendezvous {
        let bin = binary("parley-rendezvous");
        let mut cmd = launched(&self.via, &bin);
        cmd.arg("--data")
            .arg(&self.data)
            .args(["--https", &self.https, "--p2p", &self.p2p])
            .args(&self.args)
            .envs(self.env);
        let mut proc = Proc::spawn("the rendezvous", cmd, &self.log);
        let mut next = |prefix: &str| -> String {
            let line = proc.next_line(&format!("its `{prefix}` line"), WAIT);
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected `{prefix}…`, got {line:?}"))
                .to_owned()
        };
        let fingerprint = next("ca-fingerprint: ");
        let hex = fingerprint.strip_prefix("sha256:").unwrap_or_default();
        assert!(
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "the fingerprint line is not sha256:<64 lowercase hex>: {fingerprint:?}"
        );
        let url = next("https: ");
        let addr = url
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("the https line is not an https URL: {url:?}"))
            .to_owned();
        let p2p = next("p2p: ");
        assert!(p2p.contains("/p2p/12D3KooW"), "p2p line {p2p}");
        let invite = next("invite: ");
        assert!(
            invite.starts_with("parley://join?server=https%3A%2F%2F")
                && invite.ends_with(&format!("&ca={fingerprint}")),
            "the invite line does not name the https URL and the fingerprint: {invite:?}"
        );
        Rendezvous {
            proc,
            url,
            addr,
            fingerprint,
            p2p,
            invite,
        }
    }
}
