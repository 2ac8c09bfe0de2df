//! The rendezvous's mailbox over `/parley/mailbox/1`: it holds sealed mail for an offline
//! recipient until the recipient's device fetches and acknowledges it, or until it expires.
//!
//! The store is blocking, so the swarm task never calls it. Deposits, acknowledgements and the
//! purge of expired entries go to one writer thread, which takes every deposit queued, puts
//! them and syncs once for the batch (group commit) before it answers them all: deposits per
//! second are bounded by the disk's sync rate, not by one sync each. Fetches and key look-ups
//! are reads, made on tokio's blocking pool. Answers come back to the swarm task over a
//! bounded channel, and the swarm task sends them.
//!
//! The requester is the connection's certificate. The sender of a deposit is known only while
//! its connection is live and in the per-sender share (entry id → sender and size), which is
//! kept in memory only: no span, log line or record pairs a sender with a recipient.

use std::{
    collections::HashMap,
    sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use libp2p::{
    PeerId,
    request_response::{self, ProtocolSupport, ResponseChannel},
};
use parley_domain::{
    MailId, MailboxLimits, Timestamp, Usage, Username,
    mailbox::{DepositSize, Refusal},
};
use parley_usecases::ports::{CertificateBook, HeldEntry, HeldMeta, MailboxStore};
use tokio::sync::mpsc;

use super::{limit::Bucket, stats::DirectoryStats};
use crate::protocol::{
    HeldItem, MAILBOX_PROTOCOL, MAX_ACK_IDS, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_DEPOSIT_FILES,
    MAX_WRAPPED_BYTES, MailboxRequest, MailboxResponse, Meta, max_mailbox_message_bytes,
    meta_within_bounds,
};

/// `/parley/mailbox/1` streams open at once on one connection; more are dropped. Small: each
/// may carry a deposit of the largest size.
pub const SERVER_MAILBOX_STREAMS_PER_CONNECTION: usize = 4;
/// How often the writer purges expired entries.
const PURGE_EVERY: Duration = Duration::from_secs(1);
/// Jobs (deposits, acknowledgements) queued for the writer; a deposit beyond them is
/// refused `mailbox_unavailable`, for the sender to try again.
const WRITER_QUEUE: usize = 256;
/// Bytes of deposits queued for the writer at once; a deposit beyond them is refused
/// `mailbox_unavailable`, so a burst of large deposits cannot pile up in memory.
const MAX_QUEUED_BYTES: u64 = 256 * 1024 * 1024;
/// Answers queued for the swarm task.
const ANSWER_QUEUE: usize = 256;
/// Reads (fetches, key look-ups) on the blocking pool at once; more are refused
/// `mailbox_unavailable`.
const MAX_READS: usize = 32;

/// The mailbox protocol's behaviour.
pub(super) type Behaviour = request_response::json::Behaviour<MailboxRequest, MailboxResponse>;

/// The mailbox a rendezvous runs: its limits, where entries are held and who is enrolled.
#[derive(Clone)]
pub struct MailboxOptions {
    /// The operator's limits.
    pub limits: MailboxLimits,
    /// Where held mail is kept.
    pub store: Arc<dyn MailboxStore>,
    /// Who is enrolled, and the newest certificate of each.
    pub book: Arc<dyn CertificateBook>,
}

impl std::fmt::Debug for MailboxOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxOptions")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The behaviour for `limits` (the largest message read follows the largest attachment).
pub(super) fn behaviour(limits: &MailboxLimits) -> Behaviour {
    let largest = max_mailbox_message_bytes(limits.largest_attachment);
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(largest)
            .set_response_size_maximum(largest),
        [(MAILBOX_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_max_concurrent_streams(SERVER_MAILBOX_STREAMS_PER_CONNECTION),
    )
}

fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(millis).unwrap_or(i64::MAX))
}

fn len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Where an answer goes (the stream's channel), and the span that records its outcome.
struct Reply<C = ResponseChannel<MailboxResponse>> {
    channel: C,
    span: tracing::Span,
}

/// An answer for the swarm task to send.
pub(super) struct Answer<C = ResponseChannel<MailboxResponse>> {
    reply: Reply<C>,
    response: MailboxResponse,
    /// The recipient of a deposit just held, to be told mail is waiting.
    waiting: Option<Username>,
}

enum Job<C = ResponseChannel<MailboxResponse>> {
    Deposit {
        recipient: Username,
        sender: Username,
        entry: HeldEntry,
        reply: Reply<C>,
    },
    Ack {
        recipient: Username,
        ids: Vec<MailId>,
        reply: Reply<C>,
    },
}

/// The refusal as an answer, counted.
fn refuse(stats: &DirectoryStats, refusal: &Refusal) -> MailboxResponse {
    stats.mailbox.refused(refusal.code());
    MailboxResponse::Refused {
        code: refusal.code().to_owned(),
        reason: refusal.to_string(),
        permanent: refusal.is_permanent(),
    }
}

/// What a refused answer says, for the span's `outcome`.
fn outcome(response: &MailboxResponse) -> &str {
    match response {
        MailboxResponse::Refused { code, .. } => code,
        _ => "ok",
    }
}

/// The mailbox's part of the swarm task.
pub(super) struct Mailbox {
    limits: MailboxLimits,
    stats: Arc<DirectoryStats>,
    running: Option<Running>,
    /// Deposit rate buckets per sender peer; a bucket outlives the connection until refilled.
    rates: HashMap<PeerId, Bucket>,
}

struct Running {
    store: Arc<dyn MailboxStore>,
    book: Arc<dyn CertificateBook>,
    jobs: Option<SyncSender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    answers_tx: mpsc::Sender<Answer>,
    answers: mpsc::Receiver<Answer>,
    reads: Arc<AtomicUsize>,
    /// Bytes of the deposits queued for the writer now.
    queued: Arc<AtomicU64>,
}

/// What the swarm task hands a request along with it.
pub(super) struct Request {
    pub(super) peer: PeerId,
    /// The connection's enrolled user, if it is one.
    pub(super) user: Option<Username>,
    pub(super) request: MailboxRequest,
    pub(super) channel: ResponseChannel<MailboxResponse>,
}

impl Mailbox {
    /// The mailbox of `options`, or one that refuses everything `mailbox_disabled`.
    pub(super) fn new(options: Option<MailboxOptions>, stats: Arc<DirectoryStats>) -> Self {
        let limits = options
            .as_ref()
            .map_or_else(MailboxLimits::default, |o| o.limits);
        let running = options.filter(|o| o.limits.enabled()).map(|options| {
            let (jobs, jobs_rx) = sync_channel(WRITER_QUEUE);
            let (answers_tx, answers) = mpsc::channel(ANSWER_QUEUE);
            let queued = Arc::new(AtomicU64::new(0));
            let writer = Writer {
                queued: queued.clone(),
                limits: options.limits,
                store: options.store.clone(),
                book: options.book.clone(),
                stats: stats.clone(),
                shares: HashMap::new(),
                by_sender: HashMap::new(),
                answers: answers_tx.clone(),
            };
            let writer = std::thread::Builder::new()
                .name("mailbox-writer".into())
                .spawn(move || writer.run(jobs_rx))
                .map_err(|e| tracing::error!(error = %e, "cannot start the mailbox writer"))
                .ok();
            Running {
                store: options.store,
                book: options.book,
                jobs: Some(jobs),
                writer,
                answers_tx,
                answers,
                reads: Arc::new(AtomicUsize::new(0)),
                queued,
            }
        });
        Self {
            limits,
            stats,
            running,
            rates: HashMap::new(),
        }
    }

    /// The limits it runs with (the codec's bounds follow them).
    pub(super) fn limits(&self) -> &MailboxLimits {
        &self.limits
    }

    /// The next answer to send; never resolves for a disabled mailbox. Cancel-safe (a
    /// channel receive), for `select!`.
    pub(super) async fn next_answer(&mut self) -> Answer {
        match self.running.as_mut() {
            // Never `None`: `running` holds a sender.
            Some(running) => match running.answers.recv().await {
                Some(answer) => answer,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Sends `answer`; tells every connected device of the recipient that mail is waiting.
    /// `peers_of` finds the recipient's devices.
    pub(super) fn send(
        behaviour: &mut Behaviour,
        answer: Answer,
        peers_of: impl Fn(&Username) -> Vec<PeerId>,
    ) {
        let Answer {
            reply,
            response,
            waiting,
        } = answer;
        reply.span.record("outcome", outcome(&response));
        let _ = behaviour.send_response(reply.channel, response);
        for peer in waiting.as_ref().map(peers_of).unwrap_or_default() {
            behaviour.send_request(&peer, MailboxRequest::Waiting);
        }
    }

    /// Forgets the deposit rate buckets that have refilled.
    pub(super) fn prune(&mut self) {
        let now = Instant::now();
        self.rates.retain(|_, b| !b.refilled(now));
    }

    /// Stops the writer once the batch in hand is written (its answers are not sent: the
    /// swarm is stopping, and a sender without an answer deposits again).
    pub(super) async fn stop(&mut self) {
        if let Some(running) = self.running.as_mut() {
            running.jobs = None;
            // Nobody sends answers any more: a writer waiting for room gives up at once.
            running.answers.close();
            if let Some(writer) = running.writer.take() {
                let _ = tokio::task::spawn_blocking(move || writer.join()).await;
            }
        }
    }

    /// Answers a request now (a refusal) or hands it to the writer or a reader.
    /// `take_lookup` takes one directory look-up from the peer's budget (the key look-up costs
    /// the same), or says it is spent.
    pub(super) fn on_request(
        &mut self,
        behaviour: &mut Behaviour,
        request: Request,
        take_lookup: impl FnOnce() -> bool,
    ) {
        let Request {
            peer,
            user,
            request,
            channel,
        } = request;
        let span = match &request {
            MailboxRequest::Deposit {
                sealed,
                files,
                meta,
                ..
            } => {
                let span = tracing::info_span!(
                    "mailbox.deposit",
                    sealed_b64 = sealed.len(),
                    files = files.len(),
                    bytes = tracing::field::Empty,
                    outcome = tracing::field::Empty,
                );
                crate::trace::adopt(&span, meta);
                span
            }
            MailboxRequest::Fetch { meta } => {
                let span = tracing::info_span!(
                    "mailbox.fetch",
                    entries = tracing::field::Empty,
                    bytes = tracing::field::Empty,
                    more = tracing::field::Empty,
                    outcome = tracing::field::Empty,
                );
                crate::trace::adopt(&span, meta);
                span
            }
            MailboxRequest::Ack { ids } => tracing::info_span!(
                "mailbox.ack",
                ids = ids.len(),
                removed = tracing::field::Empty,
                outcome = tracing::field::Empty,
            ),
            MailboxRequest::Keys { .. } => tracing::info_span!(
                "mailbox.keys",
                found = tracing::field::Empty,
                outcome = tracing::field::Empty,
            ),
            MailboxRequest::Waiting => {
                tracing::debug_span!("mailbox.waiting", outcome = tracing::field::Empty)
            }
        };
        let reply = Reply { channel, span };
        let refused = match self.dispatch(peer, user, request, reply, take_lookup) {
            Ok(()) => return,
            Err((reply, refusal)) => (reply, refuse(&self.stats, &refusal)),
        };
        let (reply, response) = refused;
        Self::send(
            behaviour,
            Answer {
                reply,
                response,
                waiting: None,
            },
            |_| Vec::new(),
        );
    }

    fn dispatch(
        &mut self,
        peer: PeerId,
        user: Option<Username>,
        request: MailboxRequest,
        reply: Reply,
        take_lookup: impl FnOnce() -> bool,
    ) -> Result<(), (Reply, Refusal)> {
        let Some(running) = self.running.as_ref() else {
            return Err((reply, Refusal::Disabled));
        };
        // The upgrade admits only enrolled users; the role check keeps that true here too.
        let Some(user) = user else {
            return Err((reply, Refusal::UnknownRecipient));
        };
        match request {
            MailboxRequest::Deposit {
                to,
                sealed,
                files,
                expires_at_ms,
                meta,
            } => {
                let now = now();
                let (recipient, entry) =
                    match parse_deposit(&to, &sealed, &files, &meta, expires_at_ms, now) {
                        Ok(parsed) => parsed,
                        Err(refusal) => return Err((reply, refusal)),
                    };
                reply.span.record("bytes", entry.meta.size);
                if entry.meta.expires_at.0 <= now.0 {
                    return Err((reply, Refusal::Expired));
                }
                let burst = f64::from(self.limits.deposit_burst.max(1));
                let rate = f64::from(self.limits.deposits_per_second.max(1));
                let instant = Instant::now();
                let bucket = self
                    .rates
                    .entry(peer)
                    .or_insert_with(|| Bucket::full(burst, rate, instant));
                if !bucket.take(instant) {
                    return Err((reply, Refusal::RateLimited));
                }
                let entry = HeldEntry {
                    meta: HeldMeta {
                        expires_at: self.limits.expiry(now, Some(entry.meta.expires_at)),
                        ..entry.meta
                    },
                    ..entry
                };
                let job = Job::Deposit {
                    recipient,
                    sender: user,
                    entry,
                    reply,
                };
                Self::queue(running, job)
            }
            MailboxRequest::Ack { ids } => {
                if ids.len() > MAX_ACK_IDS {
                    return Err((reply, Refusal::Malformed));
                }
                let Ok(ids) = ids
                    .iter()
                    .map(|id| MailId::parse(id))
                    .collect::<Result<Vec<_>, _>>()
                else {
                    return Err((reply, Refusal::Malformed));
                };
                let job = Job::Ack {
                    recipient: user,
                    ids,
                    reply,
                };
                Self::queue(running, job)
            }
            MailboxRequest::Fetch { meta } => {
                if !meta_within_bounds(&meta) {
                    return Err((reply, Refusal::Malformed));
                }
                let store = running.store.clone();
                let stats = self.stats.clone();
                Self::read(running, reply, move |span| {
                    match store.oldest(&user, now(), MAX_BATCH_ENTRIES, MAX_BATCH_BYTES) {
                        Ok((entries, more)) => {
                            DirectoryStats::bump(&stats.mailbox.fetches);
                            let bytes = entries.iter().map(|e| e.meta.size).sum::<u64>();
                            span.record("entries", entries.len());
                            span.record("bytes", bytes);
                            span.record("more", more);
                            MailboxResponse::Mail {
                                items: entries.into_iter().map(held_item).collect(),
                                more,
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the mailbox store failed a fetch");
                            refuse(&stats, &Refusal::Unavailable)
                        }
                    }
                })
            }
            MailboxRequest::Keys { username } => {
                if !take_lookup() {
                    return Err((reply, Refusal::RateLimited));
                }
                let book = running.book.clone();
                let stats = self.stats.clone();
                Self::read(running, reply, move |span| {
                    let found = match Username::parse(&username) {
                        Ok(name) => book.certificate_of(&name),
                        Err(_) => Ok(None),
                    };
                    match found {
                        Ok(der) => {
                            DirectoryStats::bump(&stats.mailbox.key_lookups);
                            span.record("found", der.is_some());
                            MailboxResponse::Certificate {
                                der: der
                                    .map(|d| base64::engine::general_purpose::STANDARD.encode(d)),
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the certificate book failed a key look-up");
                            refuse(&stats, &Refusal::Unavailable)
                        }
                    }
                })
            }
            // Only the rendezvous says mail is waiting.
            MailboxRequest::Waiting => Err((reply, Refusal::Malformed)),
        }
    }

    fn queue(running: &Running, job: Job) -> Result<(), (Reply, Refusal)> {
        let Some(jobs) = running.jobs.as_ref() else {
            return Err((job.into_reply(), Refusal::Unavailable));
        };
        let size = job.size();
        // One deposit always fits an empty queue, however large the limits let it be.
        let before = running.queued.fetch_add(size, Ordering::AcqRel);
        if size > 0 && before > 0 && before.saturating_add(size) > MAX_QUEUED_BYTES {
            running.queued.fetch_sub(size, Ordering::AcqRel);
            tracing::warn!("the mailbox writer is behind; a deposit is refused");
            return Err((job.into_reply(), Refusal::Unavailable));
        }
        jobs.try_send(job).map_err(|e| {
            let (TrySendError::Full(job) | TrySendError::Disconnected(job)) = e;
            running.queued.fetch_sub(size, Ordering::AcqRel);
            tracing::warn!("the mailbox writer is behind; a request is refused");
            (job.into_reply(), Refusal::Unavailable)
        })
    }

    /// Runs `read` on the blocking pool and queues its answer.
    fn read(
        running: &Running,
        reply: Reply,
        read: impl FnOnce(&tracing::Span) -> MailboxResponse + Send + 'static,
    ) -> Result<(), (Reply, Refusal)> {
        let reads = running.reads.clone();
        if reads.fetch_add(1, Ordering::AcqRel) >= MAX_READS {
            reads.fetch_sub(1, Ordering::AcqRel);
            return Err((reply, Refusal::Unavailable));
        }
        let answers = running.answers_tx.clone();
        tokio::task::spawn_blocking(move || {
            let response = {
                let _entered = reply.span.enter();
                read(&reply.span)
            };
            reads.fetch_sub(1, Ordering::AcqRel);
            let _ = answers.blocking_send(Answer {
                reply,
                response,
                waiting: None,
            });
        });
        Ok(())
    }
}

impl<C> Job<C> {
    /// The bytes it holds in memory until the writer is done with it.
    fn size(&self) -> u64 {
        match self {
            Self::Deposit { entry, .. } => entry.meta.size,
            Self::Ack { .. } => 0,
        }
    }

    fn into_reply(self) -> Reply<C> {
        match self {
            Self::Deposit { reply, .. } | Self::Ack { reply, .. } => reply,
        }
    }
}

/// A deposit's fields as an entry (its id, time and sizes), or why it is malformed.
fn parse_deposit(
    to: &str,
    sealed: &str,
    files: &[String],
    meta: &Meta,
    expires_at_ms: Option<i64>,
    now: Timestamp,
) -> Result<(Username, HeldEntry), Refusal> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let recipient = Username::parse(to).map_err(|_| Refusal::Malformed)?;
    if !meta_within_bounds(meta) || files.len() > MAX_DEPOSIT_FILES {
        return Err(Refusal::Malformed);
    }
    // Base64 grows by a third: a longer text cannot decode within the bound.
    if sealed.is_empty() || sealed.len() > MAX_WRAPPED_BYTES.div_ceil(3) * 4 {
        return Err(Refusal::Malformed);
    }
    let sealed = b64.decode(sealed).map_err(|_| Refusal::Malformed)?;
    if sealed.is_empty() || sealed.len() > MAX_WRAPPED_BYTES {
        return Err(Refusal::Malformed);
    }
    let files = files
        .iter()
        .map(|f| b64.decode(f).map_err(|_| Refusal::Malformed))
        .collect::<Result<Vec<_>, _>>()?;
    let size = DepositSize {
        sealed: len(sealed.len()),
        files: files.iter().map(|f| len(f.len())).collect(),
    };
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|_| Refusal::Unavailable)?;
    let entry = HeldEntry {
        meta: HeldMeta {
            id: MailId::new(now, random),
            deposited_at: now,
            // Bounded by the hold period by the caller.
            expires_at: Timestamp(expires_at_ms.unwrap_or(i64::MAX)),
            size: size.total(),
        },
        sealed,
        files,
    };
    Ok((recipient, entry))
}

fn held_item(entry: HeldEntry) -> HeldItem {
    let b64 = &base64::engine::general_purpose::STANDARD;
    HeldItem {
        id: entry.meta.id.to_string(),
        sealed: b64.encode(&entry.sealed),
        files: entry.files.iter().map(|f| b64.encode(f)).collect(),
    }
}

/// The writer thread: every write to the store, in arrival order, a batch at a time.
struct Writer<C = ResponseChannel<MailboxResponse>> {
    limits: MailboxLimits,
    store: Arc<dyn MailboxStore>,
    book: Arc<dyn CertificateBook>,
    stats: Arc<DirectoryStats>,
    /// Each held entry's recipient, sender and size: the per-sender share, in memory only.
    shares: HashMap<MailId, (Username, Username, u64)>,
    /// What each sender holds in each recipient's mailbox (recipient, sender).
    by_sender: HashMap<(Username, Username), Usage>,
    answers: mpsc::Sender<Answer<C>>,
    /// Bytes of the deposits queued (the swarm task adds, the writer takes off when done).
    queued: Arc<AtomicU64>,
}

/// At most this many jobs are taken into one batch.
const MAX_GROUP: usize = 256;

impl<C> Writer<C> {
    fn run(mut self, jobs: Receiver<Job<C>>) {
        match self.store.totals() {
            Ok(held) => self.stats.mailbox.set_held(held.entries, held.bytes),
            Err(e) => tracing::error!(error = %e, "cannot read what the mailbox holds"),
        }
        let mut purged = Instant::now();
        loop {
            let wait = PURGE_EVERY.saturating_sub(purged.elapsed());
            match jobs.recv_timeout(wait) {
                Ok(first) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_GROUP {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    self.handle(batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if purged.elapsed() >= PURGE_EVERY {
                self.purge(now());
                purged = Instant::now();
            }
        }
    }

    fn answer(&self, reply: Reply<C>, response: MailboxResponse, waiting: Option<Username>) {
        let _ = self.answers.blocking_send(Answer {
            reply,
            response,
            waiting,
        });
    }

    fn handle(&mut self, batch: Vec<Job<C>>) {
        let queued: u64 = batch.iter().map(Job::size).sum();
        self.handle_batch(batch);
        self.queued.fetch_sub(queued, Ordering::AcqRel);
    }

    fn handle_batch(&mut self, batch: Vec<Job<C>>) {
        let mut held: HashMap<Username, Usage> = HashMap::new();
        let mut admitted = Vec::new();
        for job in batch {
            match job {
                Job::Deposit {
                    recipient,
                    sender,
                    entry,
                    reply,
                } => {
                    let admission = {
                        let _entered = reply.span.enter();
                        self.admit(&recipient, &sender, &entry, &mut held)
                    };
                    match admission {
                        Ok(()) => admitted.push((recipient, sender, entry, reply)),
                        Err(refusal) => {
                            let response = refuse(&self.stats, &refusal);
                            self.answer(reply, response, None);
                        }
                    }
                }
                Job::Ack {
                    recipient,
                    ids,
                    reply,
                } => self.acknowledge(&recipient, &ids, reply),
            }
        }
        self.commit(admitted);
    }

    /// Whether the deposit may be held; counts it in `held` (this batch's view of each
    /// recipient's mailbox) and in the sender's share when it may.
    fn admit(
        &mut self,
        recipient: &Username,
        sender: &Username,
        entry: &HeldEntry,
        held: &mut HashMap<Username, Usage>,
    ) -> Result<(), Refusal> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "the mailbox store failed a deposit");
            Refusal::Unavailable
        };
        match self.book.certificate_of(recipient) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(Refusal::UnknownRecipient),
            Err(e) => return Err(unavailable(&e)),
        }
        let now_held = match held.get(recipient) {
            Some(usage) => *usage,
            None => self.store.usage(recipient).map_err(|e| unavailable(&e))?,
        };
        let key = (recipient.clone(), sender.clone());
        let share = self.by_sender.get(&key).copied().unwrap_or_default();
        let size = DepositSize {
            sealed: len(entry.sealed.len()),
            files: entry.files.iter().map(|f| len(f.len())).collect(),
        };
        self.limits.admit(&size, now_held, share)?;
        held.insert(recipient.clone(), now_held.plus(entry.meta.size));
        self.by_sender.insert(key, share.plus(entry.meta.size));
        Ok(())
    }

    fn release(&mut self, recipient: &Username, sender: &Username, size: u64) {
        let key = (recipient.clone(), sender.clone());
        if let Some(share) = self.by_sender.get_mut(&key) {
            *share = share.minus(size);
            if share.entries == 0 {
                self.by_sender.remove(&key);
            }
        }
    }

    /// Puts the admitted deposits, syncs once, then answers each.
    fn commit(&mut self, admitted: Vec<(Username, Username, HeldEntry, Reply<C>)>) {
        if admitted.is_empty() {
            return;
        }
        let mut batch = Vec::with_capacity(admitted.len());
        let mut rest = Vec::with_capacity(admitted.len());
        for (recipient, sender, entry, reply) in admitted {
            batch.push((recipient, entry));
            rest.push((sender, reply));
        }
        let results = self.store.put_batch(&batch);
        for (((recipient, entry), (sender, reply)), result) in
            batch.into_iter().zip(rest).zip(results)
        {
            let size = entry.meta.size;
            match result {
                Ok(()) => {
                    DirectoryStats::bump(&self.stats.mailbox.deposits);
                    self.stats.mailbox.held(1, size, true);
                    self.shares
                        .insert(entry.meta.id, (recipient.clone(), sender, size));
                    self.answer(reply, MailboxResponse::Held, Some(recipient));
                }
                Err(e) => {
                    tracing::error!(parent: &reply.span, error = %e, "the mailbox store failed a deposit");
                    self.release(&recipient, &sender, size);
                    let response = refuse(&self.stats, &Refusal::Unavailable);
                    self.answer(reply, response, None);
                }
            }
        }
    }

    fn forget(&mut self, id: &MailId) {
        if let Some((recipient, sender, size)) = self.shares.remove(id) {
            self.release(&recipient, &sender, size);
        }
    }

    fn acknowledge(&mut self, recipient: &Username, ids: &[MailId], reply: Reply<C>) {
        let response = match self.store.remove_batch(recipient, ids) {
            Ok(removed) => {
                for meta in &removed {
                    self.forget(&meta.id);
                    self.stats.mailbox.held(1, meta.size, false);
                }
                self.stats
                    .mailbox
                    .acknowledged
                    .fetch_add(len(removed.len()), Ordering::Relaxed);
                reply.span.record("removed", removed.len());
                MailboxResponse::Acknowledged
            }
            Err(e) => {
                tracing::error!(parent: &reply.span, error = %e, "the mailbox store failed an acknowledgement");
                refuse(&self.stats, &Refusal::Unavailable)
            }
        };
        self.answer(reply, response, None);
    }

    fn purge(&mut self, at: Timestamp) {
        match self.store.purge_expired(at) {
            Ok(gone) => {
                for (_, meta) in &gone {
                    self.forget(&meta.id);
                    self.stats.mailbox.held(1, meta.size, false);
                }
                if !gone.is_empty() {
                    self.stats
                        .mailbox
                        .expired
                        .fetch_add(len(gone.len()), Ordering::Relaxed);
                    tracing::debug!(entries = gone.len(), "purged expired mail");
                }
            }
            Err(e) => tracing::error!(error = %e, "the mailbox store failed to purge"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, PoisonError};

    use parley_usecases::ports::MailboxStoreError;

    use super::*;

    /// Held mail in memory; records the size of each batch put.
    #[derive(Default)]
    struct InMemory {
        held: Mutex<Vec<(Username, HeldEntry)>>,
        batches: Mutex<Vec<usize>>,
    }

    impl MailboxStore for InMemory {
        fn put(&self, recipient: &Username, entry: &HeldEntry) -> Result<(), MailboxStoreError> {
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((recipient.clone(), entry.clone()));
            Ok(())
        }

        fn put_batch(&self, batch: &[(Username, HeldEntry)]) -> Vec<Result<(), MailboxStoreError>> {
            self.batches
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(batch.len());
            batch.iter().map(|(r, e)| self.put(r, e)).collect()
        }

        fn oldest(
            &self,
            _: &Username,
            _: Timestamp,
            _: usize,
            _: u64,
        ) -> Result<(Vec<HeldEntry>, bool), MailboxStoreError> {
            Ok((Vec::new(), false))
        }

        fn remove(&self, _: &Username, _: &MailId) -> Result<Option<HeldMeta>, MailboxStoreError> {
            Ok(None)
        }

        fn usage(&self, recipient: &Username) -> Result<Usage, MailboxStoreError> {
            let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(held
                .iter()
                .filter(|(r, _)| r == recipient)
                .fold(Usage::default(), |u, (_, e)| u.plus(e.meta.size)))
        }

        fn purge_expired(
            &self,
            _: Timestamp,
        ) -> Result<Vec<(Username, HeldMeta)>, MailboxStoreError> {
            Ok(Vec::new())
        }

        fn totals(&self) -> Result<Usage, MailboxStoreError> {
            Ok(Usage::default())
        }
    }

    /// Everyone is enrolled but `nobody`.
    struct Everyone;

    impl CertificateBook for Everyone {
        fn certificate_of(&self, user: &Username) -> Result<Option<Vec<u8>>, MailboxStoreError> {
            Ok((user.as_str() != "nobody").then(|| vec![1]))
        }
    }

    fn name(raw: &str) -> Username {
        Username::parse(raw).expect("valid literal")
    }

    fn deposit(to: &str, n: u8) -> Job<u8> {
        Job::Deposit {
            recipient: name(to),
            sender: name("alice"),
            entry: HeldEntry {
                meta: HeldMeta {
                    id: MailId::new(Timestamp(1), [n; 8]),
                    deposited_at: Timestamp(1),
                    expires_at: Timestamp(i64::MAX),
                    size: 1,
                },
                sealed: vec![n],
                files: Vec::new(),
            },
            reply: Reply {
                channel: n,
                span: tracing::Span::none(),
            },
        }
    }

    #[test]
    fn queued_deposits_are_put_and_synced_as_one_batch_then_each_answered() {
        let store = Arc::new(InMemory::default());
        let stats = Arc::new(DirectoryStats::default());
        let (jobs, jobs_rx) = sync_channel(WRITER_QUEUE);
        let (answers_tx, mut answers) = mpsc::channel(ANSWER_QUEUE);
        for job in (0..5)
            .map(|n| deposit("bob", n))
            .chain([deposit("nobody", 9)])
        {
            jobs.send(job).expect("the queue has room");
        }
        drop(jobs);
        let queued = Arc::new(AtomicU64::new(6));
        let writer = Writer {
            limits: MailboxLimits {
                entries_per_sender: 3,
                ..MailboxLimits::default()
            },
            store: store.clone(),
            book: Arc::new(Everyone),
            stats: stats.clone(),
            shares: HashMap::new(),
            by_sender: HashMap::new(),
            answers: answers_tx,
            queued: queued.clone(),
        };
        writer.run(jobs_rx);
        assert_eq!(
            *store.batches.lock().unwrap_or_else(PoisonError::into_inner),
            vec![3],
            "the three admitted deposits are one batch"
        );
        let mut got = Vec::new();
        while let Ok(answer) = answers.try_recv() {
            got.push((answer.reply.channel, outcome(&answer.response).to_owned()));
        }
        let expected: Vec<(u8, String)> = [
            (3, "mailbox_sender_quota"),
            (4, "mailbox_sender_quota"),
            (9, "unknown_user"),
            (0, "ok"),
            (1, "ok"),
            (2, "ok"),
        ]
        .into_iter()
        .map(|(n, c)| (n, c.to_owned()))
        .collect();
        assert_eq!(got, expected);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.mailbox_deposits, 3);
        assert_eq!(snapshot.mailbox_held_entries, 3);
        assert_eq!(queued.load(Ordering::Acquire), 0);
    }
}
