//! Reachability between homes, with real processes in a real NAT topology: the rendezvous on a
//! "public" network, each peer at home behind a router (network namespaces, nftables) that
//! masquerades and silently drops whatever comes unasked from outside. Port-preserving NATs
//! (`masquerade`) can be hole-punched; a symmetric one (`masquerade random,fully-random`)
//! cannot, and there the rendezvous's relay carries the conversation.
//!
//! - Two cone NATs: messages flow both ways, the connection becomes direct within 30 s (as
//!   `status` shows, and as the relay's byte counters show when an attachment no longer
//!   crosses the rendezvous), and after the routers forget their mappings (`conntrack -F`)
//!   the peers notice, fall back to the relay and punch again.
//! - Cone and symmetric: messages and attachments flow both ways through the relay.
//! - The rendezvous restarted while a circuit carries a conversation: the peers reserve again,
//!   and the outbox delivers what was pending, exactly once.
//!
//! Needs root, `ip`, `nft`, `tc` and `conntrack`; without them the tests say so on stderr and
//! are skipped, and under `CI` they fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use parley_testkit::{
    Daemon, Home, Host, Lab, Log, Nat, Rendezvous, enroll_via, history, json, parley,
    save_attachment, texts_from, wait_within,
};
use serde_json::Value;

/// How long a punch may take, once the first message went through the relay.
const PUNCH_WITHIN: Duration = Duration::from_secs(30);
/// How long the peers may take, after their routers forgot the mappings, to notice the dead
/// connection, come back through the relay and punch a new one.
const REPUNCH_WITHIN: Duration = Duration::from_secs(200);
/// How long a daemon may take to hold its relay slot.
const RESERVE_WITHIN: Duration = Duration::from_secs(40);
/// The attachment that shows which way traffic goes.
const ATTACHMENT_BYTES: usize = 1024 * 1024;

/// A lab with the rendezvous running on its public network, and homes to enroll peers in.
struct Net {
    /// Processes first: they are dropped (killed) before the lab's namespaces go.
    daemons: Vec<Daemon>,
    rv: Option<Rendezvous>,
    rv_host: Host,
    dir: tempfile::TempDir,
    lab: Lab,
}

impl Net {
    fn new(test: &str) -> Option<Self> {
        let mut lab = Lab::try_new(test)?;
        let rv_host = lab.public_host("rv");
        let dir = tempfile::tempdir().unwrap();
        let mut net = Self {
            daemons: Vec::new(),
            rv: None,
            rv_host,
            dir,
            lab,
        };
        net.rv = Some(net.start_rendezvous(0));
        Some(net)
    }

    fn start_rendezvous(&self, port: u16) -> Rendezvous {
        let addr = self.rv_host.addr();
        Rendezvous::options(&self.dir.path().join("rendezvous"))
            .via(&self.rv_host.ns().launcher())
            .https(&format!("{addr}:0"))
            .p2p(&format!("/ip4/{addr}/tcp/{port}"))
            .env("RUST_LOG", "info,libp2p_relay=debug")
            .log(Log::File(self.dir.path().join("rendezvous.log")))
            .start()
    }

    fn rv(&self) -> &Rendezvous {
        self.rv.as_ref().expect("the rendezvous runs")
    }

    /// The rendezvous's p2p port.
    fn rv_port(&self) -> u16 {
        self.rv()
            .p2p
            .split('/')
            .nth(4)
            .and_then(|p| p.parse().ok())
            .expect("the p2p line names a TCP port")
    }

    fn home_dir(&self, user: &str) -> PathBuf {
        self.dir.path().join(user)
    }

    /// A home behind `nat` with `user` enrolled from it and its daemon running.
    fn user_at_home(&mut self, user: &str, nat: Nat) -> (Home, PathBuf) {
        let home = self.lab.home(user, nat);
        let dir = self.home_dir(user);
        let rv = self.rv();
        let out = enroll_via(
            &home.host().ns().launcher(),
            rv,
            &dir,
            user,
            &format!("pw-{user}-at-home"),
        );
        assert!(
            out.status.success(),
            "{user} enrolls from home: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let daemon = Daemon::options(&dir)
            .via(&home.host().ns().launcher())
            .listen("/ip4/0.0.0.0/tcp/0")
            .env("RUST_LOG", "info,libp2p_dcutr=debug,libp2p_relay=debug")
            .log(Log::File(self.dir.path().join(format!("{user}.log"))))
            .start();
        self.daemons.push(daemon);
        (home, dir)
    }

    /// The rendezvous's metrics, fetched from inside its namespace.
    fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.rv().url);
        let script = "import ssl, sys, urllib.request\n\
            ctx = ssl.create_default_context()\n\
            ctx.check_hostname = False\n\
            ctx.verify_mode = ssl.CERT_NONE\n\
            print(urllib.request.urlopen(sys.argv[1], context=ctx, timeout=10).read().decode())";
        self.rv_host.ns().run(&["python3", "-c", script, &url])
    }

    /// A sample of the metrics, by its name and labels as written.
    fn metric(&self, sample: &str) -> u64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in the metrics:\n{text}"))
    }

    /// Bytes the rendezvous moved on its p2p connections, both ways.
    fn rv_bytes(&self) -> u64 {
        self.metric("parley_p2p_bytes_total{direction=\"received\"}")
            + self.metric("parley_p2p_bytes_total{direction=\"sent\"}")
    }

    /// The last lines of every log, for a failure's message.
    fn logs(&self) -> String {
        let mut all = String::new();
        for name in ["rendezvous", "alice", "bob", "carol"] {
            let path = self.dir.path().join(format!("{name}.log"));
            if path.exists() {
                all.push_str(&format!(
                    "\n--- {name} ---\n{}",
                    parley_testkit::tail(&path, 40)
                ));
            }
        }
        all
    }
}

fn status(home: &Path) -> Value {
    let out = parley(home, &["status", "--json"]);
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
}

/// How `home` is connected to `user` now, if it is.
fn path_to(home: &Path, user: &str) -> Option<String> {
    status(home)["connections"]
        .as_array()?
        .iter()
        .find(|c| c["user"] == user)
        .and_then(|c| c["path"].as_str().map(str::to_owned))
}

fn reserved(home: &Path) -> bool {
    let s = status(home);
    s["relay"]["reserved"] == true
        && s["relay"]["addrs"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a.as_str().is_some_and(|a| a.contains("/p2p-circuit/p2p/")))
        })
}

fn send(from: &Path, to: &str, text: &str, attach: Option<&Path>) -> Output {
    let mut cmd = parley_testkit::peer::command(from);
    cmd.args(["send", to, text]);
    if let Some(file) = attach {
        cmd.arg("--attach").arg(file);
    }
    cmd.stdin(Stdio::null()).output().expect("send runs")
}

fn delivered(net: &Net, from: &Path, to: &str, text: &str, attach: Option<&Path>) {
    let out = send(from, to, text, attach);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("delivered: "),
        "{text:?} to {to} is delivered: {}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        net.logs()
    );
}

fn wait_reserved(net: &Net, homes: &[&Path]) {
    for home in homes {
        let started = Instant::now();
        while !reserved(home) {
            assert!(
                started.elapsed() < RESERVE_WITHIN,
                "{} holds a relay slot, reachability {}: {}{}",
                home.display(),
                status(home)["reachability"],
                status(home)["relay"],
                net.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn wait_path(net: &Net, home: &Path, user: &str, path: &str, limit: Duration) {
    let started = Instant::now();
    while path_to(home, user).as_deref() != Some(path) {
        assert!(
            started.elapsed() < limit,
            "{} reaches {user} {path} within {limit:?}; it is {:?}{}",
            home.display(),
            path_to(home, user),
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn attachment(net: &Net, name: &str) -> PathBuf {
    let file = net.dir.path().join(name);
    let bytes: Vec<u8> = (0..ATTACHMENT_BYTES).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, bytes).unwrap();
    file
}

fn received_once(home: &Path, from: &str, text: &str) -> bool {
    texts_from(&history(home, from), from)
        .iter()
        .filter(|t| *t == text)
        .count()
        == 1
}

#[test]
fn behind_two_cone_nats_messages_flow_both_ways_and_the_connection_ends_direct() {
    let Some(mut net) =
        Net::new("behind_two_cone_nats_messages_flow_both_ways_and_the_connection_ends_direct")
    else {
        return;
    };
    let (alice_home, alice) = net.user_at_home("alice", Nat::PortPreserving);
    let (bob_home, bob) = net.user_at_home("bob", Nat::PortPreserving);
    wait_reserved(&net, &[&alice, &bob]);

    delivered(&net, &alice, "bob", "hello from alice's home", None);
    wait_path(&net, &alice, "bob", "direct", PUNCH_WITHIN);
    wait_path(&net, &bob, "alice", "direct", Duration::from_secs(10));
    delivered(&net, &bob, "alice", "hello from bob's home", None);
    assert!(received_once(&bob, "alice", "hello from alice's home"));
    assert!(received_once(&alice, "bob", "hello from bob's home"));
    // The rendezvous's dial-back to alice's router was dropped: AutoNAT says private.
    wait_within(
        "alice to learn she is private",
        Duration::from_secs(40),
        || status(&alice)["reachability"] == "private",
    );

    // Direct now: the circuit is gone and an attachment does not cross the rendezvous.
    wait_within("the circuit to close", Duration::from_secs(10), || {
        net.metric("parley_relay_circuits") == 0
    });
    let before = net.rv_bytes();
    let file = attachment(&net, "direct.bin");
    delivered(&net, &alice, "bob", "a file, direct", Some(&file));
    let crossed = net.rv_bytes() - before;
    assert!(
        crossed < (ATTACHMENT_BYTES / 4) as u64,
        "the attachment went direct, yet the rendezvous moved {crossed} bytes meanwhile"
    );

    // The routers forget their mappings: the punched connection dies; the peers notice it,
    // come back through the relay and punch again.
    alice_home.flush_conntrack();
    bob_home.flush_conntrack();
    let started = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let text = format!("after the flush {n}");
        if send(&alice, "bob", &text, None).status.success()
            && path_to(&alice, "bob").as_deref() == Some("direct")
            && net.metric("parley_relay_circuits_opened_total") >= 2
        {
            break;
        }
        // The punch is retried with a growing wait: the first retries may find the old,
        // silent connection's sockets still on the same ports, until the kernel gives them up.
        assert!(
            started.elapsed() < REPUNCH_WITHIN,
            "after conntrack -F the peers deliver and end direct again: {:?}{}",
            path_to(&alice, "bob"),
            net.logs()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    delivered(&net, &bob, "alice", "still here", None);
    assert!(received_once(&alice, "bob", "still here"));
}

#[test]
fn through_a_symmetric_nat_the_relay_carries_the_conversation_both_ways() {
    let Some(mut net) =
        Net::new("through_a_symmetric_nat_the_relay_carries_the_conversation_both_ways")
    else {
        return;
    };
    let (_alice_home, alice) = net.user_at_home("alice", Nat::PortPreserving);
    let (_carol_home, carol) = net.user_at_home("carol", Nat::Symmetric);
    wait_reserved(&net, &[&alice, &carol]);

    delivered(&net, &alice, "carol", "to the symmetric side", None);
    delivered(&net, &carol, "alice", "and back", None);
    assert_eq!(
        path_to(&alice, "carol").as_deref(),
        Some("relayed"),
        "{}",
        net.logs()
    );
    let before = net.rv_bytes();
    let file = attachment(&net, "relayed.bin");
    delivered(&net, &carol, "alice", "a file, relayed", Some(&file));
    delivered(&net, &alice, "carol", "a file back", Some(&file));
    let crossed = net.rv_bytes() - before;
    assert!(
        crossed >= 2 * ATTACHMENT_BYTES as u64,
        "two relayed attachments cross the rendezvous twice each, yet it moved {crossed} bytes"
    );
    let saved = net.dir.path().join("saved.bin");
    let h = history(&alice, "carol");
    let id = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == "a file, relayed")
        .and_then(|m| m["id"].as_str())
        .expect("the relayed attachment's message")
        .to_owned();
    let out = save_attachment(&alice, "carol", &id, &saved);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&file).unwrap()
    );
    assert_eq!(path_to(&alice, "carol").as_deref(), Some("relayed"));
    assert!(received_once(&carol, "alice", "a file back"));
}

#[test]
fn a_rendezvous_restarted_under_a_relayed_conversation_delivers_the_pending_exactly_once() {
    let Some(mut net) = Net::new(
        "a_rendezvous_restarted_under_a_relayed_conversation_delivers_the_pending_exactly_once",
    ) else {
        return;
    };
    let (_alice_home, alice) = net.user_at_home("alice", Nat::PortPreserving);
    let (_carol_home, carol) = net.user_at_home("carol", Nat::Symmetric);
    wait_reserved(&net, &[&alice, &carol]);
    delivered(&net, &alice, "carol", "before the restart", None);

    // The rendezvous goes down: the circuit goes with it, and what alice sends now waits.
    let port = net.rv_port();
    drop(net.rv.take());
    let pending = "sent while the rendezvous was down";
    let out = send(&alice, "carol", pending, None);
    assert!(
        !out.status.success(),
        "nothing can carry the message: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Back on the same port (its key and CA stay in its folder).
    net.rv = Some(net.start_rendezvous(port));
    wait_reserved(&net, &[&alice, &carol]);
    wait_within(
        "the outbox to deliver the pending message",
        Duration::from_secs(90),
        || received_once(&carol, "alice", pending),
    );
    // The receipt may come back by mail, a collection after the message itself arrived.
    wait_within(
        "alice's outbox to empty once the receipt is back",
        Duration::from_secs(90),
        || status(&alice)["outbox"] == 0,
    );
    delivered(&net, &carol, "alice", "after the restart", None);
    let texts = texts_from(&history(&carol, "alice"), "alice");
    assert_eq!(
        texts,
        ["before the restart", pending],
        "each message once, in order"
    );
}
