//! Hole punching behind two home routers: the real `parley-rendezvous` and `parley` binaries
//! (next to this one) in Linux network namespaces, as root.
//!
//! The lab: a public network (a bridge in a namespace of its own, `203.0.113.0/24`) with the
//! rendezvous at `203.0.113.1`, and two homes, each a router namespace (wan on the public
//! network, lan `192.168.N.1/24`, nftables `masquerade`, nothing unsolicited let in) and a host
//! namespace (`192.168.N.2/24`) where a daemon runs; each wan link delays every packet by
//! [`WAN_DELAY`] each way, unless the kernel has no netem. Every namespace is named
//! `pb<pid>-<role>` and deleted when the [`Lab`] drops, also on an error or a panic; the
//! processes inside are stopped first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// How long a daemon may take to hold its relay slot.
const RESERVE_WITHIN: Duration = Duration::from_secs(60);
/// How long the connection may take to become direct after the first message.
const PUNCH_WITHIN: Duration = Duration::from_secs(60);
/// How long each router's wan link delays a packet, each way (tc netem).
const WAN_DELAY: &str = "5ms";
/// How often the sender's `status` is read while waiting for the punch.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Why the punch cannot be measured here, if it cannot.
pub fn unavailable() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("not measured: building the NAT namespaces needs root".into());
    }
    for tool in ["ip", "nft", "tc", "curl"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("not measured: `{tool}` is not installed"));
        }
    }
    for binary in ["parley", "parley-rendezvous"] {
        if !next_to_me(binary).is_ok_and(|p| p.exists()) {
            return Some(format!(
                "not measured: build the `{binary}` binary (next to parley-bench)"
            ));
        }
    }
    None
}

/// What was measured: each pair's time, and whether the wan links were delayed.
pub struct Punches {
    /// From the start of the first `parley send` to the first `status` showing the
    /// connection direct.
    pub times: Vec<Duration>,
    /// Whether the wan links delayed packets by [`WAN_DELAY`].
    pub wan_delay: Option<&'static str>,
}

/// Times from the first message (sent while the homes can reach each other only through the
/// relay) to the sender's connection being direct, for `pairs` pairs of daemons, one pair at a
/// time, in the same two homes.
pub fn punch_times(dir: &Path, pairs: usize) -> Result<Punches> {
    let lab = Lab::new()?;
    let rv = Rendezvous::start(&lab, &dir.join("rendezvous"))?;
    let mut times = Vec::with_capacity(pairs);
    for pair in 0..pairs {
        let (alice, bob) = (format!("punchera{pair}"), format!("puncherb{pair}"));
        let a = Daemon::start(&lab, 1, &rv, &dir.join(&alice), &alice)?;
        let b = Daemon::start(&lab, 2, &rv, &dir.join(&bob), &bob)?;
        a.wait_reserved()?;
        b.wait_reserved()?;
        let circuits = rv.circuits_opened()?;
        let start = Instant::now();
        let sent = a.parley(&["send", &bob, "through the relay first"])?;
        if !sent.status.success() || !sent.stdout.starts_with(b"delivered: ") {
            bail!(
                "the first message was not delivered: {}",
                String::from_utf8_lossy(&sent.stderr).trim()
            );
        }
        loop {
            if a.path_to(&bob)?.as_deref() == Some("direct") {
                times.push(start.elapsed());
                if rv.circuits_opened()? <= circuits {
                    bail!("the first message did not go through the relay: it opened no circuit");
                }
                break;
            }
            if start.elapsed() > PUNCH_WITHIN {
                bail!("no direct connection within {PUNCH_WITHIN:?} of the first message");
            }
            std::thread::sleep(POLL_EVERY);
        }
    }
    let wan_delay = lab.wan_delay.then_some(WAN_DELAY);
    drop(rv);
    drop(lab);
    Ok(Punches { times, wan_delay })
}

fn next_to_me(binary: &str) -> Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(binary))
}

/// Runs `command`, failing with its stderr when it fails.
fn run(command: &mut Command) -> Result<Output> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// The lab's namespaces, deleted on drop.
struct Lab {
    prefix: String,
    made: Vec<String>,
    /// Whether the wan links delay packets (false on a kernel without netem).
    wan_delay: bool,
}

impl Lab {
    fn new() -> Result<Self> {
        let mut lab = Self {
            prefix: format!("pb{}", std::process::id()),
            made: Vec::new(),
            wan_delay: true,
        };
        let public = lab.namespace("pub")?;
        lab.ip(&public, &["link", "add", "br0", "type", "bridge"])?;
        lab.ip(&public, &["link", "set", "br0", "up"])?;
        let rv = lab.namespace("rv")?;
        lab.cable(&rv, "eth0", &public, "p0")?;
        lab.ip(&rv, &["addr", "add", "203.0.113.1/24", "dev", "eth0"])?;
        for home in 1..=2u8 {
            let router = lab.namespace(&format!("r{home}"))?;
            let host = lab.namespace(&format!("h{home}"))?;
            lab.cable(&router, "wan", &public, &format!("p{home}"))?;
            lab.ip(
                &router,
                &[
                    "addr",
                    "add",
                    &format!("203.0.113.{}/24", home + 1),
                    "dev",
                    "wan",
                ],
            )?;
            // A real uplink is not loopback-fast: every packet waits on the way in and out.
            if lab.wan_delay {
                let delayed = run(Command::new("ip").args(["netns", "exec", &router]).args([
                    "tc", "qdisc", "add", "dev", "wan", "root", "netem", "delay", WAN_DELAY,
                ]));
                match delayed {
                    Ok(_) => {}
                    Err(e) if e.to_string().contains("qdisc kind is unknown") => {
                        lab.wan_delay = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            lab.cable(&host, "eth0", &router, "lan")?;
            lab.ip(
                &router,
                &["addr", "add", &format!("192.168.{home}.1/24"), "dev", "lan"],
            )?;
            lab.ip(
                &host,
                &[
                    "addr",
                    "add",
                    &format!("192.168.{home}.2/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            lab.ip(
                &host,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("192.168.{home}.1"),
                ],
            )?;
            run(Command::new("ip").args([
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]))?;
            let mut nft = Command::new("ip")
                .args(["netns", "exec", &router, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot run nft")?;
            {
                use std::io::Write;
                nft.stdin
                    .take()
                    .context("nft has no stdin")?
                    .write_all(ROUTER.as_bytes())?;
            }
            let out = nft.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "the router's ruleset: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(lab)
    }

    /// Makes `pb<pid>-<role>` with its loopback up.
    fn namespace(&mut self, role: &str) -> Result<String> {
        let name = format!("{}-{role}", self.prefix);
        run(Command::new("ip").args(["netns", "add", &name]))?;
        self.made.push(name.clone());
        self.ip(&name, &["link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// A veth pair: `a` in namespace `ns_a`, `b` in `ns_b` (on the bridge when that is the
    /// public network), both up.
    fn cable(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) -> Result<()> {
        run(Command::new("ip").args([
            "link", "add", "name", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns",
            ns_b,
        ]))?;
        self.ip(ns_a, &["link", "set", a, "up"])?;
        if ns_b.ends_with("-pub") {
            self.ip(ns_b, &["link", "set", b, "master", "br0"])?;
        }
        self.ip(ns_b, &["link", "set", b, "up"])?;
        Ok(())
    }

    fn ip(&self, ns: &str, args: &[&str]) -> Result<()> {
        run(Command::new("ip").arg("-n").arg(ns).args(args)).map(drop)
    }

    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A home router: source NAT on the way out, from the wan side only what belongs to a
/// connection from inside, everything else dropped without an answer.
const ROUTER: &str = "table ip parley_router {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" accept
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname \"wan\" ct state established,related accept
    iifname \"wan\" drop
  }
}
";

/// A process in a namespace, stopped (SIGTERM, then SIGKILL) on drop.
struct Process(Child);

impl Process {
    /// Starts `program` in `ns`; its standard output is read until `until` returns true on
    /// a line (the lines before it handed to `until`), then drained on a thread of its own.
    fn spawn(
        ns: &str,
        program: &Path,
        args: &[&str],
        mut until: impl FnMut(&str) -> bool,
    ) -> Result<Self> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stdout: ChildStdout = child.stdout.take().context("no stdout")?;
        let process = Self(child);
        let mut lines = BufReader::new(stdout).lines();
        if !lines.by_ref().map_while(Result::ok).any(|l| until(&l)) {
            bail!("{} stopped before it was ready", program.display());
        }
        std::thread::spawn(move || lines.for_each(drop));
        Ok(process)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // `ip netns exec` execs the program: the child's id is the program's.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `parley-rendezvous` on the public network.
struct Rendezvous {
    _process: Process,
    ns: String,
    url: String,
    fingerprint: String,
}

impl Rendezvous {
    fn start(lab: &Lab, data: &Path) -> Result<Self> {
        let data = data
            .to_str()
            .context("a temporary path that is not UTF-8")?;
        let (mut url, mut fingerprint) = (None, None);
        let process = Process::spawn(
            &lab.ns("rv"),
            &next_to_me("parley-rendezvous")?,
            &[
                "--data",
                data,
                "--https",
                "203.0.113.1:0",
                "--p2p",
                "/ip4/203.0.113.1/tcp/0",
            ],
            |line| {
                if let Some(v) = line.strip_prefix("https:") {
                    url = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("ca-fingerprint:") {
                    fingerprint = Some(v.trim().to_owned());
                }
                url.is_some() && fingerprint.is_some()
            },
        )?;
        Ok(Self {
            _process: process,
            ns: lab.ns("rv"),
            url: url.context("no https line")?,
            fingerprint: fingerprint.context("no ca-fingerprint line")?,
        })
    }
}

impl Rendezvous {
    /// Circuits its relay opened so far, from its metrics (read in its own namespace; the
    /// certificate is not checked: only a counter is read, inside the lab).
    fn circuits_opened(&self) -> Result<u64> {
        const SAMPLE: &str = "parley_relay_circuits_opened_total ";
        let out = run(Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "curl",
                "-sSk",
                "--max-time",
                "10",
            ])
            .arg(format!("{}/metrics", self.url)))?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(SAMPLE)?.trim().parse().ok())
            .context("the metrics have no relay circuit counter")
    }
}

/// A real `parley daemon` in a home's host.
struct Daemon {
    _process: Process,
    ns: String,
    home: PathBuf,
}

impl Daemon {
    /// Enrolls `user` into `home` from home number `at`, then runs its daemon there.
    fn start(lab: &Lab, at: u8, rv: &Rendezvous, home: &Path, user: &str) -> Result<Self> {
        let ns = lab.ns(&format!("h{at}"));
        let parley = next_to_me("parley")?;
        run(Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&parley)
            .arg("--home")
            .arg(home)
            .args(["enroll", "--server", &rv.url, "--user", user])
            .args(["--ca-fingerprint", &rv.fingerprint])
            .env("PARLEY_PASSWORD", format!("bench-password-{user}")))?;
        let home_arg = home
            .to_str()
            .context("a temporary path that is not UTF-8")?;
        let process = Process::spawn(
            &ns,
            &parley,
            &[
                "--home",
                home_arg,
                "daemon",
                "--listen",
                "/ip4/0.0.0.0/tcp/0",
            ],
            |line| line.starts_with("control:"),
        )?;
        Ok(Self {
            _process: process,
            ns,
            home: home.to_owned(),
        })
    }

    /// `parley --home <home> ARGS` in the daemon's namespace.
    fn parley(&self, args: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(next_to_me("parley")?)
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run parley")
    }

    fn status(&self) -> Result<Value> {
        let out = self.parley(&["status", "--json"])?;
        if !out.status.success() {
            bail!("status: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| anyhow!("status is not JSON: {e}"))
    }

    fn wait_reserved(&self) -> Result<()> {
        let start = Instant::now();
        while self.status()?["relay"]["reserved"] != true {
            if start.elapsed() > RESERVE_WITHIN {
                bail!("a daemon got no relay slot within {RESERVE_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// How this daemon is connected to `user` now, if it is.
    fn path_to(&self, user: &str) -> Result<Option<String>> {
        Ok(self.status()?["connections"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["user"] == user))
            .and_then(|c| c["path"].as_str().map(str::to_owned)))
    }
}
