//! The daemon's documents as readable lines: the CLI's edge.

use parley_peer::view::{
    Contact, Conversation, Delivery, History, Integrity, Message, Path, Reachability, Status,
};

/// One readable line for a message.
#[must_use]
pub fn message_line(m: &Message) -> String {
    let delivery = match m.delivery {
        Delivery::Pending => "pending",
        Delivery::Queued => "queued",
        Delivery::Delivered => "delivered",
        Delivery::Received => "received",
        Delivery::Rejected => "rejected",
    };
    let state = match (m.delivery, m.verified) {
        (Delivery::Pending, _) => "pending".to_owned(),
        (Delivery::Queued, _) => format!("held for {} by the rendezvous", m.to),
        (_, true) => format!("{delivery}, verified"),
        (_, false) => format!(
            "{delivery}, NOT verified: {}",
            m.reason.as_deref().unwrap_or("unknown reason")
        ),
    };
    let mut line = format!("{} {}: {}  [{}]", m.sent_at, m.from, m.text, state);
    if let Some(at) = &m.expires_at {
        line.push_str(&format!("  (disappears at {at})"));
    }
    for a in &m.attachments {
        line.push_str(&format!(
            "\n    attachment {} of message {}: {} ({} bytes)",
            a.index, m.id, a.name, a.size
        ));
    }
    line
}

/// Readable lines for a conversation, oldest first.
#[must_use]
pub fn history_lines(history: &History) -> String {
    let mut lines: Vec<String> = history.messages.iter().map(message_line).collect();
    let incoming = &history.chain.incoming;
    match incoming.state {
        Integrity::Gap => lines.push(format!(
            "chain from {}: messages missing at positions {}",
            history.with,
            incoming
                .missing
                .iter()
                .map(|(a, b)| if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Integrity::Faulty => lines.push(format!(
            "chain from {}: {} message(s) do not fit (see NOT verified above)",
            history.with, incoming.faults
        )),
        Integrity::Empty | Integrity::Intact => {}
    }
    lines.join("\n")
}

/// Readable lines for the conversation list.
#[must_use]
pub fn conversation_lines(list: &[Conversation]) -> String {
    list.iter()
        .map(conversation_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One readable line for a conversation.
#[must_use]
pub fn conversation_line(c: &Conversation) -> String {
    format!(
        "{}  ({} messages)  last: {}",
        c.with,
        c.messages,
        message_line(&c.last)
    )
}

/// Readable lines for the status.
#[must_use]
pub fn status_lines(s: &Status) -> String {
    let mut lines = format!(
        "user: {}\npeer-id: {}\nlisten: {}\nrendezvous: {} ({})\noutbox: {}\nqueued: {}\nreachability: {}\nrelay: {}",
        s.user,
        s.peer_id,
        s.listen_addrs.join(" "),
        if s.rendezvous.connected {
            "connected"
        } else {
            "not connected"
        },
        s.rendezvous.addrs.join(" "),
        s.outbox,
        s.queued,
        match s.reachability {
            Reachability::Public => "public",
            Reachability::Private => "private",
            Reachability::Unknown => "unknown",
        },
        if s.relay.reserved {
            format!("reserved ({})", s.relay.addrs.join(" "))
        } else {
            "no slot".to_owned()
        },
    );
    lines.push_str(&format!(
        "\ncertificate: expires {} ({})",
        s.certificate.expires_at,
        if s.certificate.warning.is_some() && s.certificate.days_left == 0 {
            "expired or expiring today".to_owned()
        } else {
            format!("{} days left", s.certificate.days_left)
        }
    ));
    for c in &s.connections {
        let path = match c.path {
            Path::Direct => "direct",
            Path::Relayed => "via relay",
        };
        lines.push_str(&format!("\nconnected: {} {path}", c.user));
    }
    lines
}

/// Readable lines for a contact.
#[must_use]
pub fn contact_lines(c: &Contact) -> String {
    let user = &c.user;
    let mut out = format!("safety number with {user}:\n  {}", c.safety_number);
    if c.keys_changed {
        out.push_str(&format!(
            "\n{user}'s keys have CHANGED; with the new keys the safety number would be:\n  {}\n\
             compare it with {user} in person or by a call, then accept with `parley trust {user}`",
            c.pending_safety_number.as_deref().unwrap_or("?")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use parley_peer::view::{Attachment, Direction};

    use super::*;

    #[test]
    fn a_line_names_the_message_id_of_its_attachments_and_why_it_is_not_verified() {
        let m = Message {
            id: "0123456789abcdef0123456789abcdef".into(),
            from: "bob".into(),
            to: "alice".into(),
            text: "see attached".into(),
            sent_at: "2026-11-22T10:00:00Z".into(),
            delivery: Delivery::Received,
            delivery_at: None,
            direction: Direction::Incoming,
            verified: false,
            verification: "broken_chain".into(),
            reason: Some("message 2 does not follow".into()),
            ttl: Some("1h".into()),
            expires_at: Some("2026-11-22T11:00:00Z".into()),
            attachments: vec![Attachment {
                index: 0,
                name: "photo.jpg".into(),
                sha256: "00".repeat(32),
                size: 1234,
            }],
        };
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
