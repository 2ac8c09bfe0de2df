//! The documents the control socket, `--json` output and the desktop window all show: one type
//! each, built here from domain values and read back through the same type (the CLI
//! deserialises what the daemon sent), so renaming a field fails to compile everywhere.
//!
//! Fields are declared in alphabetical order: the documents have always been written with
//! sorted keys, and a test keeps it so. [`Boot`] and its [`Defaults`] are the exception, in
//! the order the window has always received.

use parley_domain::{
    ChainState, ConversationSummary, Delivery as StoredDelivery, Direction as StoredDirection,
    StoredMessage, Timestamp, Verification, renewal::Validity,
};
use parley_usecases::{ports, queries};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// RFC 3339, UTC, millisecond precision.
#[must_use]
pub fn rfc3339(at: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.0.to_string())
}

/// A message (the contract's `id`, `from`, `to`, `text`, `sent_at`, `verified`, and more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    /// Its attachments, in order.
    pub attachments: Vec<Attachment>,
    /// Where it stands.
    pub delivery: Delivery,
    /// When the receipt came back (outgoing) or it was stored (incoming); refused: when.
    pub delivery_at: Option<String>,
    /// Sent or received by this device.
    pub direction: Direction,
    /// When it disappears (RFC 3339), for a disappearing message.
    pub expires_at: Option<String>,
    /// The sender.
    pub from: String,
    /// 32 hex digits.
    pub id: String,
    /// Why it is not verified; `null` when it is.
    pub reason: Option<String>,
    /// When it was written (RFC 3339).
    pub sent_at: String,
    /// The text, to be shown as text only.
    pub text: String,
    /// The recipient.
    pub to: String,
    /// Its time to live (`30s`, `10m`, `1h`, `7d`), for a disappearing message.
    pub ttl: Option<String>,
    /// `verified`, or the code of the chain fault (`fork`, `broken_chain`).
    pub verification: String,
    /// Whether it fits the sender's chain.
    pub verified: bool,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Outgoing, waiting for its receipt.
    Pending,
    /// Outgoing, held by the rendezvous for the offline recipient; waiting for its receipt.
    Queued,
    /// Outgoing, the receipt is back.
    Delivered,
    /// Incoming, stored.
    Received,
    /// Outgoing, refused for good by the recipient.
    Rejected,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// This device.
    Outgoing,
    /// The contact.
    Incoming,
}

/// An attachment of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Attachment {
    /// Its position in the message, from 0.
    pub index: usize,
    /// Its file name.
    pub name: String,
    /// SHA-256 of its plaintext, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

impl From<&StoredMessage> for Message {
    fn from(m: &StoredMessage) -> Self {
        let (delivery, delivery_at) = match m.delivery {
            StoredDelivery::Pending => (Delivery::Pending, None),
            StoredDelivery::Queued(at) => (Delivery::Queued, Some(rfc3339(at))),
            StoredDelivery::Delivered(at) => (Delivery::Delivered, Some(rfc3339(at))),
            StoredDelivery::Received(at) => (Delivery::Received, Some(rfc3339(at))),
            StoredDelivery::Rejected(at) => (Delivery::Rejected, Some(rfc3339(at))),
        };
        let (verification, reason) = match m.verification {
            Verification::Verified => ("verified".to_owned(), None),
            Verification::Failed(fault) => (fault.code().to_owned(), Some(fault.to_string())),
        };
        Self {
            attachments: m
                .attachments
                .iter()
                .enumerate()
                .map(|(index, a)| Attachment {
                    index,
                    name: a.meta.name.clone(),
                    sha256: a.meta.sha256.to_string(),
                    size: a.meta.size,
                })
                .collect(),
            delivery,
            delivery_at,
            direction: match m.direction {
                StoredDirection::Outgoing => Direction::Outgoing,
                StoredDirection::Incoming => Direction::Incoming,
            },
            expires_at: m.expires_at.map(rfc3339),
            from: m.from.to_string(),
            id: m.id.to_string(),
            reason,
            sent_at: rfc3339(m.sent_at),
            text: m.text.as_str().to_owned(),
            to: m.to.to_string(),
            ttl: m.ttl.map(|t| t.to_string()),
            verification,
            verified: m.verification.is_verified(),
        }
    }
}

/// A conversation, oldest first, and both directions' chains (`history --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct History {
    /// Both chains.
    pub chain: Chains,
    /// The messages not expired, oldest first.
    pub messages: Vec<Message>,
    /// The other party.
    pub with: String,
}

/// The two chains of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Chains {
    /// The contact's chain towards this device, as received.
    pub incoming: Chain,
    /// This device's chain towards the contact.
    pub outgoing: Sealed,
}

/// A received chain's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Chain {
    /// How many messages failed the chain check.
    pub faults: u64,
    /// The highest position received.
    pub last_seq: u64,
    /// Missing positions, as inclusive ranges `[from, to]`.
    pub missing: Vec<(u64, u64)>,
    /// Whether it holds together.
    pub state: Integrity,
}

/// How a received chain holds together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Integrity {
    /// No message yet.
    Empty,
    /// Every position up to the highest holds a message that fits.
    Intact,
    /// Some positions below the highest have not arrived.
    Gap,
    /// At least one message failed the chain check.
    Faulty,
}

/// This device's own chain towards a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sealed {
    /// The last position used.
    pub last_seq: u64,
    /// Always `sealed`.
    pub state: String,
}

impl History {
    /// The document of `with`'s conversation.
    #[must_use]
    pub fn new(with: &parley_domain::Username, h: &queries::History) -> Self {
        Self {
            chain: Chains {
                incoming: Chain::from(&h.incoming),
                outgoing: Sealed {
                    last_seq: h.outgoing.seq,
                    state: "sealed".to_owned(),
                },
            },
            messages: h.messages.iter().map(Message::from).collect(),
            with: with.to_string(),
        }
    }
}

impl From<&ChainState> for Chain {
    fn from(state: &ChainState) -> Self {
        let (state, last_seq, missing, faults) = match state {
            ChainState::Empty => (Integrity::Empty, 0, Vec::new(), 0),
            ChainState::Intact { last } => (Integrity::Intact, *last, Vec::new(), 0),
            ChainState::Gap { last, missing } => (Integrity::Gap, *last, missing.clone(), 0),
            ChainState::Faulty { last, faults } => (Integrity::Faulty, *last, Vec::new(), *faults),
        };
        Self {
            faults,
            last_seq,
            missing,
            state,
        }
    }
}

/// A conversation in the list: the contact, how many messages, how many unread, the newest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Conversation {
    /// The newest message.
    pub last: Message,
    /// How many messages the conversation holds.
    pub messages: u64,
    /// Whether the contact is online; `null` when not known.
    pub online: Option<bool>,
    /// How far the conversation's keys have moved on.
    pub ratchet: RatchetView,
    /// How many incoming messages are unread.
    pub unread: u64,
    /// The other party.
    pub with: String,
}

/// How far a conversation's keys have moved on (`conversations --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RatchetView {
    /// When the keys last moved on (RFC 3339), `null` before the first step.
    pub last_step_at: Option<String>,
    /// DH ratchet steps of both sides.
    pub steps: u64,
}

impl Conversation {
    /// The list entry of `c`, with what is known of the contact's presence and its keys.
    #[must_use]
    pub fn new(
        c: &ConversationSummary,
        online: Option<bool>,
        ratchet: &queries::RatchetSummary,
    ) -> Self {
        Self {
            last: Message::from(&c.last),
            messages: c.messages,
            online,
            ratchet: RatchetView {
                steps: ratchet.steps,
                last_step_at: ratchet.last_step_at.map(rfc3339),
            },
            unread: c.unread,
            with: c.with.to_string(),
        }
    }
}

/// The device certificate as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Certificate {
    /// Whole days left (0 when expired or within a day of it).
    pub days_left: i64,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// One sentence from 7 days before expiry (what to do), and once expired; else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl Certificate {
    /// How a certificate valid for `validity` stands at `now`.
    #[must_use]
    pub fn new(validity: &Validity, now: Timestamp) -> Self {
        Self {
            days_left: validity.days_left(now),
            expires_at: rfc3339(validity.not_after),
            warning: validity.standing(now).warning(),
        }
    }
}

/// The peer's state (`status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// The device certificate: when it expires, and a warning when that is near.
    pub certificate: Certificate,
    /// The contacts connected now, one entry each.
    pub connections: Vec<Connection>,
    /// The user's signed device list as this device holds it; absent until one is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_list: Option<DeviceListSummary>,
    /// The home folder: in the window's status only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Addresses the node listens on.
    pub listen_addrs: Vec<String>,
    /// Messages waiting for a receipt.
    pub outbox: usize,
    /// This device's libp2p peer id.
    pub peer_id: String,
    /// Of the outbox, the messages the rendezvous holds for offline recipients.
    pub queued: usize,
    /// Whether other peers can dial this device directly, as AutoNAT found.
    pub reachability: Reachability,
    /// Every DH ratchet step this device took, over all conversations (TLS key refreshes are
    /// not counted).
    pub rekeys: u64,
    /// The slot held on the rendezvous's relay.
    pub relay: Relay,
    /// The rendezvous connection.
    pub rendezvous: Rendezvous,
    /// The same as `rendezvous.connected`.
    pub rendezvous_connected: bool,
    /// The enrolled user.
    pub user: String,
}

/// The signed device list held, in short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceListSummary {
    /// Its version.
    pub version: u64,
    /// How many devices it names.
    pub devices: usize,
    /// Whether it names this device (false: contacts see this device as a key change).
    pub this_device: bool,
}

impl DeviceListSummary {
    /// `list` in short, `current` being this device's key.
    #[must_use]
    pub fn of(list: &parley_domain::devices::DeviceList, current: &[u8; 32]) -> Self {
        Self {
            version: list.version,
            devices: list.devices.len(),
            this_device: list.lists(current),
        }
    }
}

/// Whether other peers can dial this device directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// A dial-back from the rendezvous reached it.
    Public,
    /// Every address tested was unreachable from outside: it holds a relay slot.
    Private,
    /// Not tested yet.
    Unknown,
}

/// The relay slot as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Relay {
    /// The circuit addresses it gives, each ending in `/p2p-circuit/p2p/<own id>`.
    pub addrs: Vec<String>,
    /// Whether the rendezvous's relay holds a slot for this device now.
    pub reserved: bool,
}

/// How a connection to a contact runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// Straight between the two devices.
    Direct,
    /// Through the rendezvous's relay (end-to-end mutual TLS all the same).
    Relayed,
}

/// A contact connected now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Connection {
    /// Direct when any of its connections is, else relayed.
    pub path: Path,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// The contact.
    pub user: String,
}

/// The rendezvous as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rendezvous {
    /// Its p2p addresses, as enrolled.
    pub addrs: Vec<String>,
    /// Whether the node is connected to it and published.
    pub connected: bool,
}

impl Status {
    /// The document of `s`, with the rendezvous addresses the home was enrolled with and the
    /// certificate held (`now` is `s`'s time).
    #[must_use]
    pub fn new(
        s: &queries::Status,
        rendezvous_addrs: &[String],
        certificate: &Validity,
        now: Timestamp,
    ) -> Self {
        Self {
            certificate: Certificate::new(certificate, now),
            connections: s
                .node
                .connections
                .iter()
                .map(|c| Connection {
                    path: match c.path {
                        ports::Path::Direct => Path::Direct,
                        ports::Path::Relayed => Path::Relayed,
                    },
                    peer_id: c.peer_id.clone(),
                    user: c.user.to_string(),
                })
                .collect(),
            device_list: None,
            home: None,
            listen_addrs: s.node.listen_addrs.clone(),
            outbox: s.outbox,
            queued: s.queued,
            rekeys: s.rekeys,
            peer_id: s.node.peer_id.clone(),
            rendezvous: Rendezvous {
                addrs: rendezvous_addrs.to_vec(),
                connected: s.node.rendezvous_connected,
            },
            rendezvous_connected: s.node.rendezvous_connected,
            reachability: match s.node.reachability {
                ports::Reachability::Public => Reachability::Public,
                ports::Reachability::Private => Reachability::Private,
                ports::Reachability::Unknown => Reachability::Unknown,
            },
            relay: Relay {
                reserved: s.node.relay.reserved,
                addrs: s.node.relay.addrs.clone(),
            },
            user: s.user.to_string(),
        }
    }
}

/// A contact: safety numbers, and whether new keys wait for a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Contact {
    /// Whether the contact presented other keys since they were pinned.
    pub keys_changed: bool,
    /// The safety number the new keys would give.
    pub pending_safety_number: Option<String>,
    /// When the keys were pinned (RFC 3339).
    pub pinned_at: String,
    /// How far the conversation's keys have moved on.
    pub ratchet: RatchetView,
    /// The safety number with the pinned keys (60 digits).
    pub safety_number: String,
    /// The contact.
    pub user: String,
}

impl Contact {
    /// The details of `view`, with how far the conversation's keys have moved on.
    #[must_use]
    pub fn new(view: &queries::ContactView, ratchet: &queries::RatchetSummary) -> Self {
        Self {
            keys_changed: view.contact.pending.is_some(),
            pending_safety_number: view.pending_safety_number.as_ref().map(ToString::to_string),
            pinned_at: rfc3339(view.contact.pinned_at),
            ratchet: RatchetView {
                steps: ratchet.steps,
                last_step_at: ratchet.last_step_at.map(rfc3339),
            },
            safety_number: view.safety_number.to_string(),
            user: view.contact.user.to_string(),
        }
    }
}

/// A message sent: the recipient's receipt is back, or the rendezvous holds it for the
/// offline recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sent {
    /// The receipt is back.
    pub delivered: bool,
    /// The new message's id.
    pub id: String,
    /// The rendezvous holds it for the offline recipient (the receipt comes later).
    #[serde(default)]
    pub queued: bool,
    /// The recipient.
    pub to: String,
}

/// What the window's send comes to: delivered, or kept in the outbox to go out later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Outcome {
    /// The receipt is back.
    Delivered {
        /// Always true.
        delivered: bool,
        /// The new message's id.
        id: String,
        /// Always false.
        queued: bool,
        /// The recipient.
        to: String,
    },
    /// Kept in the outbox; it goes out by itself.
    Queued {
        /// Always false.
        delivered: bool,
        /// Why it waits, one sentence.
        note: String,
        /// Always true.
        queued: bool,
    },
}

/// New keys accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Trusted {
    /// Always true.
    pub trusted: bool,
    /// The contact.
    pub user: String,
}

/// The second factor turned on: its secret as an `otpauth://` URI, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TotpEnabled {
    /// `otpauth://totp/Parley:<user>?secret=<base32>&issuer=Parley`, for an authenticator app.
    pub uri: String,
    /// The same URI as a QR code: an SVG document (empty if it does not fit one, which a URI
    /// this short always does).
    pub qr_svg: String,
}

/// One of this user's devices, as the signed device list names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Device {
    /// Its short id: the first 8 bytes of its device key, hex (what `devices remove` takes).
    pub id: String,
    /// What its owner calls it.
    pub name: String,
    /// When it was added to the list, RFC 3339.
    pub added_at: String,
    /// Whether it is the device answering.
    pub current: bool,
}

impl Device {
    /// The devices `list` names, oldest first, `current` marking this device's key.
    #[must_use]
    pub fn all(list: &parley_domain::devices::DeviceList, current: &[u8; 32]) -> Vec<Self> {
        list.devices
            .iter()
            .map(|d| Self {
                id: parley_domain::devices::device_id(&d.ed25519),
                name: d.name.clone(),
                added_at: rfc3339(d.added_at),
                current: d.ed25519 == *current,
            })
            .collect()
    }
}

/// The second factor turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TotpDisabled {
    /// Always false: enrollments of the name need no code any more.
    pub totp: bool,
}

/// `text` as a QR code in an SVG document (dark modules as one path, a quiet zone of 4),
/// or an empty string when it does not fit a QR code.
#[must_use]
pub fn qr_svg(text: &str) -> String {
    const QUIET: i32 = 4;
    let Ok(code) = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium) else {
        return String::new();
    };
    let side = code.size() + 2 * QUIET;
    let mut path = String::new();
    for y in 0..code.size() {
        for x in 0..code.size() {
            if code.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + QUIET, y + QUIET));
            }
        }
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" shape-rendering="crispEdges"><rect width="100%" height="100%" fill="#fff"/><path d="{path}" fill="#000"/></svg>"##
    )
}

/// A conversation counted as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Read {
    /// The other party.
    pub with: String,
}

/// An attachment decrypted into a new file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Saved {
    /// Its size in bytes.
    pub bytes: u64,
    /// The new file.
    pub saved: String,
}

/// What watchers receive (`{"event": kind, ...}`): the control socket's subscribers and the
/// window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A new message arrived and is stored.
    Message {
        /// The message.
        message: Message,
    },
    /// One of our messages is sealed and stored, its receipt not back yet.
    Stored {
        /// The message.
        message: Message,
    },
    /// The receipt for one of our messages came back.
    Delivered {
        /// Which message.
        id: String,
        /// To whom.
        to: String,
    },
    /// The rendezvous holds one of our messages for its offline recipient.
    Queued {
        /// Which message.
        id: String,
        /// To whom.
        to: String,
    },
    /// A contact presented other keys than the pinned ones.
    KeysChanged {
        /// Whose keys.
        user: String,
    },
    /// An incoming message was refused for good.
    Refused {
        /// Who sent it.
        from: String,
        /// Why, in words.
        reason: String,
    },
    /// Disappearing messages were deleted (`count` 0: reload, events were missed).
    Expired {
        /// How many.
        count: u64,
    },
    /// A contact came online or went offline.
    Presence {
        /// Whether the directory lists it now.
        online: bool,
        /// Whose state.
        user: String,
    },
    /// The window's status line changed.
    Status {
        /// The new status.
        status: Status,
    },
    /// The peer stopped; the sentence says why and what to do.
    Stopped {
        /// One sentence.
        message: String,
    },
}

impl Event {
    /// The document of a peer event; `None` for a kind this version does not show.
    #[must_use]
    pub fn of(event: &ports::Event) -> Option<Self> {
        use ports::Event as E;
        Some(match event {
            E::MessageReceived(m) => Self::Message { message: m.into() },
            E::MessageSent(m) => Self::Stored { message: m.into() },
            E::MessageDelivered { id, to } => Self::Delivered {
                id: id.to_string(),
                to: to.to_string(),
            },
            E::MessageQueued { id, to } => Self::Queued {
                id: id.to_string(),
                to: to.to_string(),
            },
            E::KeysChanged { user } => Self::KeysChanged {
                user: user.to_string(),
            },
            E::MessageRefused { from, reason } => Self::Refused {
                from: from.to_string(),
                reason: reason.clone(),
            },
            E::MessagesExpired { count } => Self::Expired { count: *count },
            E::Presence { user, online } => Self::Presence {
                online: *online,
                user: user.to_string(),
            },
            _ => return None,
        })
    }
}

/// What the window should show, with what it needs for that screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Boot {
    /// `enroll`, `unlock`, `ready` or `fatal`.
    pub phase: Phase,
    /// The home folder.
    pub home: String,
    /// The enrolled user, once known.
    pub user: Option<String>,
    /// Whether the home has a store already (then enrolling asks no passphrase).
    pub store_exists: bool,
    /// For `fatal`: why.
    pub message: Option<String>,
    /// Something the user should know (trust on first use, a key kept in a file).
    pub warning: Option<String>,
    /// What to offer on the first-run screen.
    pub defaults: Defaults,
}

/// The screen a home calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// First run: enroll.
    Enroll,
    /// The store is locked with a passphrase.
    Unlock,
    /// The peer runs.
    Ready,
    /// The home cannot be used now; `message` says why.
    Fatal,
}

/// Values offered on the first-run screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Defaults {
    /// The rendezvous's address.
    pub server: Option<String>,
    /// Its CA fingerprint.
    pub fingerprint: Option<String>,
    /// An invite the app was opened with (`parley://join?…`), as given: the screen reads it
    /// as if it were pasted into its Invite field.
    pub invite: Option<String>,
}

/// An invite read for the first-run screen: what it fills in, for the user to see before
/// enrolling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Invite {
    /// The rendezvous's HTTPS address.
    pub server: String,
    /// The CA fingerprint to pin (`sha256:` and 64 lowercase hex digits).
    pub fingerprint: String,
}

/// A file picked for sending, kept until its message is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Staged {
    /// Its file name.
    pub name: String,
    /// Its size in bytes.
    pub size: usize,
    /// What names it in `send`'s `attachments`.
    pub token: String,
}

/// A refusal: a stable snake_case code and one sentence that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Refusal {
    /// The stable code.
    pub code: String,
    /// One sentence.
    pub message: String,
}
