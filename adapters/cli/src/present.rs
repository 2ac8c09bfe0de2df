//! Domain values to JSON documents and readable lines: the CLI's edge.

use parley_domain::{ConversationSummary, Delivery, Direction, StoredMessage, Timestamp};
use parley_usecases::queries::{ContactView, Status};
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
    };
    json!({
        "id": m.id.to_string(),
        "from": m.from.as_str(),
        "to": m.to.as_str(),
        "text": m.text.as_str(),
        "sent_at": rfc3339(m.sent_at),
        "verified": m.verified,
        "verification": if m.verified { "sender authenticated by its CA-verified certificate" } else { "unverified" },
        "direction": match m.direction { Direction::Outgoing => "outgoing", Direction::Incoming => "incoming" },
        "delivery": delivery,
        "delivery_at": delivered_at,
    })
}

/// A conversation as a JSON object.
#[must_use]
pub fn conversation(c: &ConversationSummary) -> Value {
    json!({ "with": c.with.as_str(), "messages": c.messages, "last": message(&c.last) })
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

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
}

/// One readable line for a message JSON object.
#[must_use]
pub fn message_line(m: &Value) -> String {
    let state = match (
        field(m, "delivery"),
        m.get("verified").and_then(Value::as_bool),
    ) {
        ("pending", _) => "pending".to_owned(),
        (d, Some(true)) => format!("{d}, verified"),
        (d, _) => format!("{d}, NOT verified"),
    };
    format!(
        "{} {}: {}  [{}]",
        field(m, "sent_at"),
        field(m, "from"),
        field(m, "text"),
        state
    )
}

/// Readable lines for a history JSON object, oldest first.
#[must_use]
pub fn history_lines(history: &Value) -> String {
    let messages = history.get("messages").and_then(Value::as_array);
    messages
        .into_iter()
        .flatten()
        .map(message_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Readable lines for a conversation-list JSON array.
#[must_use]
pub fn conversation_lines(list: &Value) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .map(conversation_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One readable line for a conversation JSON object.
#[must_use]
pub fn conversation_line(c: &Value) -> String {
    let last = c.get("last").cloned().unwrap_or(Value::Null);
    format!(
        "{}  ({} messages)  last: {}",
        field(c, "with"),
        c.get("messages").and_then(Value::as_u64).unwrap_or(0),
        message_line(&last)
    )
}

/// Readable lines for a status JSON object.
#[must_use]
pub fn status_lines(s: &Value) -> String {
    let rendezvous = s.get("rendezvous").cloned().unwrap_or(Value::Null);
    let connected = rendezvous
        .get("connected")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let list = |v: Option<&Value>| {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    format!(
        "user: {}\npeer-id: {}\nlisten: {}\nrendezvous: {} ({})\noutbox: {}",
        field(s, "user"),
        field(s, "peer_id"),
        list(s.get("listen_addrs")),
        if connected {
            "connected"
        } else {
            "not connected"
        },
        list(rendezvous.get("addrs")),
        s.get("outbox").and_then(Value::as_u64).unwrap_or(0),
    )
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

/// Readable lines for a contact JSON object.
#[must_use]
pub fn contact_lines(c: &Value) -> String {
    let user = field(c, "user");
    let mut out = format!(
        "safety number with {user}:\n  {}",
        field(c, "safety_number")
    );
    if c.get("keys_changed").and_then(Value::as_bool) == Some(true) {
        out.push_str(&format!(
            "\n{user}'s keys have CHANGED; with the new keys the safety number would be:\n  {}\n\
             compare it with {user} in person or by a call, then accept with `parley trust {user}`",
            field(c, "pending_safety_number")
        ));
    }
    out
}
