//! The mailbox's costs: deposits held per second (each synced before it is answered `held`),
//! entries fetched and acknowledged per second, the rendezvous's memory while it holds many
//! entries (they are on disk, not in memory), and how long a message sent to a stopped device
//! takes to be stored once that device starts.
//!
//! Deposits and fetches go through bare product nodes ([`parley_p2p::Node`]'s `Mailbox`) to a
//! fresh rendezvous: the figure is the protocol's and the store's, not the sender's sealing.
//! The time to delivery uses real devices ([`crate::parley::Device`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt as _;
use parley_domain::{MailId, MailboxLimits, MessageText, Username};
use parley_p2p::Node;
use parley_peer::{Outgoing, PeerError};
use parley_store::Store;
use parley_usecases::ports::{Deposit, Mailbox as _, NodeInfo as _};

use crate::parley::{Device, Issuer, Rendezvous};

/// The served rendezvous's mailbox limits: the defaults' hold period and largest file, with
/// quotas and the per-sender rate far above what the benchmark deposits, so that the store is
/// measured and not the limits.
pub const LIMITS: MailboxLimits = MailboxLimits {
    hold_ms: 30 * 24 * 60 * 60 * 1000,
    entries_per_recipient: 1_000_000,
    bytes_per_recipient: 4 << 30,
    entries_per_sender: 1_000_000,
    bytes_per_sender: 4 << 30,
    largest_attachment: 32 << 20,
    deposits_per_second: 1_000_000,
    deposit_burst: 1_000_000,
};

/// Bytes of each deposit's wrapped envelope (random: the rendezvous never reads it).
pub const ENTRY_BYTES: usize = 1024;
/// Nodes depositing at once.
pub const SENDERS: usize = 16;
/// Deposits each sender has in flight: the rendezvous serves 4 mailbox streams per connection.
pub const IN_FLIGHT_PER_SENDER: usize = 4;
/// How long setting up (nodes reaching the rendezvous, a device's message arriving) may take.
const SETTLE: Duration = Duration::from_secs(120);

/// What the mailbox measure found.
pub struct Figures {
    /// Deposits timed.
    pub deposits: usize,
    /// Deposits per second, each answered `held`.
    pub deposits_per_second: f64,
    /// Cores the rendezvous kept busy during the timed deposits.
    pub deposit_busy_cores: f64,
    /// Entries held when the memory was read (and then fetched).
    pub held: usize,
    /// Entries fetched and acknowledged per second, until none was left.
    pub fetch_per_second: f64,
    /// The rendezvous's resident memory before the first deposit, bytes.
    pub rss_empty: u64,
    /// Its resident memory with [`Figures::held`] entries held, bytes.
    pub rss_held: u64,
}

impl Figures {
    /// Resident memory per held entry, bytes.
    pub fn rss_per_entry(&self) -> f64 {
        self.rss_held.saturating_sub(self.rss_empty) as f64 / self.held as f64
    }
}

/// On a fresh rendezvous in `dir`: its memory empty; `deposits` deposits of [`ENTRY_BYTES`]
/// timed, from [`SENDERS`] nodes with [`IN_FLIGHT_PER_SENDER`] in flight each, to one enrolled
/// recipient who is offline; more (untimed) until `held` are held; its memory then; and the
/// recipient, started only now, fetching and acknowledging every entry.
pub async fn measure(dir: &std::path::Path, deposits: usize, held: usize) -> Result<Figures> {
    if deposits == 0 || held < deposits {
        bail!("the mailbox measure needs deposits, and at least as many held");
    }
    let rv = Rendezvous::spawn(dir)?;
    // The recipient is enrolled (the rendezvous holds mail only for a name it issued to); the
    // senders and the recipient's node take certificates from the CA straight away.
    let recipient = Username::parse("mailrecipient")?;
    drop(crate::parley::enroll(&rv, &dir.join("recipient"), recipient.as_str()).await?);
    let issuer = Issuer::open(&rv)?;
    let mut senders = Vec::with_capacity(SENDERS);
    for i in 0..SENDERS {
        let user = Username::parse(&format!("mailsender{i:02}"))?;
        let (node, _inbound) = issuer.node(&user, "/ip4/127.0.0.1/tcp/0".parse()?).await?;
        senders.push(node);
    }
    let result = async {
        for node in &senders {
            connected(node).await?;
        }
        let rss_empty = settled_rss(&rv).await?;
        let cpu = rv.cpu()?;
        let start = Instant::now();
        deposit_all(&senders, &recipient, deposits, 0).await?;
        let wall = start.elapsed();
        let deposit_busy_cores = (rv.cpu()? - cpu).as_secs_f64() / wall.as_secs_f64();
        deposit_all(&senders, &recipient, held - deposits, deposits as u64).await?;
        let rss_held = settled_rss(&rv).await?;

        let (node, _inbound) = issuer
            .node(&recipient, "/ip4/127.0.0.1/tcp/0".parse()?)
            .await?;
        let fetched = async {
            connected(&node).await?;
            let start = Instant::now();
            let fetched = fetch_all(&node).await?;
            Ok::<_, anyhow::Error>((fetched, start.elapsed()))
        }
        .await;
        node.shutdown().await;
        let (fetched, fetch_wall) = fetched?;
        if fetched != held {
            bail!("the recipient fetched {fetched} entries of the {held} held");
        }
        Ok(Figures {
            deposits,
            deposits_per_second: deposits as f64 / wall.as_secs_f64(),
            deposit_busy_cores,
            held,
            fetch_per_second: fetched as f64 / fetch_wall.as_secs_f64(),
            rss_empty,
            rss_held,
        })
    }
    .await;
    for node in senders {
        node.shutdown().await;
    }
    drop(rv);
    result
}

/// Waits until `node` holds its connection to the rendezvous (a mailbox request needs one).
async fn connected(node: &Node) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    while !node.snapshot().rendezvous_connected {
        if Instant::now() > deadline {
            bail!("a mailbox node did not reach the rendezvous within {SETTLE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `count` deposits to `to`, shared among `senders`, each with [`IN_FLIGHT_PER_SENDER`] in
/// flight; every one must be answered `held`. `first` numbers the first one (it seeds its
/// bytes).
async fn deposit_all(senders: &[Node], to: &Username, count: usize, first: u64) -> Result<()> {
    let seed = u64::from_le_bytes(
        parley_rendezvous::ca::random_secret().expose()[..8]
            .try_into()
            .context("a seed of 8 bytes")?,
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, node) in senders.iter().enumerate() {
        let share = count / senders.len() + usize::from(worker < count % senders.len());
        let (node, to) = (node.clone(), to.clone());
        let base =
            first + (count / senders.len() * worker + worker.min(count % senders.len())) as u64;
        tasks.spawn(async move {
            futures::stream::iter(0..share as u64)
                .map(|k| {
                    let deposit = Deposit {
                        sealed: random_bytes(seed ^ (base + k), ENTRY_BYTES),
                        files: Vec::new(),
                        expires_at: None,
                    };
                    let (node, to) = (node.clone(), to.clone());
                    async move { node.deposit(&to, &deposit).await }
                })
                .buffer_unordered(IN_FLIGHT_PER_SENDER)
                .map(|held| held.map_err(|e| anyhow!("a deposit was not held: {e}")))
                .fold(Ok(()), |so_far: Result<()>, held| async move {
                    so_far.and(held)
                })
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Fetches and acknowledges batch after batch until the mailbox is empty; the entries fetched.
async fn fetch_all(node: &Node) -> Result<usize> {
    let mut fetched = 0;
    loop {
        let batch = node
            .fetch()
            .await
            .map_err(|e| anyhow!("fetch failed: {e}"))?;
        if let Some(odd) = batch.items.iter().find(|i| i.sealed.len() != ENTRY_BYTES) {
            bail!("an entry came back with {} bytes", odd.sealed.len());
        }
        let ids: Vec<MailId> = batch.items.iter().map(|i| i.id).collect();
        fetched += ids.len();
        if !ids.is_empty() {
            node.acknowledge(&ids)
                .await
                .map_err(|e| anyhow!("acknowledgement failed: {e}"))?;
        }
        if !batch.more || ids.is_empty() {
            return Ok(fetched);
        }
    }
}

/// `len` pseudo-random bytes from `seed` (splitmix64).
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The median of five readings of the rendezvous's resident memory, after a pause for what is
/// under way (the writer's last batch, sled's flush) to finish.
async fn settled_rss(rv: &Rendezvous) -> Result<u64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut samples = Vec::with_capacity(5);
    for _ in 0..5 {
        samples.push(rv.rss()?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    samples.sort_unstable();
    Ok(samples[2])
}

/// `rounds` times: `to`'s device stops, `from` sends it a message (which must be answered
/// queued: held by the rendezvous), then `to`'s device starts again on the same store; the
/// time from that start until the message is in `to`'s history. `to` has met `from` already
/// (the benchmark's earlier messages), so this is the known contact's path, not first contact.
/// Returns the times and `to`'s running device.
pub async fn offline_to_delivered(
    from: &Device,
    to: Device,
    store: &Arc<Store>,
    rounds: usize,
) -> Result<(Vec<Duration>, Device)> {
    let mut to = to;
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let user = to.user.clone();
        to.stop().await;
        let sent = from
            .peer
            .send(Outgoing {
                to: user.clone(),
                text: MessageText::parse(format!("while you were away {round}"))?,
                ttl: None,
                attachments: Vec::new(),
            })
            .await;
        let sent = match sent {
            Ok(sent) if sent.queued => sent,
            Ok(_) => bail!("{user}'s device is stopped, yet the message was delivered"),
            Err(PeerError::Queued(e)) => {
                bail!("the message to {user} stayed in the outbox, not deposited: {e}")
            }
            Err(e) => bail!("the message to {user} failed: {e}"),
        };
        let start = Instant::now();
        to = Device::launch(store.clone()).await?;
        let deadline = start + SETTLE;
        loop {
            let history = to.peer.history(&from.user).map_err(|e| anyhow!("{e}"))?;
            if history.messages.iter().any(|m| m.id == sent.id) {
                times.push(start.elapsed());
                break;
            }
            if Instant::now() > deadline {
                bail!("{user} did not get the held message within {SETTLE:?} of starting");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        to.wait_published().await?;
    }
    Ok((times, to))
}
