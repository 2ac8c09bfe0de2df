//! Domain values to JSON documents and readable lines: the CLI's edge.

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
        (d, _) => format!(
            "{d}, NOT verified: {}",
            m.get("reason")
                .and_then(Value::as_str)
                .unwrap_or("unknown reason")
        ),
    };
    let mut line = format!(
        "{} {}: {}  [{}]",
        field(m, "sent_at"),
        field(m, "from"),
        field(m, "text"),
        state
    );
    if let Some(at) = m.get("expires_at").and_then(Value::as_str) {
        line.push_str(&format!("  (disappears at {at})"));
    }
    for a in m
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        line.push_str(&format!(
            "\n    attachment {} of message {}: {} ({} bytes)",
            a.get("index").and_then(Value::as_u64).unwrap_or(0),
            field(m, "id"),
            field(a, "name"),
            a.get("size").and_then(Value::as_u64).unwrap_or(0)
        ));
    }
    line
}

/// Readable lines for a history JSON object, oldest first.
#[must_use]
pub fn history_lines(history: &Value) -> String {
    let messages = history.get("messages").and_then(Value::as_array);
    let mut lines: Vec<String> = messages.into_iter().flatten().map(message_line).collect();
    let incoming = history.pointer("/chain/incoming");
    match incoming.map(|c| field(c, "state")) {
        Some("gap") => lines.push(format!(
            "chain from {}: messages missing at positions {}",
            field(history, "with"),
            incoming
                .and_then(|c| c.get("missing"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|r| match (r.get(0), r.get(1)) {
                    (Some(a), Some(b)) if a == b => a.to_string(),
                    (Some(a), Some(b)) => format!("{a}-{b}"),
                    _ => "?".into(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some("faulty") => lines.push(format!(
            "chain from {}: {} message(s) do not fit (see NOT verified above)",
            field(history, "with"),
            incoming
                .and_then(|c| c.get("faults"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        )),
        _ => {}
    }
    lines.join("\n")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_message_id_of_its_attachments_and_why_it_is_not_verified() {
        let m = json!({
            "id": "0123456789abcdef0123456789abcdef",
            "from": "bob",
            "text": "see attached",
            "sent_at": "2026-11-22T10:00:00Z",
            "delivery": "received",
            "verified": false,
            "reason": "message 2 does not follow",
            "expires_at": "2026-11-22T11:00:00Z",
            "attachments": [{ "index": 0, "name": "photo.jpg", "size": 1234 }],
        });
        let line = message_line(&m);
        assert!(
            line.contains("NOT verified: message 2 does not follow"),
            "{line}"
        );
        assert!(
            line.contains("disappears at 2026-11-22T11:00:00Z"),
            "{line}"
        );
        assert!(
            line.contains(
                "attachment 0 of message 0123456789abcdef0123456789abcdef: photo.jpg (1234 bytes)"
            ),
            "{line}"
        );
    }
}
