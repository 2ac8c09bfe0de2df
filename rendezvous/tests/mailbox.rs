//! The mailbox from the attacker's side, against the real binary: enrolled devices speaking the
//! real mutual-TLS upgrade and raw `/parley/mailbox/1` requests. A deposit comes back byte for
//! byte to its recipient only; every quota refuses with its code and drops nothing held;
//! malformed and oversized deposits leave the mailbox serving others; unknown names are
//! refused; key look-ups answer the certificate or null; mail survives a restart and expires;
//! and neither the mailbox's files nor the log name the sender after a deposit.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{Enrolled, enroll, https};
use futures::StreamExt as _;
use libp2p::{
    PeerId,
    request_response::{self, OutboundRequestId, ProtocolSupport},
    swarm::SwarmEvent,
};
use parley_p2p::protocol::{MAILBOX_PROTOCOL, MailboxRequest, MailboxResponse};
use parley_testkit::{Log, Rendezvous};
use tokio::sync::{mpsc, oneshot};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// How long one request may take.
const ANSWER: Duration = Duration::from_secs(20);

type Reply = oneshot::Sender<Result<MailboxResponse, String>>;

/// An enrolled device with a raw mailbox client connected to the rendezvous.
struct Device {
    commands: mpsc::Sender<(MailboxRequest, Reply)>,
    /// `Waiting` requests the rendezvous sent it.
    waiting: Arc<AtomicUsize>,
    /// Its certificate, DER.
    certificate: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Device {
    async fn enroll(server: &Rendezvous, name: &str) -> (Self, Enrolled) {
        let enrolled = enroll(server, name).await;
        (Self::connect(server, &enrolled).await, enrolled)
    }

    async fn connect(server: &Rendezvous, enrolled: &Enrolled) -> Self {
        // No limits of its own beyond a generous one: it sends what the rendezvous must refuse.
        let codec = request_response::json::codec::Codec::default()
            .set_request_size_maximum(64 << 20)
            .set_response_size_maximum(64 << 20);
        let behaviour =
            request_response::json::Behaviour::<MailboxRequest, MailboxResponse>::with_codec(
                codec,
                [(MAILBOX_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(ANSWER),
            );
        let (mut swarm, addr, server_id) = common::device_swarm(
            server,
            &enrolled.secret,
            enrolled.certificate.clone(),
            enrolled.ca.clone(),
            behaviour,
        );
        swarm.dial(addr).expect("dial");
        let connected = tokio::time::timeout(ANSWER, async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => return,
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        panic!("cannot connect to the rendezvous: {error}")
                    }
                    _ => {}
                }
            }
        })
        .await;
        assert!(connected.is_ok(), "no connection to the rendezvous");
        let (commands, rx) = mpsc::channel(64);
        let waiting = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run(swarm, server_id, rx, waiting.clone()));
        Self {
            commands,
            waiting,
            certificate: enrolled.certificate.clone(),
            task,
        }
    }

    /// The answer to `request`, or the failure of its stream.
    async fn try_ask(&self, request: MailboxRequest) -> Result<MailboxResponse, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send((request, tx))
            .await
            .expect("the client runs");
        tokio::time::timeout(ANSWER * 2, rx)
            .await
            .expect("an answer in time")
            .expect("the client answers")
    }

    async fn ask(&self, request: MailboxRequest) -> MailboxResponse {
        self.try_ask(request).await.expect("an answer")
    }

    async fn deposit(&self, to: &str, sealed: &[u8], files: &[&[u8]]) -> MailboxResponse {
        self.deposit_until(to, sealed, files, None).await
    }

    async fn deposit_until(
        &self,
        to: &str,
        sealed: &[u8],
        files: &[&[u8]],
        expires_at_ms: Option<i64>,
    ) -> MailboxResponse {
        self.ask(MailboxRequest::Deposit {
            to: to.into(),
            sealed: B64.encode(sealed),
            files: files.iter().map(|f| B64.encode(f)).collect(),
            expires_at_ms,
            meta: Default::default(),
        })
        .await
    }

    /// The ids and bytes (sealed, files) of the oldest batch held for it.
    async fn fetch(&self) -> Vec<(String, Vec<u8>, Vec<Vec<u8>>)> {
        match self
            .ask(MailboxRequest::Fetch {
                meta: Default::default(),
            })
            .await
        {
            MailboxResponse::Mail { items, .. } => items
                .into_iter()
                .map(|i| {
                    let files = i
                        .files
                        .iter()
                        .map(|f| B64.decode(f).expect("b64"))
                        .collect();
                    (i.id, B64.decode(&i.sealed).expect("b64"), files)
                })
                .collect(),
            other => panic!("a fetch answers mail, got {other:?}"),
        }
    }

    async fn ack(&self, ids: &[String]) {
        let answer = self.ask(MailboxRequest::Ack { ids: ids.to_vec() }).await;
        assert_eq!(answer, MailboxResponse::Acknowledged);
    }
}

async fn run(
    mut swarm: libp2p::Swarm<request_response::json::Behaviour<MailboxRequest, MailboxResponse>>,
    server: PeerId,
    mut commands: mpsc::Receiver<(MailboxRequest, Reply)>,
    waiting: Arc<AtomicUsize>,
) {
    let mut pending: HashMap<OutboundRequestId, Reply> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some((request, reply)) = command else { return };
                let id = swarm.behaviour_mut().send_request(&server, request);
                pending.insert(id, reply);
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(request_response::Event::Message { message, .. }) => {
                    match message {
                        request_response::Message::Response { request_id, response } => {
                            if let Some(reply) = pending.remove(&request_id) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                        request_response::Message::Request { request, channel, .. } => {
                            if matches!(request, MailboxRequest::Waiting) {
                                waiting.fetch_add(1, Ordering::SeqCst);
                            }
                            let _ = swarm
                                .behaviour_mut()
                                .send_response(channel, MailboxResponse::Noted);
                        }
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) => {
                    if let Some(reply) = pending.remove(&request_id) {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
                _ => {}
            },
        }
    }
}

fn start(data: &Path, extra: &[&str]) -> Rendezvous {
    common::start(data, extra)
}

fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    i64::try_from(ms).expect("in range")
}

fn code(answer: &MailboxResponse) -> &str {
    match answer {
        MailboxResponse::Refused { code, .. } => code,
        MailboxResponse::Held => "held",
        _ => "other",
    }
}

fn assert_refused(answer: &MailboxResponse, expected: &str, permanent: bool, what: &str) {
    match answer {
        MailboxResponse::Refused {
            code,
            permanent: p,
            reason,
        } => {
            assert_eq!(code, expected, "{what}: {reason}");
            assert_eq!(*p, permanent, "{what}: permanence of {code}");
        }
        other => panic!("{what}: refused {expected} expected, got {other:?}"),
    }
}

async fn metrics(server: &Rendezvous) -> String {
    let answer = https(server).raw("GET /metrics HTTP/1.1", b"").await;
    String::from_utf8_lossy(&answer.body).into_owned()
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start:?} in\n{text}"))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_reaches_its_recipient_only_and_names_no_sender() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    let server = Rendezvous::options(&data)
        .args(&["--log-format", "json"])
        .env("RUST_LOG", "debug")
        .log(Log::File(log.clone()))
        .start();
    let sender = "sender-canary-q7";
    let (alice, _) = Device::enroll(&server, sender).await;
    let (bob, _) = Device::enroll(&server, "bob").await;
    let (eve, _) = Device::enroll(&server, "eve").await;

    // Key look-ups: the newest certificate of an enrolled name, null for anyone else.
    let keys = |username: &str| MailboxRequest::Keys {
        username: username.into(),
    };
    let bob_der = match alice.ask(keys("bob")).await {
        MailboxResponse::Certificate { der: Some(der) } => B64.decode(der).expect("b64"),
        other => panic!("bob's certificate expected, got {other:?}"),
    };
    assert_eq!(bob_der, bob.certificate);
    assert_eq!(
        alice.ask(keys("nobody")).await,
        MailboxResponse::Certificate { der: None }
    );
    assert_eq!(
        alice.ask(keys("Not A Name")).await,
        MailboxResponse::Certificate { der: None }
    );

    let logged_before = std::fs::metadata(&log).expect("the log").len();
    let sealed: Vec<u8> = (0..2_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = vec![0xabu8; 70_000];
    assert_eq!(
        alice.deposit("bob", &sealed, &[&file, b""]).await,
        MailboxResponse::Held
    );
    assert_refused(
        &alice.deposit("nobody", &sealed, &[]).await,
        "unknown_user",
        false,
        "a deposit for a name nobody enrolled",
    );

    // Nothing under the mailbox's folder names the sender; the recipient's name is there, so
    // the search finds what is written.
    let mut recipient_seen = false;
    for path in files_under(&data.join("mailbox")) {
        let bytes = std::fs::read(&path).expect("readable file");
        assert!(
            !contains(&bytes, sender.as_bytes()),
            "{} names the sender",
            path.display()
        );
        recipient_seen |= contains(&bytes, b"bob/");
    }
    assert!(recipient_seen, "the mailbox files name their recipient");
    let mode = std::fs::metadata(data.join("mailbox"))
        .expect("the mailbox folder")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700,
        "the mailbox folder is private"
    );

    // Bob is told, eve gets nothing and her acknowledgement of bob's entry deletes nothing.
    let deadline = tokio::time::Instant::now() + ANSWER;
    while bob.waiting.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob was never told mail waits"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(eve.fetch().await.is_empty(), "eve sees bob's mail");
    let held = bob.fetch().await;
    assert_eq!(held.len(), 1);
    let (id, got_sealed, got_files) = &held[0];
    assert_eq!(got_sealed, &sealed);
    assert_eq!(got_files, &vec![file.clone(), Vec::new()]);
    eve.ack(std::slice::from_ref(id)).await;
    assert_eq!(bob.fetch().await.len(), 1, "eve's ack deleted bob's mail");
    bob.ack(std::slice::from_ref(id)).await;
    assert!(bob.fetch().await.is_empty());

    let text = metrics(&server).await;
    assert_eq!(metric(&text, "parley_mailbox_deposits_total "), 1);
    assert_eq!(metric(&text, "parley_mailbox_acknowledged_total "), 1);
    assert_eq!(metric(&text, "parley_mailbox_held_entries "), 0);
    assert_eq!(metric(&text, "parley_mailbox_key_lookups_total "), 3);
    assert!(metric(&text, "parley_mailbox_fetches_total ") >= 4);
    assert_eq!(
        metric(
            &text,
            "parley_mailbox_refusals_total{code=\"unknown_user\"} "
        ),
        1
    );

    // The log after the deposit: lines, none naming the sender.
    drop((alice, bob, eve));
    let logged = std::fs::read(&log).expect("the log");
    let after = String::from_utf8_lossy(&logged[usize::try_from(logged_before).expect("size")..])
        .into_owned();
    assert!(after.lines().count() > 0, "the debug log wrote nothing");
    for line in after.lines() {
        assert!(
            !line.contains(sender),
            "a log line names the sender: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_quota_refuses_with_its_code_and_drops_nothing_held() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(
        dir.path(),
        &[
            "--mailbox-max-entries",
            "3",
            "--mailbox-max-mib",
            "1",
            "--mailbox-max-entries-per-sender",
            "2",
            "--mailbox-max-attachment-mib",
            "1",
            "--mailbox-deposit-burst",
            "6",
            "--mailbox-deposits-per-second",
            "1",
        ],
    );
    let (alice, _) = Device::enroll(&server, "alice").await;
    let (carol, _) = Device::enroll(&server, "carol").await;
    let (bob, _) = Device::enroll(&server, "bob").await;
    let (dave, _) = Device::enroll(&server, "dave").await;

    // Entries: alice's share is two, bob's mailbox three.
    assert_eq!(
        alice.deposit("bob", b"a1", &[]).await,
        MailboxResponse::Held
    );
    assert_eq!(
        alice.deposit("bob", b"a2", &[]).await,
        MailboxResponse::Held
    );
    assert_refused(
        &alice.deposit("bob", b"a3", &[]).await,
        "mailbox_sender_quota",
        false,
        "alice's third",
    );
    assert_eq!(
        carol.deposit("bob", b"c1", &[]).await,
        MailboxResponse::Held
    );
    assert_refused(
        &carol.deposit("bob", b"c2", &[]).await,
        "mailbox_full",
        false,
        "a fourth entry for bob",
    );

    // Bytes: dave's mailbox holds one MiB; an attachment of more than one MiB is never held.
    let big = vec![7u8; 700 * 1024];
    assert_eq!(
        carol.deposit("dave", b"c3", &[&big]).await,
        MailboxResponse::Held
    );
    assert_refused(
        &alice.deposit("dave", b"a4", &[&big]).await,
        "mailbox_full",
        false,
        "dave's mailbox over its bytes",
    );
    let too_big = vec![7u8; 1024 * 1024 + 1];
    assert_refused(
        &alice.deposit("dave", b"a5", &[&too_big]).await,
        "mailbox_attachment_too_large",
        true,
        "an attachment over the limit",
    );

    // Malformed deposits, and one over the protocol's size: refused or cut off.
    let malformed = [
        MailboxRequest::Deposit {
            to: "dave".into(),
            sealed: "not base64!".into(),
            files: vec![],
            expires_at_ms: None,
            meta: Default::default(),
        },
        MailboxRequest::Deposit {
            to: "dave".into(),
            sealed: String::new(),
            files: vec![],
            expires_at_ms: None,
            meta: Default::default(),
        },
        MailboxRequest::Deposit {
            to: "dave".into(),
            sealed: B64.encode(b"x"),
            files: vec![B64.encode(b"f"); 9],
            expires_at_ms: None,
            meta: Default::default(),
        },
        MailboxRequest::Deposit {
            to: "Dave Smith".into(),
            sealed: B64.encode(b"x"),
            files: vec![],
            expires_at_ms: None,
            meta: Default::default(),
        },
        MailboxRequest::Deposit {
            to: "dave".into(),
            sealed: B64.encode(vec![1u8; 26 * 1024]),
            files: vec![],
            expires_at_ms: None,
            meta: Default::default(),
        },
        MailboxRequest::Ack {
            ids: vec!["zz".into()],
        },
        MailboxRequest::Waiting,
    ];
    for request in malformed {
        let what = format!("{request:?}").chars().take(80).collect::<String>();
        assert_refused(&dave.ask(request).await, "mailbox_malformed", true, &what);
    }
    assert_refused(
        &dave
            .deposit_until("bob", b"late", &[], Some(now_ms() - 1_000))
            .await,
        "mailbox_expired",
        true,
        "an expired deposit",
    );
    let oversized = dave
        .try_ask(MailboxRequest::Deposit {
            to: "bob".into(),
            sealed: B64.encode(b"x"),
            files: vec![B64.encode(vec![0u8; 5 * 1024 * 1024]); 2],
            expires_at_ms: None,
            meta: Default::default(),
        })
        .await;
    assert!(
        oversized.is_err(),
        "an oversized deposit was answered: {oversized:?}"
    );

    // The rate: alice has spent five of her six deposits at once (refused ones count too);
    // one a second comes back, so a quick run of them meets the limit.
    let mut codes = Vec::new();
    for n in 0..20u8 {
        let answer = alice.deposit("dave", &[n], &[]).await;
        codes.push(code(&answer).to_owned());
        if codes.last().is_some_and(|c| c == "mailbox_rate_limited") {
            break;
        }
    }
    assert_eq!(
        codes.last().map(String::as_str),
        Some("mailbox_rate_limited"),
        "no rate limit in {codes:?}"
    );
    let held_for_dave = codes.iter().filter(|c| *c == "held").count();

    // Everything held is still there, and the mailbox still serves others.
    let held: Vec<Vec<u8>> = bob.fetch().await.into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(held, vec![b"a1".to_vec(), b"a2".to_vec(), b"c1".to_vec()]);
    let (erin, _) = Device::enroll(&server, "erin").await;
    assert_eq!(
        erin.deposit("carol", b"e1", &[]).await,
        MailboxResponse::Held
    );

    let text = metrics(&server).await;
    for (code, at_least) in [
        ("mailbox_sender_quota", 1),
        ("mailbox_full", 2),
        ("mailbox_attachment_too_large", 1),
        ("mailbox_malformed", 7),
        ("mailbox_expired", 1),
        ("mailbox_rate_limited", 1),
    ] {
        let n = metric(
            &text,
            &format!("parley_mailbox_refusals_total{{code=\"{code}\"}} "),
        );
        assert!(n >= at_least, "{code}: {n} refusals counted");
    }
    let held_now = 5 + u64::try_from(held_for_dave).expect("small");
    assert_eq!(metric(&text, "parley_mailbox_held_entries "), held_now);
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_survives_a_restart_and_goes_at_its_expiry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &[]);
    let (alice, alice_keys) = Device::enroll(&server, "alice").await;
    let bob_keys = enroll(&server, "bob").await;
    assert_eq!(
        alice.deposit("bob", b"kept", &[b"file"]).await,
        MailboxResponse::Held
    );
    // It expires after the restart, so that the new process purges it.
    let brief_until = now_ms() + 3_000;
    assert_eq!(
        alice
            .deposit_until("bob", b"brief", &[], Some(brief_until))
            .await,
        MailboxResponse::Held
    );
    drop(alice);
    assert!(server.stop().success(), "the rendezvous stops cleanly");

    let server = start(dir.path(), &[]);
    let text = metrics(&server).await;
    assert!(metric(&text, "parley_mailbox_held_entries ") >= 1);
    let bob = Device::connect(&server, &bob_keys).await;
    let wait = brief_until + 1_500 - now_ms();
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    let held = bob.fetch().await;
    assert_eq!(held.len(), 1, "only the lasting entry is fetched");
    assert_eq!(held[0].1, b"kept");
    assert_eq!(held[0].2, vec![b"file".to_vec()]);
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "parley_mailbox_expired_total "), 1);
    assert_eq!(metric(&text, "parley_mailbox_held_entries "), 1);
    // The sender can deposit again after the restart.
    let alice = Device::connect(&server, &alice_keys).await;
    assert_eq!(
        alice.deposit("bob", b"again", &[]).await,
        MailboxResponse::Held
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_of_zero_turns_the_mailbox_off_and_bad_flags_exit_2() {
    for (flag, value) in [
        ("--mailbox-hold", "5x"),
        ("--mailbox-hold", "d"),
        ("--mailbox-hold", "99999d"),
        ("--mailbox-max-entries", "0"),
        ("--mailbox-max-attachment-mib", "2048"),
        ("--mailbox-deposit-burst", "many"),
    ] {
        let usage = std::process::Command::new(env!("CARGO_BIN_EXE_parley-rendezvous"))
            .args([flag, value])
            .output()
            .expect("runs");
        assert_eq!(usage.status.code(), Some(2), "{flag} {value}: {usage:?}");
        let stderr = String::from_utf8_lossy(&usage.stderr);
        assert!(
            stderr.lines().next().is_some_and(|l| l.contains(flag)),
            "{flag} {value}: {stderr}"
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &["--mailbox-hold", "0"]);
    let (alice, _) = Device::enroll(&server, "alice").await;
    let _bob = enroll(&server, "bob").await;
    assert_refused(
        &alice.deposit("bob", b"x", &[]).await,
        "mailbox_disabled",
        true,
        "a deposit to a disabled mailbox",
    );
    assert_refused(
        &alice
            .ask(MailboxRequest::Fetch {
                meta: Default::default(),
            })
            .await,
        "mailbox_disabled",
        true,
        "a fetch from a disabled mailbox",
    );
    assert!(
        !dir.path().join("mailbox").exists(),
        "a disabled mailbox opens no store"
    );
}
