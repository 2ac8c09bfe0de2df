//! Domain values as JSON documents: the shape the control socket, `--json` output and the
//! desktop window all show.

use parley_domain::{
    ChainState, ConversationSummary, Delivery, Direction, StoredMessage, Timestamp, Verification,
};
use parley_usecases::queries::{ContactView, History, Status};
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// RFC 3339, UTC, millisecond precision.
#[must_use]
pub fn rfc3339(at: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.0.to_string())
}

/// A message as a JSON object (the contract's fields first).
#[must_use]
pub fn message(m: &StoredMessage) -> Value {
    let (delivery, delivered_at) = match m.delivery {
        Delivery::Pending => ("pending", None),
        Delivery::Delivered(at) => ("delivered", Some(rfc3339(at))),
        Delivery::Received(at) => ("received", Some(rfc3339(at))),
        Delivery::Rejected(at) => ("rejected", Some(rfc3339(at))),
    };
    json!({
        "id": m.id.to_string(),
        "from": m.from.as_str(),
        "to": m.to.as_str(),
        "text": m.text.as_str(),
        "sent_at": rfc3339(m.sent_at),
        "verified": m.verification.is_verified(),
        "verification": match m.verification {
            Verification::Verified => "verified",
            Verification::Failed(fault) => fault.code(),
        },
        "reason": match m.verification {
            Verification::Verified => None,
            Verification::Failed(fault) => Some(fault.to_string()),
        },
        "direction": match m.direction { Direction::Outgoing => "outgoing", Direction::Incoming => "incoming" },
        "delivery": delivery,
        "delivery_at": delivered_at,
        "ttl": m.ttl.map(|t| t.to_string()),
        "expires_at": m.expires_at.map(rfc3339),
        "attachments": m.attachments.iter().enumerate().map(|(i, a)| json!({
            "index": i,
            "name": a.meta.name,
            "size": a.meta.size,
            "sha256": a.meta.sha256.to_string(),
        })).collect::<Vec<_>>(),
    })
}

/// A conversation and its chains as the JSON document of `history --json`.
#[must_use]
pub fn history(with: &str, h: &History) -> Value {
    json!({
        "with": with,
        "messages": h.messages.iter().map(message).collect::<Vec<_>>(),
        "chain": {
            "incoming": chain(&h.incoming),
            "outgoing": { "state": "sealed", "last_seq": h.outgoing.seq },
        },
    })
}

/// The state of a received chain as a JSON object.
#[must_use]
pub fn chain(state: &ChainState) -> Value {
    let (last, missing, faults) = match state {
        ChainState::Empty => (0, Vec::new(), 0),
        ChainState::Intact { last } => (*last, Vec::new(), 0),
        ChainState::Gap { last, missing } => (*last, missing.clone(), 0),
        ChainState::Faulty { last, faults } => (*last, Vec::new(), *faults),
    };
    json!({
        "state": state.code(),
        "last_seq": last,
        "missing": missing.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "faults": faults,
    })
}

/// A conversation as a JSON object: the contact, how many messages, how many of them are
/// unread, and the newest.
#[must_use]
pub fn conversation(c: &ConversationSummary) -> Value {
    json!({
        "with": c.with.as_str(),
        "messages": c.messages,
        "unread": c.unread,
        "last": message(&c.last),
    })
}

/// The status as a JSON object.
#[must_use]
pub fn status(s: &Status, rendezvous_addrs: &[String]) -> Value {
    json!({
        "user": s.user.as_str(),
        "peer_id": s.node.peer_id,
        "listen_addrs": s.node.listen_addrs,
        "rendezvous": { "connected": s.node.rendezvous_connected, "addrs": rendezvous_addrs },
        "rendezvous_connected": s.node.rendezvous_connected,
        "outbox": s.outbox,
    })
}

/// A contact as a JSON object: safety numbers, and whether new keys wait for a decision.
#[must_use]
pub fn contact(view: &ContactView) -> Value {
    json!({
        "user": view.contact.user.as_str(),
        "safety_number": view.safety_number.to_string(),
        "keys_changed": view.contact.pending.is_some(),
        "pending_safety_number": view.pending_safety_number.as_ref().map(ToString::to_string),
        "pinned_at": rfc3339(view.contact.pinned_at),
    })
}

/// An event as the JSON object watchers receive (`{"event": kind, ...}`).
#[must_use]
pub fn event(event: &parley_usecases::ports::Event) -> Value {
    use parley_usecases::ports::Event;
    match event {
        Event::MessageReceived(m) => json!({ "event": "message", "message": message(m) }),
        Event::MessageSent(m) => json!({ "event": "stored", "message": message(m) }),
        Event::MessageDelivered { id, to } => {
            json!({ "event": "delivered", "id": id.to_string(), "to": to.as_str() })
        }
        Event::KeysChanged { user } => json!({ "event": "keys_changed", "user": user.as_str() }),
        Event::MessageRefused { from, reason } => {
            json!({ "event": "refused", "from": from.as_str(), "reason": reason })
        }
        Event::MessagesExpired { count } => json!({ "event": "expired", "count": count }),
        Event::Presence { user, online } => {
            json!({ "event": "presence", "user": user.as_str(), "online": online })
        }
        _ => json!({ "event": "unknown" }),
    }
}
