//! Network faults between real processes: the rendezvous, alice and bob each in their own
//! network namespace, cabled by veth pairs to a bridge in a fourth. nftables drops 30 % of
//! the packets that reach alice and bob; then bob's cable is pulled, his connections are
//! aborted on his side (as a laptop that slept), and the cable is plugged back in.
//!
//! Every message alice sends meanwhile is either receipted or kept in her outbox, and once the
//! network is healthy again bob's daemon has reconnected to the rendezvous and every message
//! is in bob's history exactly once, in order, verified, with the chain intact.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). Where one is missing the test says so on
//! stderr and is skipped; under `CI` (whose machine runs the suite as root, with both
//! installed by test.sh) it fails instead.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use parley_testkit::{
    Daemon, Log, Rendezvous, binary, control, history, texts_from, tools::root_with,
};
use serde_json::json;

/// Messages sent under packet loss, and while bob's cable is out.
const UNDER_LOSS: usize = 12;
const WHILE_CUT: usize = 3;
/// Share of packets dropped on their way into alice and bob, in percent.
const LOSS_PERCENT: u32 = 30;

/// The namespaces and their cabling, removed when dropped (also on failure).
struct Lab {
    prefix: String,
}

impl Lab {
    const HOSTS: [(&'static str, &'static str); 3] = [
        ("rv", "10.77.0.1"),
        ("alice", "10.77.0.2"),
        ("bob", "10.77.0.3"),
    ];

    fn build() -> Self {
        let lab = Self {
            prefix: format!("parley{}", std::process::id()),
        };
        let hub = lab.ns("hub");
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for (host, addr) in Self::HOSTS {
            let ns = lab.ns(host);
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", "name", "eth0", "netns", &ns, "type", "veth", "peer", "name", host,
                "netns", &hub,
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &hub, "link", "set", host, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", host, "up"]);
        }
        lab
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// What runs a program inside `host`'s namespace.
    fn launcher(&self, host: &str) -> [String; 4] {
        ["ip", "netns", "exec", &self.ns(host)].map(str::to_owned)
    }

    /// A command run inside `host`'s namespace.
    fn command(&self, host: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)]).arg(program);
        cmd
    }

    /// Drops `percent` % of the packets arriving at `host`.
    fn lose(&self, host: &str, percent: u32) {
        let rules = format!(
            "table inet parley_chaos {{\n chain input {{\n type filter hook input priority 0; policy accept;\n iifname \"eth0\" numgen random mod 100 < {percent} drop\n }}\n}}\n"
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft runs");
        use std::io::Write;
        nft.stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("rules written");
        assert!(nft.wait().expect("nft").success(), "nft took the rules");
    }

    fn heal(&self, host: &str) {
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(host),
                "nft",
                "delete",
                "table",
                "inet",
            ])
            .arg("parley_chaos")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "the loss rules went");
    }

    /// Aborts every established TCP connection of `host` on its side (as a laptop that slept
    /// or changed networks): its peers keep half-open connections until they next use them.
    fn drop_connections(&self, host: &str) {
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(host),
                "ss",
                "-K",
                "-t",
                "state",
                "established",
            ])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ss -K aborted {host}'s connections");
    }

    /// Pulls `host`'s cable out of the bridge, or plugs it back in.
    fn cable(&self, host: &str, plugged: bool) {
        let state = if plugged { "up" } else { "down" };
        ip(&["-n", &self.ns("hub"), "link", "set", host, state]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in ["rv", "alice", "bob", "hub"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(host)])
                .status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn send_all(alice: &Path, prefix: &str, n: usize) -> (usize, usize) {
    let mut receipts = 0;
    for i in 0..n {
        let text = format!("{prefix}{i:02}");
        let answer = control(alice, &json!({ "cmd": "send", "to": "bob", "text": text }))
            .expect("alice's daemon answers");
        if answer["status"] == "ok" {
            receipts += 1;
        } else {
            let code = answer["code"].as_str().unwrap_or_default();
            assert!(
                ["unreachable", "offline", "rendezvous_unavailable"].contains(&code),
                "{text} was refused in an unexpected way: {answer}"
            );
        }
    }
    (receipts, n - receipts)
}

/// A daemon in `host`'s namespace, up once it reached the rendezvous.
fn daemon(lab: &Lab, host: &str, home: &Path, log: &Path) -> Daemon {
    Daemon::options(home)
        .via(&lab.launcher(host))
        .listen("/ip4/0.0.0.0/tcp/0")
        .env("RUST_LOG", "info")
        .log(Log::File(log.to_owned()))
        .start()
}

#[test]
fn under_packet_loss_and_a_cut_cable_every_message_arrives_once_and_in_order() {
    if !root_with(
        "to make network namespaces",
        &[("ip", "iproute2"), ("nft", "nftables")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::build();

    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .via(&lab.launcher("rv"))
        .https("10.77.0.1:0")
        .p2p("/ip4/10.77.0.1/tcp/0")
        .start();
    let (fingerprint, url) = (&rv.fingerprint, &rv.url);
    let home = |user: &str| -> PathBuf { dir.path().join(user) };
    for user in ["bob", "alice"] {
        let out = lab
            .command(user, &binary("parley"))
            .arg("--home")
            .arg(home(user))
            .args(["enroll", "--server", url, "--user", user])
            .args(["--ca-fingerprint", fingerprint])
            .env("PARLEY_PASSWORD", format!("pw-{user}"))
            .stdin(Stdio::null())
            .output()
            .expect("enroll runs");
        assert!(
            out.status.success(),
            "{user} enrolls across the lab: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (alice, bob) = (home("alice"), home("bob"));
    let bob_log = dir.path().join("bob.log");
    let _bob_daemon = daemon(&lab, "bob", &bob, &bob_log);
    let _alice_daemon = daemon(&lab, "alice", &alice, &dir.path().join("alice.log"));
    let first = control(
        &alice,
        &json!({ "cmd": "send", "to": "bob", "text": "hello" }),
    )
    .expect("the first message");
    assert_eq!(first["status"], "ok", "{first}");

    lab.lose("alice", LOSS_PERCENT);
    lab.lose("bob", LOSS_PERCENT);
    let started = Instant::now();
    let (lossy_receipts, lossy_queued) = send_all(&alice, "lossy-", UNDER_LOSS);
    let lossy_time = started.elapsed();

    lab.cable("bob", false);
    lab.drop_connections("bob");
    let (cut_receipts, cut_queued) = send_all(&alice, "cut-", WHILE_CUT);
    std::thread::sleep(Duration::from_secs(3));
    lab.cable("bob", true);
    lab.heal("alice");
    lab.heal("bob");

    let expected = 1 + UNDER_LOSS + WHILE_CUT;
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = Instant::now();
    loop {
        let sent = texts_from(&history(&alice, "bob"), "alice");
        let received = texts_from(&history(&bob, "alice"), "alice");
        if received.len() >= expected {
            assert_eq!(sent.len(), expected, "alice kept each message once");
            assert_eq!(received, sent, "bob has each once, in alice's order");
            let h = history(&bob, "alice");
            assert_eq!(h["chain"]["incoming"]["state"], "intact", "{}", h["chain"]);
            assert!(
                h["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .all(|m| m["verified"] == true),
                "every message verified"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the network healed, bob has {} of {expected} messages",
            received.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(&bob_log).unwrap_or_default();
    assert!(
        log.contains("lost the rendezvous connection; re-dialling"),
        "bob's daemon never noticed it lost the rendezvous"
    );
    let status = control(&bob, &json!({ "cmd": "status" })).expect("bob's status");
    assert_eq!(
        status["data"]["rendezvous"]["connected"], true,
        "bob reconnected to the rendezvous: {status}"
    );
    eprintln!(
        "network faults: {LOSS_PERCENT} % loss: {lossy_receipts} of {UNDER_LOSS} receipted at once, {lossy_queued} queued, in {:.1} s; cable cut: {cut_receipts} receipted, {cut_queued} queued; all {expected} delivered once, in order, {:.1} s after the network healed",
        lossy_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
