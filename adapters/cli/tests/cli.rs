//! The `parley` contract with real processes: a real rendezvous, real daemons, real sockets on
//! system-chosen loopback ports, homes in temporary folders. Every process is stopped at the
//! end, also on failure (the test kit's handles kill their process when dropped).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use parley_testkit::{
    Daemon, Log, Proc, Rendezvous, WAIT, binary, enroll, enroll_pinned, enrolled_pair, json, pair,
    parley, save_attachment, stderr, texts, wait_for,
};
use serde_json::Value;

#[test]
fn messages_flow_both_ways_with_the_contract_fields_and_survive_a_restart() {
    let (_dir, rv, alice, bob) = enrolled_pair();
    let mut bob_daemon = Daemon::start(&bob);
    let _alice_daemon = Daemon::start(&alice);

    let sent = parley(&alice, &["send", "bob", "salut bob, c est alice"]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(
        parley(&bob, &["send", "alice", "salut alice !"])
            .status
            .success()
    );

    let out = parley(&bob, &["history", "alice", "--json"]);
    let doc = json(&out);
    let first = &doc["messages"][0];
    for key in ["id", "from", "to", "text", "sent_at", "verified"] {
        assert!(
            !first[key].is_null(),
            "message objects carry {key}: {first}"
        );
    }
    assert_eq!(first["from"], "alice");
    assert_eq!(first["to"], "bob");
    assert_eq!(first["verified"], true);
    assert!(
        time::OffsetDateTime::parse(
            first["sent_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );

    let conversations = json(&parley(&alice, &["conversations", "--json"]));
    assert_eq!(conversations[0]["with"], "bob");
    assert_eq!(conversations[0]["messages"], 2);

    // The socket is the owner's only.
    let mode = std::fs::metadata(bob.join("control.sock"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // SIGTERM stops the daemon cleanly, and history survives the restart.
    assert!(
        bob_daemon.terminate().success(),
        "the daemon exits 0 on SIGTERM"
    );
    assert!(
        !bob.join("control.sock").exists(),
        "the socket is removed on a clean stop"
    );
    let _bob_daemon = Daemon::start(&bob);
    assert_eq!(
        texts(&bob, "alice"),
        [
            pair("alice", "salut bob, c est alice"),
            pair("bob", "salut alice !")
        ]
    );
    drop(rv);
}

#[test]
fn an_offline_contact_gets_the_message_once_when_back() {
    let (_dir, rv, alice, bob) = enrolled_pair();
    let mut bob_daemon = Daemon::start(&bob);
    let _alice_daemon = Daemon::start(&alice);
    assert!(parley(&alice, &["send", "bob", "one"]).status.success());

    bob_daemon.terminate();
    // Bob is away: the rendezvous holds the message for him.
    let out = parley(&alice, &["send", "bob", "two"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.starts_with("queued: "), "{stdout}");
    assert_eq!(json(&parley(&alice, &["status", "--json"]))["queued"], 1);

    let _bob_daemon = Daemon::start(&bob);
    wait_for("the mail to arrive", || texts(&bob, "alice").len() >= 2);
    std::thread::sleep(Duration::from_secs(3)); // another retry round must not duplicate
    let got = texts(&bob, "alice");
    let count = |t: &str| got.iter().filter(|(_, x)| x == t).count();
    assert_eq!(count("one"), 1);
    assert_eq!(count("two"), 1);
    wait_for("the receipt to come back", || {
        json(&parley(&alice, &["status", "--json"]))["outbox"] == 0
    });
    drop(rv);
}

#[test]
fn a_text_from_standard_input_or_a_file_never_sits_on_the_command_line() {
    let (dir, _rv, alice, bob) = enrolled_pair();
    let _bob_daemon = Daemon::start(&bob);
    let _alice_daemon = Daemon::start(&alice);

    let send_stdin = |input: &[u8]| {
        let mut child = parley_testkit::peer::command(&alice)
            .args(["send", "bob"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = send_stdin(b"from a pipe, two lines:\nthe second\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("delivered: "));

    let file = dir.path().join("draft.txt");
    std::fs::write(&file, "from a file\r\n").unwrap();
    let out = parley(
        &alice,
        &["send", "bob", "--text-file", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // One final newline goes; the rest of the text is kept as written.
    assert_eq!(
        texts(&bob, "alice"),
        [
            (
                "alice".to_owned(),
                "from a pipe, two lines:\nthe second".to_owned()
            ),
            ("alice".to_owned(), "from a file".to_owned()),
        ]
    );

    // Bad input: one sentence, exit 2, nothing sent.
    for (out, expected) in [
        (send_stdin(b""), "the message is empty"),
        (send_stdin(b"\xff\xfe not text"), "not UTF-8"),
        (send_stdin(&vec![b'x'; 16 * 1024 + 1]), "longer than 16 KiB"),
        (
            parley(
                &alice,
                &["send", "bob", "--text-file", "/nonexistent/draft"],
            ),
            "cannot read --text-file",
        ),
        (
            parley(
                &alice,
                &["send", "bob", "both", "--text-file", file.to_str().unwrap()],
            ),
            "cannot be used with",
        ),
    ] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{expected:?} in {}",
            stderr(&out)
        );
    }
    assert_eq!(texts(&bob, "alice").len(), 2);
}

#[test]
fn bad_input_and_failures_get_one_sentence_and_the_right_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let alice = dir.path().join("alice");

    // Not enrolled yet.
    let out = parley(&alice, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not an enrolled Parley home"),
        "{}",
        stderr(&out)
    );

    // Usage errors exit 2.
    let out = parley(&alice, &["send", "Bob", "hi"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a valid username"),
        "{}",
        stderr(&out)
    );
    let out = enroll_pinned(&rv, &alice, "alice", "pw", "sha256:zz");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("fingerprint"), "{}", stderr(&out));

    assert!(enroll(&rv, &alice, "alice", "right").status.success());
    // Enrolled, no daemon yet.
    let out = parley(&alice, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("no Parley daemon is running"),
        "{}",
        stderr(&out)
    );
    // A wrong password for a taken name.
    let other = dir.path().join("other");
    let out = enroll(&rv, &other, "alice", "wrong");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("password"), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).lines().count(),
        1,
        "one sentence: {}",
        stderr(&out)
    );

    // A pinned fingerprint that is not the server's.
    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    let out = enroll_pinned(&rv, &dir.path().join("pinned"), "carol", "pw", &wrong_pin);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("fingerprint"), "{}", stderr(&out));

    let _alice_daemon = Daemon::start(&alice);
    // A second daemon on the same home is refused clearly.
    let out = Command::new(binary("parley"))
        .arg("--home")
        .arg(&alice)
        .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));

    // Unknown user: nothing sent, nothing kept.
    let out = parley(&alice, &["send", "nobody", "hello?"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nobody") && stderr(&out).contains("nothing was sent"),
        "{}",
        stderr(&out)
    );
    assert!(texts(&alice, "nobody").is_empty());
    // Empty text, a TTL that is no duration, a file that is not there.
    assert_eq!(parley(&alice, &["send", "bob", ""]).status.code(), Some(2));
    for ttl in ["0s", "5w", "1.5h", "soon"] {
        let out = parley(&alice, &["send", "bob", "x", "--ttl", ttl]);
        assert_eq!(out.status.code(), Some(2), "--ttl {ttl}");
        assert!(
            stderr(&out).contains("30s, 10m, 1h or 7d"),
            "{}",
            stderr(&out)
        );
    }
    let out = parley(&alice, &["send", "bob", "x", "--attach", "/no/such/file"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/no/such/file"), "{}", stderr(&out));
    // Messages to oneself.
    let out = parley(&alice, &["send", "alice", "me"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("yourself"));
    drop(rv);
}

#[test]
fn chat_sends_typed_lines_and_shows_incoming_ones() {
    let (_dir, rv, alice, bob) = enrolled_pair();
    let _bob_daemon = Daemon::start(&bob);
    let _alice_daemon = Daemon::start(&alice);

    let mut chat = Command::new(binary("parley"));
    chat.arg("--home").arg(&alice).args(["chat", "bob"]);
    let mut chat = Proc::spawn("parley chat", chat, &Log::Null);
    chat.field("-- chatting with bob");
    chat.type_line("typed in the chat");
    wait_for("bob to receive the typed line", || {
        texts(&bob, "alice").contains(&pair("alice", "typed in the chat"))
    });
    assert!(
        parley(&bob, &["send", "alice", "answer from bob"])
            .status
            .success()
    );
    let shown = chat.field_containing("answer from bob");
    assert!(shown.contains("bob: answer from bob"), "{shown}");
    chat.type_line("/quit");
    assert!(chat.exit_status("leave on /quit").success());
    drop(rv);
}

/// What a hostile peer sends to forge lines and drive the recipient's terminal: a line that
/// looks like a verified message of someone else, a carriage return, an attachment line,
/// OSC (window title), CSI (colour, clear screen), C1 CSI and a bidirectional override.
const FORGERY: &str = "see below\n2026-01-01T00:00:00Z carol: the new key is 1234  [received, verified]\r\x1b]0;owned\x07\x1b[31mred\x1b[2J\n    attachment 0 of message 00000000000000000000000000000000: key.txt (9 bytes)\n\u{9b}1mbold\u{202e}txt.exe";

/// Checks that `shown` (what the CLI printed) holds no control a terminal would act on, and
/// that FORGERY's lines all sit under the continuation prefix after the message's own line.
fn assert_forgery_defused(shown: &[String], what: &str) {
    let joined = shown.join("\n");
    for c in ['\u{1b}', '\r', '\u{7}', '\u{9b}', '\u{202e}'] {
        assert!(
            !joined.contains(c),
            "{what}: {c:?} reached the terminal: {joined:?}"
        );
    }
    let start = shown
        .iter()
        .position(|l| l.ends_with(" alice: see below  [received, verified]"))
        .unwrap_or_else(|| panic!("{what}: no line for alice's message in {shown:#?}"));
    assert_eq!(
        &shown[start + 1..start + 4],
        [
            "    | 2026-01-01T00:00:00Z carol: the new key is 1234  [received, verified]\\r\\x1b]0;owned\\x07\\x1b[31mred\\x1b[2J",
            "    |     attachment 0 of message 00000000000000000000000000000000: key.txt (9 bytes)",
            "    | \\u{9b}1mbold\\u{202e}txt.exe",
        ],
        "{what}: every further line of the text is a continuation: {shown:#?}"
    );
}

#[test]
fn a_peer_s_forged_lines_and_escape_sequences_are_shown_escaped_and_kept_raw_in_json() {
    let (_dir, rv, alice, bob) = enrolled_pair();
    let _bob_daemon = Daemon::start(&bob);
    let _alice_daemon = Daemon::start(&alice);
    let mut chat = Command::new(binary("parley"));
    chat.arg("--home").arg(&bob).args(["chat", "alice"]);
    let mut chat = Proc::spawn("parley chat", chat, &Log::Null);
    chat.field("-- chatting with alice");

    let sent = parley(&alice, &["send", "bob", FORGERY]);
    assert!(sent.status.success(), "{}", stderr(&sent));

    // The JSON keeps the text exactly as it was sent.
    let doc = json(&parley(&bob, &["history", "alice", "--json"]));
    assert_eq!(doc["messages"][0]["text"], FORGERY);

    // `history`: the message's own line, then its text's further lines, each a continuation.
    let out = parley(&bob, &["history", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Vec<String> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .split('\n')
        .map(str::to_owned)
        .collect();
    assert_forgery_defused(&shown, "history");

    // `chat` prints the arriving message the same way.
    let first = chat.field_containing("alice: see below");
    let mut lines = vec![first];
    for _ in 0..3 {
        lines.push(chat.next_line("the message's next line", WAIT));
    }
    assert_forgery_defused(&lines, "chat");
    chat.type_line("/quit");
    assert!(chat.exit_status("leave on /quit").success());

    // `conversations`: one line per conversation, whatever the last message holds.
    let out = parley(&bob, &["conversations"]);
    let listed = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(listed.lines().count(), 1, "{listed:?}");
    assert!(
        listed.starts_with("alice  (1 messages)  last: ") && !listed.contains('\u{1b}'),
        "{listed:?}"
    );
    drop(rv);
}

#[test]
fn daemons_reconnect_and_republish_after_the_rendezvous_restarts() {
    let (dir, rv, alice, bob) = enrolled_pair();
    let _bob_daemon = Daemon::start(&bob);
    let _alice_daemon = Daemon::start(&alice);

    // Same data, same ports (read from the first run's lines), new process.
    let https = rv.url.trim_start_matches("https://").to_owned();
    let p2p = rv.p2p.split("/p2p/").next().unwrap().to_owned();
    let first_p2p = rv.p2p.clone();
    drop(rv);
    wait_for("alice to notice the rendezvous is gone", || {
        json(&parley(&alice, &["status", "--json"]))["rendezvous"]["connected"] == false
    });
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .https(&https)
        .p2p(&p2p)
        .start();
    assert_eq!(
        rv.p2p, first_p2p,
        "the rendezvous keeps its peer id across restarts"
    );
    for home in [&alice, &bob] {
        wait_for("the daemons to re-register", || {
            json(&parley(home, &["status", "--json"]))["rendezvous"]["connected"] == true
        });
    }
    let out = parley(&alice, &["send", "bob", "after the restart"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(texts(&bob, "alice"), [pair("alice", "after the restart")]);
}

#[test]
fn a_send_right_after_the_recipient_starts_waits_for_it_to_register() {
    let (_dir, _rv, alice, bob) = enrolled_pair();
    let _alice_daemon = Daemon::start(&alice);
    // Bob's daemon has its control socket but may not be in the directory yet.
    let _bob_daemon = Daemon::options(&bob).spawn();
    let out = parley(&alice, &["send", "bob", "as soon as you are up"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        texts(&bob, "alice"),
        [pair("alice", "as soon as you are up")]
    );
}

#[test]
fn a_contact_with_new_keys_is_refused_until_the_user_compares_and_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let (alice, bob, new_bob) = (
        dir.path().join("alice"),
        dir.path().join("bob"),
        dir.path().join("bob-new"),
    );
    assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
    assert!(enroll(&rv, &alice, "alice", "pw-alice").status.success());
    let mut bob_daemon = Daemon::start(&bob);
    let _alice_daemon = Daemon::start(&alice);
    assert!(
        parley(&alice, &["send", "bob", "first contact"])
            .status
            .success()
    );

    // Both sides see the same safety number.
    let number = |home: &Path, with: &str| {
        let out = parley(home, &["safety-number", with, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out)
    };
    let seen_by_alice = number(&alice, "bob");
    assert_eq!(
        seen_by_alice["safety_number"],
        number(&bob, "alice")["safety_number"]
    );
    assert_eq!(seen_by_alice["keys_changed"], false);

    // "bob" comes back with other keys (a new device, or the rendezvous lying).
    bob_daemon.terminate();
    assert!(enroll(&rv, &new_bob, "bob", "pw-bob").status.success());
    let _new_bob_daemon = Daemon::start(&new_bob);
    let out = parley(&alice, &["send", "bob", "are you really bob?"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("keys have changed"),
        "{}",
        stderr(&out)
    );
    assert!(
        texts(&new_bob, "alice").is_empty(),
        "nothing reached the new keys"
    );
    let changed = number(&alice, "bob");
    assert_eq!(changed["keys_changed"], true);
    assert_eq!(changed["safety_number"], seen_by_alice["safety_number"]);
    assert_ne!(changed["pending_safety_number"], changed["safety_number"]);

    // The new bob cannot write to alice either until she accepts.
    let out = parley(&new_bob, &["send", "alice", "it is me, new phone"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !texts(&alice, "bob")
            .iter()
            .any(|(_, t)| t == "it is me, new phone")
    );

    let out = parley(&alice, &["trust", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the waiting messages to flow both ways", || {
        texts(&new_bob, "alice").contains(&pair("alice", "are you really bob?"))
            && texts(&alice, "bob").contains(&pair("bob", "it is me, new phone"))
    });
    // What alice was shown as the pending number is what she and the new bob now share.
    let accepted = number(&alice, "bob");
    assert_eq!(accepted["safety_number"], changed["pending_safety_number"]);
    assert_eq!(
        accepted["safety_number"],
        number(&new_bob, "alice")["safety_number"]
    );
    assert_eq!(accepted["keys_changed"], false);
    let out = parley(&alice, &["trust", "bob"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing to accept"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn enrolling_again_renews_the_certificate_and_keeps_the_keys() {
    let (_dir, rv, alice, bob) = enrolled_pair();
    let mut bob_daemon = Daemon::start(&bob);
    let _alice_daemon = Daemon::start(&alice);
    assert!(parley(&alice, &["send", "bob", "before"]).status.success());
    let before = json(&parley(&bob, &["status", "--json"]))["peer_id"].clone();

    bob_daemon.terminate();
    let out = enroll(&rv, &bob, "bob", "pw-bob");
    assert!(out.status.success(), "{}", stderr(&out));
    let _bob_daemon = Daemon::start(&bob);
    assert_eq!(
        json(&parley(&bob, &["status", "--json"]))["peer_id"],
        before
    );
    let out = parley(&alice, &["send", "bob", "after the renewal"]);
    assert!(
        out.status.success(),
        "the pin still holds: {}",
        stderr(&out)
    );
}

#[test]
fn json_logs_parse_line_by_line_and_never_carry_message_text() {
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| Log::File(dir.path().join(name));
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .args(&["--log-format", "json"])
        .env("RUST_LOG", "debug")
        .log(log("rendezvous.log"))
        .start();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    let canary = "canary-7f3a9c message text";
    let mut daemons = Vec::new();
    for (home, name) in [(&bob, "bob"), (&alice, "alice")] {
        assert!(enroll(&rv, home, name, "pw").status.success());
        daemons.push(
            Daemon::options(home)
                .global(&["--log-format", "json"])
                .env("RUST_LOG", "debug")
                .log(log(&format!("{name}.log")))
                .spawn(),
        );
    }
    let out = parley(&alice, &["send", "bob", canary]);
    assert!(out.status.success(), "{}", stderr(&out));
    for mut proc in daemons {
        assert!(proc.terminate().success());
    }
    drop(rv);
    for name in ["rendezvous.log", "alice.log", "bob.log"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(text.lines().count() > 3, "{name} has debug records");
        for line in text.lines() {
            let record: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
            assert!(
                record.get("level").is_some() && record.get("fields").is_some(),
                "{line}"
            );
        }
        assert!(
            !text.contains("canary-7f3a9c"),
            "{name} logged message text"
        );
        assert!(!text.contains("\"pw\""), "{name} logged a password");
        let in_span = |span: &str| {
            text.lines().any(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|r| r["span"]["name"] == span)
            })
        };
        match name {
            "alice.log" => assert!(in_span("usecase.send_message"), "alice's send is a span"),
            "bob.log" => assert!(
                in_span("usecase.receive_message"),
                "bob's receive is a span"
            ),
            _ => assert!(in_span("ca.enroll"), "enrollment is a span"),
        }
    }
}

/// One span as the OTLP receiver decoded it.
#[derive(Debug, Clone)]
struct ExportedSpan {
    service: String,
    user: String,
    trace_id: Vec<u8>,
    name: String,
    /// The span's attributes, values as text.
    attributes: Vec<(String, String)>,
    /// Every attribute and event value, as text.
    values: Vec<String>,
}

/// A real OTLP receiver on a system-chosen loopback port: HTTP/1.1 with protobuf bodies, or
/// gRPC (HTTP/2, length-prefixed protobuf, `grpc-status` trailer).
fn otlp_receiver(grpc: bool) -> (String, std::sync::Arc<std::sync::Mutex<Vec<ExportedSpan>>>) {
    use http_body_util::BodyExt;
    use hyper::body::{Bytes, Frame, Incoming};
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{AnyValue, KeyValue, any_value::Value as V},
    };
    use prost::Message;

    type Spans = std::sync::Arc<std::sync::Mutex<Vec<ExportedSpan>>>;
    type Frames = futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, hyper::Error>>>;
    type Reply = hyper::Response<http_body_util::StreamBody<Frames>>;

    fn text(value: Option<&AnyValue>) -> String {
        match value.and_then(|v| v.value.as_ref()) {
            Some(V::StringValue(s)) => s.clone(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        }
    }
    fn attr(attrs: &[KeyValue], key: &str) -> String {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default()
    }
    fn keep(spans: &Spans, export: ExportTraceServiceRequest) {
        let mut spans = spans.lock().unwrap();
        for resource in export.resource_spans {
            let attrs = resource.resource.map(|r| r.attributes).unwrap_or_default();
            let (service, user) = (attr(&attrs, "service.name"), attr(&attrs, "parley.user"));
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                let mut values: Vec<String> = span
                    .attributes
                    .iter()
                    .map(|kv| text(kv.value.as_ref()))
                    .collect();
                for event in &span.events {
                    values.push(event.name.clone());
                    values.extend(event.attributes.iter().map(|kv| text(kv.value.as_ref())));
                }
                let attributes = span
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                    .collect();
                spans.push(ExportedSpan {
                    attributes,
                    service: service.clone(),
                    user: user.clone(),
                    trace_id: span.trace_id.clone(),
                    name: span.name.clone(),
                    values,
                });
            }
        }
    }
    async fn answer(
        spans: Spans,
        grpc: bool,
        request: hyper::Request<Incoming>,
    ) -> Result<Reply, hyper::Error> {
        let mut body = request.into_body().collect().await?.to_bytes();
        if grpc {
            // 1 byte "compressed" flag and 4 bytes of length before the message.
            body = body.slice(5.min(body.len())..);
        }
        keep(
            &spans,
            ExportTraceServiceRequest::decode(body).unwrap_or_default(),
        );
        let mut frames = Vec::new();
        let mut response = hyper::Response::builder();
        if grpc {
            // An empty ExportTraceServiceResponse, then the gRPC status.
            frames.push(Ok(Frame::data(Bytes::from_static(&[0; 5]))));
            let mut trailers = hyper::HeaderMap::new();
            trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
            frames.push(Ok(Frame::trailers(trailers)));
            response = response.header("content-type", "application/grpc");
        } else {
            response = response.header("content-type", "application/x-protobuf");
        }
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        Ok(response.body(body).expect("a valid response"))
    }

    let spans: Spans = std::sync::Arc::default();
    let shared = spans.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let spans = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        answer(spans.clone(), grpc, request)
                    });
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ = if grpc {
                        hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, service)
                        .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                    };
                });
            }
        });
    });
    let addr = rx.recv_timeout(WAIT).expect("the receiver listens");
    (format!("http://{addr}"), spans)
}

#[test]
fn one_message_is_one_trace_across_both_peers_and_the_rendezvous_over_http() {
    one_message_is_one_trace("http/protobuf");
}

#[test]
fn one_message_is_one_trace_across_both_peers_and_the_rendezvous_over_grpc() {
    one_message_is_one_trace("grpc");
}

fn one_message_is_one_trace(protocol: &str) {
    let (endpoint, spans) = otlp_receiver(protocol == "grpc");
    let traced = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let rv = traced
        .iter()
        .fold(
            Rendezvous::options(&dir.path().join("rendezvous")),
            |options, (k, v)| options.env(k, v),
        )
        .start();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    let mut daemons = Vec::new();
    for (home, name) in [(&bob, "bob"), (&alice, "alice")] {
        assert!(enroll(&rv, home, name, "pw").status.success());
        let options = traced
            .iter()
            .fold(Daemon::options(home), |options, (k, v)| options.env(k, v));
        daemons.push(options.spawn());
    }
    let canary = "canary-41d8 trace text";
    let out = parley(&alice, &["send", "bob", canary]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A clean stop flushes what is buffered.
    for mut proc in daemons {
        assert!(proc.terminate().success());
    }
    let mut rv = rv;
    assert!(rv.proc().terminate().success());

    let send_trace = |spans: &[ExportedSpan]| {
        spans
            .iter()
            .find(|s| s.name == "usecase.send_message" && s.user == "alice")
            .map(|s| s.trace_id.clone())
    };
    wait_for("alice's send span to be exported", || {
        send_trace(&spans.lock().unwrap()).is_some()
    });
    let spans = spans.lock().unwrap().clone();
    let trace = send_trace(&spans).unwrap();
    let in_trace = |service: &str, user: &str, name: &str| {
        spans.iter().any(|s| {
            s.trace_id == trace && s.service == service && s.user == user && s.name == name
        })
    };
    let outcome = |user: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.trace_id == trace && s.user == user && s.name == name)
            .and_then(|s| s.attributes.iter().find(|(k, _)| k == "outcome"))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        outcome("alice", "usecase.send_message").as_deref(),
        Some("delivered")
    );
    assert_eq!(outcome("alice", "p2p.deliver").as_deref(), Some("receipt"));
    assert_eq!(
        outcome("bob", "usecase.receive_message").as_deref(),
        Some("stored")
    );
    for (service, user, name) in [
        ("parley-peer", "alice", "p2p.lookup"),
        ("parley-peer", "alice", "p2p.deliver"),
        ("parley-rendezvous", "", "directory.lookup"),
        ("parley-peer", "bob", "p2p.receive"),
        ("parley-peer", "bob", "usecase.receive_message"),
    ] {
        assert!(
            in_trace(service, user, name),
            "{service} {user}: {name} is not in the send's trace"
        );
    }
    for span in &spans {
        assert!(
            !span.values.iter().any(|v| v.contains("canary-41d8")) && !span.name.contains("canary"),
            "message text leaked into {span:?}"
        );
    }
}

/// Every regular file under `root` whose bytes contain `needle` (UTF-8 or UTF-16).
fn files_holding(root: &Path, needle: &str) -> Vec<PathBuf> {
    let forms: Vec<Vec<u8>> = vec![
        needle.as_bytes().to_vec(),
        needle.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        needle.encode_utf16().flat_map(u16::to_be_bytes).collect(),
    ];
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    let mut files = 0;
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files += 1;
                let bytes = std::fs::read(entry.path()).unwrap();
                if forms
                    .iter()
                    .any(|f| bytes.windows(f.len()).any(|w| w == f.as_slice()))
                {
                    found.push(entry.path());
                }
            }
        }
    }
    assert!(
        files > 0,
        "{} holds no file: the search proves nothing",
        root.display()
    );
    found
}

fn history_json(home: &Path, with: &str) -> Value {
    let out = parley(home, &["history", with, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)
}

#[test]
fn a_disappearing_message_vanishes_on_both_sides_and_no_file_or_log_ever_holds_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    let (outside, logs) = (dir.path().join("outside"), dir.path().join("logs"));
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
    assert!(enroll(&rv, &alice, "alice", "pw-alice").status.success());
    let mut bob_daemon = Daemon::options(&bob)
        .debug_log(&logs.join("bob.log"))
        .start();
    let mut alice_daemon = Daemon::options(&alice)
        .debug_log(&logs.join("alice.log"))
        .start();

    let canary = "canary-3e9b1 words that must never rest in the clear";
    let attached_canary = "canary-attached-77f0 file content";
    let file = outside.join("notes.txt");
    std::fs::write(&file, attached_canary.repeat(100)).unwrap();
    let out = parley(
        &alice,
        &[
            "send",
            "bob",
            canary,
            "--ttl",
            "4s",
            "--attach",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let doc = history_json(&bob, "alice");
    let m = &doc["messages"][0];
    assert_eq!(
        (m["text"].as_str(), m["verified"].as_bool()),
        (Some(canary), Some(true))
    );
    assert_eq!(m["ttl"], "4s");
    assert!(m["expires_at"].is_string());
    assert_eq!(m["attachments"][0]["name"], "notes.txt");
    assert_eq!(doc["chain"]["incoming"]["state"], "intact");
    assert_eq!(history_json(&alice, "bob")["messages"][0]["ttl"], "4s");
    // The attachment saves back byte for byte, outside the homes.
    let saved = outside.join("saved.txt");
    let id = m["id"].as_str().unwrap().to_owned();
    let out = save_attachment(&bob, "alice", &id, &saved);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&file).unwrap()
    );

    let search = |when: &str| {
        for root in [&alice, &bob, &dir.path().join("rendezvous"), &logs] {
            for needle in ["canary-3e9b1", "canary-attached-77f0"] {
                let found = files_holding(root, needle);
                assert!(found.is_empty(), "{when}: {needle} found in {found:?}");
            }
        }
    };
    assert!(
        !files_holding(&outside, "canary-attached-77f0").is_empty(),
        "the search finds the canary where it is (the file attached)"
    );
    search("before expiry");

    wait_for("the message to expire on both sides", || {
        history_json(&alice, "bob")["messages"] == serde_json::json!([])
            && history_json(&bob, "alice")["messages"] == serde_json::json!([])
    });
    assert_eq!(
        json(&parley(&bob, &["conversations", "--json"])),
        serde_json::json!([])
    );
    let out = save_attachment(&bob, "alice", &id, &outside.join("late"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "expired attachments cannot be saved"
    );
    // After the purge, and after a restart, nothing comes back.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(bob_daemon.terminate().success());
    assert!(alice_daemon.terminate().success());
    let _bob_daemon = Daemon::options(&bob)
        .debug_log(&logs.join("bob-2.log"))
        .start();
    assert_eq!(
        history_json(&bob, "alice")["messages"],
        serde_json::json!([])
    );
    search("after expiry and restart");
    drop(rv);
}

#[test]
fn attachments_over_the_recipient_cap_are_rejected_for_good_without_blocking_others() {
    let (dir, rv, alice, bob) = enrolled_pair();
    let logs = dir.path();
    let _bob_daemon = Daemon::options(&bob)
        .debug_log(&logs.join("bob.log"))
        .args(&["--max-attachment-mib", "1"])
        .start();
    let _alice_daemon = Daemon::options(&alice)
        .debug_log(&logs.join("alice.log"))
        .start();
    let small = dir.path().join("small.bin");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&small, &bytes).unwrap();
    let out = parley(
        &alice,
        &["send", "bob", "small", "--attach", small.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 1_500_000]).unwrap();
    let out = parley(
        &alice,
        &["send", "bob", "big", "--attach", big.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("for good") && stderr(&out).contains("at most"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = parley(&alice, &["send", "bob", "still flowing"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let states: Vec<String> = history_json(&alice, "bob")["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["delivery"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["delivered", "rejected", "delivered"]);
    assert_eq!(json(&parley(&alice, &["status", "--json"]))["outbox"], 0);
    // Bob got the small one and the text, never the big one.
    let received = history_json(&bob, "alice");
    let texts: Vec<&str> = received["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["small", "still flowing"]);
    let id = received["messages"][0]["id"].as_str().unwrap();
    let saved = dir.path().join("saved.bin");
    let save = |to: &Path| save_attachment(&bob, "alice", id, to);
    assert!(save(&saved).status.success());
    assert_eq!(std::fs::read(&saved).unwrap(), bytes);
    assert_eq!(save(&saved).status.code(), Some(2), "never overwrites");
    drop(rv);
}

#[test]
fn a_passphrase_protected_home_opens_only_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let carol = dir.path().join("carol");
    let out = Command::new(binary("parley"))
        .arg("--home")
        .arg(&carol)
        .args([
            "enroll",
            "--server",
            &rv.url,
            "--user",
            "carol",
            "--ca-fingerprint",
            &rv.fingerprint,
        ])
        .env("PARLEY_PASSWORD", "pw")
        .env("PARLEY_PASSPHRASE", "correct horse battery staple")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("key is kept in a file"),
        "no key-file warning: {}",
        stderr(&out)
    );
    assert!(!carol.join("store").join("store.key").exists());

    let snapshot = |root: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pending = vec![root.to_owned()];
        while let Some(folder) = pending.pop() {
            for e in std::fs::read_dir(&folder).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    pending.push(e.path());
                } else {
                    out.push((e.path(), std::fs::read(e.path()).unwrap()));
                }
            }
        }
        out.sort();
        out
    };
    let before = snapshot(&carol);
    for (env, expect) in [
        (Some("wrong horse"), "passphrase does not open"),
        (None, "PARLEY_PASSPHRASE"),
    ] {
        let mut cmd = Command::new(binary("parley"));
        cmd.arg("--home")
            .arg(&carol)
            .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env_remove("PARLEY_PASSPHRASE")
            .stdin(Stdio::null());
        if let Some(p) = env {
            cmd.env("PARLEY_PASSPHRASE", p);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "one sentence: {}",
            stderr(&out)
        );
    }
    assert_eq!(snapshot(&carol), before, "a refused open changes nothing");
    let mut carol_daemon = Daemon::options(&carol)
        .debug_log(&dir.path().join("carol.log"))
        .env("PARLEY_PASSPHRASE", "correct horse battery staple")
        .start();
    assert!(carol_daemon.terminate().success());
    let log = std::fs::read_to_string(dir.path().join("carol.log")).unwrap();
    assert!(log.lines().count() > 3, "debug logs were written");
    assert!(
        !log.contains("correct horse"),
        "the passphrase never reaches a log"
    );
    assert!(
        !log.contains("key is kept in a file"),
        "no key-file warning"
    );
    drop(rv);
}
