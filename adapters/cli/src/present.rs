//! JSON documents as readable lines: the CLI's edge.

use serde_json::Value;

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
    use serde_json::json;

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
