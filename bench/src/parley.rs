//! Parley's side of the benchmark: a real rendezvous (a child process, so its memory can be
//! read on its own), real enrollment over HTTPS, real nodes over mutual TLS on loopback, real
//! encrypted stores in temporary folders, the real use cases.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use parley_domain::{MessageId, MessageText, Password, Timestamp, Username};
use parley_envelope::Sealer;
use parley_p2p::{Credentials, Multiaddr, Node, NodeConfig};
use parley_peer::{Attachment, Config, Home, Outgoing, Peer};
use parley_store::{Store, Unlock};
use parley_usecases::commands::Enroll;
use parley_usecases::ports::{Directory, EnrollRequest, NodeInfo};

/// The largest attachment the benchmark's devices send and take.
const ATTACHMENT_LIMIT: u64 = 1 << 30;

/// `parley-bench --serve-rendezvous DIR`: the rendezvous in this process, until stdin closes.
pub fn serve_rendezvous(data: &Path) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // The benchmark enrolls dozens of devices from one address: the per-client enrollment
        // limit would refuse them, and it is not what is measured. Likewise the mailbox's
        // quotas and per-sender rate: the mailbox measure holds 100,000 entries for one
        // recipient from a handful of senders, to measure the store, not the limits.
        let protection = parley_rendezvous::Protection {
            enroll: parley_rendezvous::limit::Rate {
                burst: u32::MAX,
                per_minute: u32::MAX,
            },
            mailbox: crate::mailbox::LIMITS,
            ..parley_rendezvous::Protection::default()
        };
        let config = parley_rendezvous::Config {
            data: data.to_owned(),
            https: "127.0.0.1:0".parse()?,
            p2p: "/ip4/127.0.0.1/tcp/0".parse()?,
            announce: Vec::new(),
            ca_key: None,
            certificate_days: parley_domain::pki::MAX_CERT_VALIDITY_DAYS,
            metrics: parley_rendezvous::MetricsAt::default(),
        };
        let running = parley_rendezvous::start_with(config, protection).await?;
        let p2p = running
            .p2p_addrs()
            .first()
            .context("the directory listens nowhere")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ca-fingerprint: {}", running.fingerprint())?;
        writeln!(out, "https: https://{}", running.https())?;
        writeln!(out, "p2p: {p2p}")?;
        out.flush()?;
        drop(out);
        // The parent closes our stdin (or dies) to stop us.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await?;
        running.shutdown().await;
        Ok(())
    })
}

/// A rendezvous running as a child process of the benchmark.
pub struct Rendezvous {
    child: Child,
    /// Its data folder.
    pub data: PathBuf,
    /// The HTTPS URL.
    pub url: String,
    /// The CA fingerprint.
    pub fingerprint: String,
    /// The directory's address.
    pub p2p: Multiaddr,
}

impl Rendezvous {
    /// Starts `parley-bench --serve-rendezvous <dir>/rendezvous` and reads its three lines.
    pub fn spawn(dir: &Path) -> Result<Self> {
        let data = dir.join("rendezvous");
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-rendezvous")
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the rendezvous")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut field = |prefix: &str| -> Result<String> {
            let line = lines
                .next()
                .context("the rendezvous stopped before printing its addresses")??;
            line.strip_prefix(prefix)
                .map(|v| v.trim().to_owned())
                .ok_or_else(|| anyhow!("unexpected rendezvous line {line:?}"))
        };
        let fingerprint = field("ca-fingerprint:")?;
        let url = field("https:")?;
        let p2p = field("p2p:")?.parse()?;
        Ok(Self {
            child,
            data,
            url,
            fingerprint,
            p2p,
        })
    }

    /// The rendezvous process's resident memory, in bytes.
    pub fn rss(&self) -> Result<u64> {
        rss_of(self.child.id())
    }

    /// CPU time the rendezvous process has used so far (user + system).
    pub fn cpu(&self) -> Result<Duration> {
        cpu_of(self.child.id())
    }
}

/// CPU time a process has used (user + system), from `/proc/<pid>/stat` (clock ticks of
/// 1/100 s, Linux's `USER_HZ`).
pub fn cpu_of(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd stat line")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short stat line")?
            .parse::<u64>()
            .map_err(Into::into)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, from `/proc/<pid>/status`.
pub fn rss_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")?;
    Ok(kib * 1024)
}

/// Enrolls `name` over HTTPS into a new store in the home folder `home`; returns the store.
pub async fn enroll(rv: &Rendezvous, home: &Path, name: &str) -> Result<Arc<Store>> {
    enroll_at(&rv.url, &rv.fingerprint, home, name).await
}

async fn enroll_at(url: &str, fingerprint: &str, home: &Path, name: &str) -> Result<Arc<Store>> {
    let store = Arc::new(Home::new(home.to_owned()).open(Unlock::KeyFile)?);
    let request = EnrollRequest {
        server: url.to_owned(),
        user: Username::parse(name)?,
        password: Password::new(format!("bench-password-{name}")),
        ca_pin: Some(parley_domain::CaFingerprint::parse(fingerprint)?),
        keys: None,
        totp: None,
    };
    let enrollment = parley_enroll::HttpsEnrollment::new();
    Enroll::new(&enrollment, &*store).run(&request).await?;
    Ok(store)
}

/// A running device: the same peer as `parley daemon`, started through the same entry point.
pub struct Device {
    /// The enrolled user.
    pub user: Username,
    /// The peer.
    pub peer: Arc<Peer>,
}

impl Device {
    /// Starts the peer of an enrolled store as `parley daemon` does, and waits until the
    /// rendezvous knows it.
    pub async fn start(store: Arc<Store>) -> Result<Self> {
        let device = Self::launch(store).await?;
        device.wait_published().await?;
        Ok(device)
    }

    /// Starts the peer of an enrolled store as `parley daemon` does, without waiting for the
    /// rendezvous.
    pub async fn launch(store: Arc<Store>) -> Result<Self> {
        let peer = Peer::start(
            store,
            Config {
                listen: "/ip4/127.0.0.1/tcp/0".parse()?,
                max_attachment: ATTACHMENT_LIMIT,
                rekey_every: parley_domain::ratchet::RekeyEvery::DEFAULT,
                watch_presence: false,
                program: "the benchmark",
            },
        )
        .await?;
        Ok(Self {
            user: peer.user().clone(),
            peer,
        })
    }

    /// Waits until the rendezvous knows this device (30 s at most).
    pub async fn wait_published(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.peer.snapshot().rendezvous_connected
                && self
                    .peer
                    .node()
                    .lookup(&self.user)
                    .await
                    .is_ok_and(|f| !f.is_empty())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("{} did not reach the rendezvous within 30 s", self.user)
    }

    /// Sends `text` (with `files`) to `to` and waits for the receipt.
    pub async fn send(&self, to: &Username, text: &str, files: &[&Path]) -> Result<()> {
        self.peer
            .send(Outgoing {
                to: to.clone(),
                text: MessageText::parse(text)?,
                ttl: None,
                attachments: files
                    .iter()
                    .map(|p| Attachment::file(p.to_path_buf()))
                    .collect(),
            })
            .await
            .map(drop)
            .map_err(|e| anyhow!("{e}"))
    }

    /// Stops the peer.
    pub async fn stop(self) {
        self.peer.shutdown().await;
    }
}

/// Round-trip times of `n` sends of `size`-byte texts from `from` to `to`, after one warm-up
/// send (first contact: keys pinned, connection open).
pub async fn latency(from: &Device, to: &Device, n: usize, size: usize) -> Result<Vec<Duration>> {
    let text = "x".repeat(size);
    from.send(&to.user, &text, &[]).await?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        from.send(&to.user, &text, &[]).await?;
        times.push(start.elapsed());
    }
    Ok(times)
}

/// Messages per second: `count` sends of `size` bytes, `concurrency` at a time, each waiting
/// for its durable receipt.
pub async fn throughput(
    from: &Arc<Device>,
    to: &Username,
    count: usize,
    size: usize,
    concurrency: usize,
) -> Result<f64> {
    let text = Arc::new("y".repeat(size));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (from, to, text) = (from.clone(), to.clone(), text.clone());
        let share = count / concurrency + usize::from(worker < count % concurrency);
        tasks.spawn(async move {
            for _ in 0..share {
                from.send(&to, &text, &[]).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// Seconds for one message carrying a `bytes`-byte attachment (sealing it, sending it ahead of
/// the envelope, the recipient's hashing, syncing and claiming it), as bytes per second.
pub async fn bulk(from: &Device, to: &Device, dir: &Path, bytes: u64) -> Result<f64> {
    let file = dir.join("bulk.bin");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let block: Vec<u8> = (0..65_536u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            out.write_all(&block[..n])?;
            left -= n as u64;
        }
        out.flush()?;
    }
    from.send(&to.user, "warm-up", &[]).await?;
    let start = Instant::now();
    from.send(&to.user, "bulk", &[file.as_path()]).await?;
    let rate = bytes as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&file)?;
    Ok(rate)
}

/// Average seal and open time of a `size`-byte message in a conversation's ratchet session,
/// over `n` of each: the steady state of a conversation (one speaker, the rekey timer far off,
/// so no DH step; a step costs one X25519 more on each side).
pub fn crypto(n: usize, size: usize) -> Result<(Duration, Duration)> {
    let (alice, bob, header, body) = sample(size)?;
    let hour = Duration::from_secs(3600);
    let alice = alice.with_rekey_every(hour, hour);
    let (mut ours, mut theirs) = session_pair(&alice, &bob)?;
    // The first message takes the first DH step and carries the agreement; bob's answer ends
    // that (alice heard back): neither is measured.
    answered(&alice, &bob, &header, &body, &mut ours, &mut theirs)?;
    let start = Instant::now();
    let mut sealed = Vec::with_capacity(n);
    for _ in 0..n {
        sealed.push(alice.seal_in(&header, &body, &mut ours, Timestamp(2))?);
    }
    let seal = start.elapsed() / u32::try_from(n)?;
    let start = Instant::now();
    for s in &sealed {
        bob.open_in(&s.bytes, &alice.ed25519_public(), &mut theirs, Timestamp(3))?;
    }
    let open = start.elapsed() / u32::try_from(n)?;
    Ok((seal, open))
}

/// The hybrid first-contact agreement alone (X25519 ×4 and ML-KEM-768), averaged over `n`:
/// (the initiator's side with its first message sealed, the responder's with it opened).
pub fn first_contact_crypto(n: usize) -> Result<(Duration, Duration)> {
    let (alice, bob, header, body) = sample(256)?;
    let prekeys = Prekeys::of(&bob)?;
    let start = Instant::now();
    let mut firsts = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ours = alice.initiate(
            &prekeys.bundle,
            &bob.ed25519_public(),
            &bob.x25519_public(),
            Timestamp(1),
        )?;
        let sealed = alice.seal_in(&header, &body, &mut ours, Timestamp(1))?;
        firsts.push((ours.initial.clone().context("the agreement")?, sealed.bytes));
    }
    let initiate = start.elapsed() / u32::try_from(n)?;
    let start = Instant::now();
    for (initial, bytes) in &firsts {
        let mut theirs = bob.respond(initial, &prekeys.secrets, Timestamp(1))?;
        bob.open_in(bytes, &alice.ed25519_public(), &mut theirs, Timestamp(1))?;
    }
    let respond = start.elapsed() / u32::try_from(n)?;
    Ok((initiate, respond))
}

/// A device's published prekeys and the secrets it keeps.
struct Prekeys {
    bundle: parley_domain::agreement::PrekeyBundle,
    secrets: parley_usecases::ports::ResponderSecrets,
}

impl Prekeys {
    fn of(device: &Sealer) -> Result<Self> {
        let (spk, signed_prekey) = device.new_signed_prekey(1)?;
        let (kem_secret, kem_prekey) = device.new_kem_prekey(2)?;
        let (opk, one_time_prekey) = Sealer::new_one_time_prekey(3)?;
        Ok(Self {
            bundle: parley_domain::agreement::PrekeyBundle {
                identity: parley_domain::ratchet::PublicKey(device.x25519_public()),
                signed_prekey,
                one_time_prekey: Some(one_time_prekey),
                kem_prekey: Some(kem_prekey),
            },
            secrets: parley_usecases::ports::ResponderSecrets {
                signed_prekey: spk,
                one_time_prekey: Some(opk),
                kem_secret,
            },
        })
    }
}

/// A session from `alice` to `bob`, agreed from real prekeys: (alice's side, bob's side).
fn session_pair(
    alice: &Sealer,
    bob: &Sealer,
) -> Result<(
    parley_domain::ratchet::SessionState,
    parley_domain::ratchet::SessionState,
)> {
    let prekeys = Prekeys::of(bob)?;
    let ours = alice.initiate(
        &prekeys.bundle,
        &bob.ed25519_public(),
        &bob.x25519_public(),
        Timestamp(1),
    )?;
    let initial = ours.initial.clone().context("the agreement")?;
    let theirs = bob.respond(&initial, &prekeys.secrets, Timestamp(1))?;
    Ok((ours, theirs))
}

/// The bytes of a sealed envelope carrying a `size`-byte text, as they travel (in a session,
/// after its first message: no agreement carried).
pub fn sealed_message(size: usize) -> Result<Vec<u8>> {
    let (alice, bob, header, body) = sample(size)?;
    let (mut ours, mut theirs) = session_pair(&alice, &bob)?;
    answered(&alice, &bob, &header, &body, &mut ours, &mut theirs)?;
    Ok(alice
        .seal_in(&header, &body, &mut ours, Timestamp(3))?
        .bytes)
}

/// Alice's first message in the session and bob's answer, each opened: the session's steady
/// state (no agreement carried any more).
fn answered(
    alice: &Sealer,
    bob: &Sealer,
    header: &parley_domain::Header,
    body: &parley_domain::Body,
    ours: &mut parley_domain::ratchet::SessionState,
    theirs: &mut parley_domain::ratchet::SessionState,
) -> Result<()> {
    let first = alice.seal_in(header, body, ours, Timestamp(1))?;
    bob.open_in(&first.bytes, &alice.ed25519_public(), theirs, Timestamp(1))?;
    let reply = parley_domain::Header {
        from: header.to.clone(),
        to: header.from.clone(),
        ..header.clone()
    };
    let answer = bob.seal_in(&reply, body, theirs, Timestamp(2))?;
    alice.open_in(&answer.bytes, &bob.ed25519_public(), ours, Timestamp(2))?;
    Ok(())
}

/// Two sealers and a `size`-byte message from the first to the second.
fn sample(size: usize) -> Result<(Sealer, Sealer, parley_domain::Header, parley_domain::Body)> {
    use parley_domain::{Body, Digest, Header, Secret32};
    let alice = Sealer::new(&Secret32::new([1; 32]), &Secret32::new([2; 32]));
    let bob = Sealer::new(&Secret32::new([3; 32]), &Secret32::new([4; 32]));
    let header = Header {
        id: MessageId::from_bytes([9; 16]),
        from: Username::parse("alice")?,
        to: Username::parse("bob")?,
        sent_at: Timestamp(1),
        ttl: None,
        seq: 1,
        prev: Digest::GENESIS,
        attachments: vec![],
    };
    let body = Body {
        text: MessageText::parse("z".repeat(size))?,
        attachment_keys: vec![],
    };
    Ok((alice, bob, header, body))
}

/// Certificates straight from the rendezvous's CA (enrollment is measured on its own), for
/// bare nodes.
pub struct Issuer {
    ca: parley_rendezvous::ca::Ca,
    rendezvous: Multiaddr,
}

impl Issuer {
    /// The CA in the rendezvous's data folder.
    pub fn open(rv: &Rendezvous) -> Result<Self> {
        let ca = parley_rendezvous::ca::Ca::open(&rv.data, None, time::OffsetDateTime::now_utc())?;
        Ok(Self {
            ca,
            rendezvous: rv.p2p.clone(),
        })
    }

    /// Starts a node for `user`, listening on `listen`, published at the rendezvous.
    pub async fn node(
        &self,
        user: &Username,
        listen: Multiaddr,
    ) -> Result<(Node, tokio::sync::mpsc::Receiver<parley_p2p::Inbound>)> {
        let now = time::OffsetDateTime::now_utc();
        let secret = parley_rendezvous::ca::random_secret();
        let public = parley_rendezvous::identity::public_key(&secret);
        let issued = self.ca.issue(
            &parley_rendezvous::ca::Subject::User {
                name: user.clone(),
                x25519: None,
            },
            &public,
            now,
        )?;
        let credentials =
            Credentials::new(&secret, issued.der, self.ca.certificate_der().to_vec())?;
        Ok(Node::start(NodeConfig {
            credentials,
            user: user.clone(),
            listen,
            rendezvous: vec![self.rendezvous.clone()],
            inbound_queue: 1,
            attachments: None,
            renew: true,
            tls_refresh: parley_p2p::refresh::DEFAULT_TLS_REFRESH,
        })
        .await?)
    }
}

/// What the directory costs with `peers` connected: resident memory per peer of the
/// rendezvous process, and look-ups per second served (every peer asking `per_peer` times,
/// all at once, within the per-peer rate limit).
pub struct DirectoryLoad {
    /// Cores the rendezvous kept busy while serving the look-ups.
    pub busy_cores: f64,
    /// Peers connected.
    pub peers: usize,
    /// Rendezvous RSS with no peer, bytes.
    pub rss_idle: u64,
    /// Rendezvous RSS with the peers, bytes.
    pub rss_loaded: u64,
    /// Look-ups per second.
    pub lookups_per_second: f64,
}

/// Connects `peers` nodes (certificates issued by the rendezvous's CA directly: enrollment is
/// measured on its own) and measures the directory.
pub async fn directory_load(
    rv: &Rendezvous,
    peers: usize,
    per_peer: usize,
) -> Result<DirectoryLoad> {
    let rss_idle = rv.rss()?;
    let issuer = Issuer::open(rv)?;
    let mut nodes = Vec::with_capacity(peers);
    for i in 0..peers {
        let user = Username::parse(&format!("peer{i:05}"))?;
        let (node, _inbound) = issuer.node(&user, "/ip4/127.0.0.1/tcp/0".parse()?).await?;
        nodes.push((user, node));
    }
    // Every peer published: the last one can find the first and the first the last.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (first, last) = (&nodes[0], &nodes[nodes.len() - 1]);
    loop {
        let all = nodes.iter().all(|(_, n)| n.snapshot().rendezvous_connected);
        if all
            && first.1.lookup(&last.0).await.is_ok_and(|f| !f.is_empty())
            && last.1.lookup(&first.0).await.is_ok_and(|f| !f.is_empty())
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the {peers} peers did not all reach the rendezvous within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Wait out the rate-limit tokens the checks above spent.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rss_loaded = rv.rss()?;
    let names: Arc<Vec<Username>> = Arc::new(nodes.iter().map(|(u, _)| u.clone()).collect());
    let cpu = rv.cpu()?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (_, node)) in nodes.iter().enumerate() {
        let (node, names) = (node.clone(), names.clone());
        tasks.spawn(async move {
            for k in 0..per_peer {
                let target = &names[(i * 7 + k * 13 + 1) % names.len()];
                node.lookup(target).await.map_err(|e| anyhow!("{e}"))?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let wall = start.elapsed();
    let lookups_per_second = (peers * per_peer) as f64 / wall.as_secs_f64();
    let busy_cores = (rv.cpu()? - cpu).as_secs_f64() / wall.as_secs_f64();
    for (_, node) in nodes {
        node.shutdown().await;
    }
    Ok(DirectoryLoad {
        busy_cores,
        peers,
        rss_idle,
        rss_loaded,
        lookups_per_second,
    })
}

/// Resident memory of a real `parley daemon` (the binary next to this one), idle after it
/// reached the rendezvous; `None` when that binary was not built.
pub async fn idle_daemon_rss(rv: &Rendezvous, dir: &Path) -> Result<Option<u64>> {
    let parley = std::env::current_exe()?.with_file_name("parley");
    if !parley.exists() {
        return Ok(None);
    }
    let home = dir.join("idle-home");
    drop(enroll(rv, &home, "idle").await?);
    // sled frees its lock a moment after the last handle goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut child = Command::new(&parley)
        .arg("--home")
        .arg(&home)
        .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("control:"))
    })
    .await?;
    let measured = if ready {
        tokio::time::sleep(Duration::from_secs(3)).await;
        rss_of(child.id()).map(Some)
    } else {
        Err(anyhow!("the daemon did not start"))
    };
    let _ = child.kill();
    let _ = child.wait();
    measured
}

/// Enrollments per second: `n` enrollments, `at_once` at a time (each pays the rendezvous's
/// Argon2id once), and how many cores the rendezvous kept busy meanwhile (CPU-bound work keeps
/// them all busy; a lock would not).
pub async fn enrollments(
    rv: &Rendezvous,
    dir: &Path,
    n: usize,
    at_once: usize,
) -> Result<(f64, f64)> {
    let cpu = rv.cpu()?;
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..at_once {
        let (next, dir, url, fingerprint) = (
            next.clone(),
            dir.to_owned(),
            rv.url.clone(),
            rv.fingerprint.clone(),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let home = dir.join(format!("enroll-{i}"));
                drop(enroll_at(&url, &fingerprint, &home, &format!("enrollee{i:04}")).await?);
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let wall = start.elapsed();
    let busy = (rv.cpu()? - cpu).as_secs_f64() / wall.as_secs_f64();
    Ok((n as f64 / wall.as_secs_f64(), busy))
}

/// `n` first messages, each from a new device to `to`: look-up, dial, mutual TLS, first
/// contact and the first receipt, timed from the send.
pub async fn connect(rv: &Rendezvous, to: &Device, dir: &Path, n: usize) -> Result<Vec<Duration>> {
    let text = "c".repeat(256);
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let store = enroll(
            rv,
            &dir.join(format!("connect-{i}")),
            &format!("caller{i:04}"),
        )
        .await?;
        let device = Device::start(store).await?;
        let start = Instant::now();
        device.send(&to.user, &text, &[]).await?;
        times.push(start.elapsed());
        device.stop().await;
    }
    Ok(times)
}
