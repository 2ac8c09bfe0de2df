//! The relay's costs: a message through a circuit on the rendezvous beside the same message
//! straight to a peer, in alternating rounds from one sender; and the rendezvous's memory per
//! slot held and per circuit open.
//!
//! The peers are bare product nodes ([`parley_p2p::Node`]) whose recipients accept every
//! message at once: the figure is the path's, not the store's. A peer reached through the relay
//! listens on `::1` only while the rendezvous is on `127.0.0.1`, so the addresses a hole punch
//! would try (the rendezvous's view of it, on IPv4) lead nowhere and its circuit stays a
//! circuit on loopback; every measure checks that it did.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use parley_domain::{MessageId, Username};
use parley_p2p::{Multiaddr, Node, PeerAddress, PeerId};
use parley_usecases::ports::{NodeInfo, OutgoingEnvelope, Path, Transport};

use crate::parley::{Issuer, Rendezvous};

/// Where a peer that must be reached through the relay listens (see the module's note).
const BEHIND_THE_RELAY: &str = "/ip6/::1/tcp/0";
/// Where a peer reached directly listens.
const DIRECT: &str = "/ip4/127.0.0.1/tcp/0";
/// How long setting up (slots, first connections) may take.
const SETTLE: Duration = Duration::from_secs(120);
/// Resident-memory samples per reading (their median is the reading).
const RSS_SAMPLES: usize = 5;
/// The time between two samples.
const RSS_EVERY: Duration = Duration::from_millis(200);

/// Send → receipt times of the same message, through the relay and directly.
pub struct Latencies {
    /// Through a circuit on the rendezvous.
    pub relayed: Vec<Duration>,
    /// Straight to the recipient, in the rounds between.
    pub direct: Vec<Duration>,
    /// Bytes of the sealed envelope sent.
    pub envelope_bytes: usize,
}

/// `n` rounds, each sending the sealed envelope of a `size`-byte text from one sender to a
/// peer it knows only by its circuit address and to a peer it knows only by its direct address
/// (in alternating order), each waiting for the receipt; one warm-up round opens both
/// connections first.
pub async fn latency(rv: &Rendezvous, n: usize, size: usize) -> Result<Latencies> {
    let issuer = Issuer::open(rv)?;
    let sender = start(&issuer, "relaysender", BEHIND_THE_RELAY).await?;
    let far = start(&issuer, "relayfar", BEHIND_THE_RELAY).await?;
    let near = start(&issuer, "relaynear", DIRECT).await?;
    let result: Result<Latencies> = async {
        let far_at = PeerAddress {
            peer: far.id()?,
            addrs: vec![far.circuit().await?],
        };
        let near_at = PeerAddress {
            peer: near.id()?,
            addrs: near
                .node
                .snapshot()
                .listen_addrs
                .iter()
                .map(|a| a.parse())
                .collect::<Result<_, _>>()?,
        };
        let bytes = crate::parley::sealed_message(size)?;
        sender.deliver(&far, &far_at, &bytes, 0).await?;
        sender.deliver(&near, &near_at, &bytes, 0).await?;
        let (mut relayed, mut direct) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for round in 1..=n as u64 {
            let through_relay = sender.deliver(&far, &far_at, &bytes, round);
            let straight = sender.deliver(&near, &near_at, &bytes, round);
            if round % 2 == 0 {
                relayed.push(through_relay.await?);
                direct.push(straight.await?);
            } else {
                direct.push(straight.await?);
                relayed.push(through_relay.await?);
            }
        }
        sender.only_relayed_to(&far)?;
        if !far.node.snapshot().relay.reserved {
            bail!("the relayed peer lost its slot during the measure");
        }
        Ok(Latencies {
            relayed,
            direct,
            envelope_bytes: bytes.len(),
        })
    }
    .await;
    for peer in [sender, far, near] {
        peer.stop().await;
    }
    result
}

/// Batches in which slots, then circuits, are added; the first of each is not counted.
pub const BATCHES: usize = 5;

/// The rendezvous's resident memory as slots and circuits are added in [`BATCHES`] equal
/// batches. The first batch of each pays one-time growth (the relay's tables, the allocator's
/// arenas) and is left out; of the others, the median batch is taken, so that one batch that
/// happened to grow the heap by a step does not make the figure.
pub struct Memory {
    /// Slots (one per peer) and circuits in each batch.
    pub batch: usize,
    /// With no peer, bytes.
    pub rss_idle: u64,
    /// After each batch of peers connected, each holding a slot, bytes.
    pub reserved: Vec<u64>,
    /// After each batch of circuits, bytes.
    pub opened: Vec<u64>,
}

impl Memory {
    /// Bytes per slot (with its peer's connection): the median batch after the first.
    pub fn per_reservation(&self) -> f64 {
        median_step(&self.reserved) / self.batch as f64
    }

    /// Bytes per circuit: the median batch after the first.
    pub fn per_circuit(&self) -> f64 {
        median_step(&self.opened) / self.batch as f64
    }
}

/// The median growth from one reading to the next.
fn median_step(readings: &[u64]) -> f64 {
    let mut steps: Vec<u64> = readings
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    steps.sort_unstable();
    match steps.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => steps[n / 2] as f64,
        n => (steps[n / 2 - 1] + steps[n / 2]) as f64 / 2.0,
    }
}

/// On a fresh rendezvous (memory an allocator took stays taken): its memory idle, then after
/// each of [`BATCHES`] batches of `batch` peers each taking a slot, then after each of as many
/// batches of circuits, from each peer to the next (a ring, opened one circuit at a time; one
/// message delivered through each, so every circuit carried traffic and is checked to be
/// relayed). Each reading is the median of a few samples.
pub async fn memory(dir: &std::path::Path, batch: usize) -> Result<Memory> {
    if batch == 0 {
        bail!("a batch of no peers measures nothing");
    }
    let n = BATCHES * batch;
    let rv = Rendezvous::spawn(dir)?;
    let issuer = Issuer::open(&rv)?;
    let rss_idle = settled_rss(&rv).await?;
    let mut peers = Vec::with_capacity(n);
    let mut circuits = Vec::with_capacity(n);
    let result: Result<Memory> = async {
        let mut reserved = Vec::with_capacity(BATCHES);
        for _ in 0..BATCHES {
            for _ in 0..batch {
                let name = format!("holder{:04}", peers.len());
                peers.push(start(&issuer, &name, BEHIND_THE_RELAY).await?);
            }
            for peer in &peers[circuits.len()..] {
                circuits.push(PeerAddress {
                    peer: peer.id()?,
                    addrs: vec![peer.circuit().await?],
                });
            }
            reserved.push(settled_rss(&rv).await?);
        }
        let mut opened = Vec::with_capacity(BATCHES);
        for first in (0..n).step_by(batch) {
            // One at a time, as the slots were taken: a burst would measure the allocator's
            // peak instead of what a circuit keeps.
            for i in first..first + batch {
                let next = (i + 1) % n;
                peers[i]
                    .deliver(&peers[next], &circuits[next], b"circuit", 1)
                    .await?;
            }
            opened.push(settled_rss(&rv).await?);
        }
        // Every circuit is still a circuit: nothing was punched to a direct connection.
        for (i, from) in peers.iter().enumerate() {
            from.only_relayed_to(&peers[(i + 1) % n])?;
        }
        Ok(Memory {
            batch,
            rss_idle,
            reserved,
            opened,
        })
    }
    .await;
    for peer in peers {
        peer.stop().await;
    }
    drop(rv);
    result
}

/// The median of [`RSS_SAMPLES`] readings of the rendezvous's resident memory, after a pause
/// for what is under way to finish.
async fn settled_rss(rv: &Rendezvous) -> Result<u64> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut samples = Vec::with_capacity(RSS_SAMPLES);
    for _ in 0..RSS_SAMPLES {
        samples.push(rv.rss()?);
        tokio::time::sleep(RSS_EVERY).await;
    }
    samples.sort_unstable();
    Ok(samples[RSS_SAMPLES / 2])
}

/// A bare node that accepts every message at once.
struct Peer {
    user: Username,
    node: Node,
    accepting: tokio::task::JoinHandle<()>,
}

async fn start(issuer: &Issuer, name: &str, listen: &str) -> Result<Peer> {
    let user = Username::parse(name)?;
    let (node, mut inbound) = issuer.node(&user, listen.parse()?).await?;
    let accepting = tokio::spawn(async move {
        while let Some(message) = inbound.recv().await {
            message.accept();
        }
    });
    Ok(Peer {
        user,
        node,
        accepting,
    })
}

impl Peer {
    fn id(&self) -> Result<PeerId> {
        Ok(self.node.snapshot().peer_id.parse()?)
    }

    /// Its circuit address, once the relay holds its slot.
    async fn circuit(&self) -> Result<Multiaddr> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let relay = self.node.snapshot().relay;
            if relay.reserved
                && let Some(addr) = relay.addrs.first()
            {
                return Ok(addr.parse()?);
            }
            if Instant::now() > deadline {
                bail!("{} got no relay slot within {SETTLE:?}", self.user);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Delivers `bytes` to `to` at `at` and waits for the receipt; the time it took.
    async fn deliver(
        &self,
        to: &Peer,
        at: &PeerAddress,
        bytes: &[u8],
        seq: u64,
    ) -> Result<Duration> {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&seq.to_be_bytes());
        let message = OutgoingEnvelope {
            id: MessageId::from_bytes(id),
            to: to.user.clone(),
            bytes: bytes.to_vec(),
            attachments: vec![],
        };
        let start = Instant::now();
        tokio::time::timeout(SETTLE, self.node.deliver(&to.user, at, &message, None))
            .await
            .with_context(|| format!("{} to {}: no receipt within {SETTLE:?}", self.user, to.user))?
            .map_err(|e| anyhow!("{} to {}: {e}", self.user, to.user))?;
        Ok(start.elapsed())
    }

    /// Fails unless this node's connection to `to` is relayed (no direct one beside it).
    fn only_relayed_to(&self, to: &Peer) -> Result<()> {
        let connections = self.node.snapshot().connections;
        match connections.iter().find(|c| c.user == to.user) {
            Some(c) if c.path == Path::Relayed => Ok(()),
            Some(_) => bail!(
                "{} reached {} directly: the figure would not be the relay's",
                self.user,
                to.user
            ),
            None => bail!("{} holds no connection to {}", self.user, to.user),
        }
    }

    async fn stop(self) {
        self.node.shutdown().await;
        self.accepting.abort();
    }
}
