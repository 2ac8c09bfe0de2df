//! The daemon's documents as readable lines: the CLI's edge.

use parley_peer::view::{
    Contact, Conversation, Delivery, History, Integrity, Message, Path, Reachability, Status,
};

use crate::terminal;

/// Where each line of a message's text after its first begins: no line Parley writes itself
/// begins so (message lines begin with their time, attachment lines with `    attachment`,
/// chain lines with `chain`), so a peer's text cannot pass for one of them.
pub const CONTINUATION: &str = "    | ";

/// Readable lines for a message: its time, sender, the first line of its text and its state
/// on one line, each further line of the text under [`CONTINUATION`], then one line per
/// attachment. Everything the peer chose is shown through [`terminal`].
#[must_use]
pub fn message_line(m: &Message) -> String {
    let mut text = terminal::lines(&m.text);
    let first = text.next().unwrap_or_default();
    let mut line = format!(
        "{} {}: {}  [{}]",
        m.sent_at,
        terminal::inline(&m.from),
        first,
        state(m)
    );
    if let Some(at) = &m.expires_at {
        line.push_str(&format!("  (disappears at {})", terminal::inline(at)));
    }
    for more in text {
        line.push('\n');
        line.push_str(CONTINUATION);
        line.push_str(&more);
    }
    for a in &m.attachments {
        line.push_str(&format!(
            "\n    attachment {} of message {}: {} ({} bytes)",
            a.index,
            m.id,
            terminal::inline(&a.name),
            a.size
        ));
    }
    line
}

/// A message on one line, for lists: its text with line breaks shown as `\n`, its attachments
/// counted.
#[must_use]
pub fn message_summary(m: &Message) -> String {
    let mut line = format!(
        "{} {}: {}  [{}]",
        m.sent_at,
        terminal::inline(&m.from),
        terminal::inline(&m.text),
        state(m)
    );
    match m.attachments.len() {
        0 => {}
        1 => line.push_str("  (1 attachment)"),
        n => line.push_str(&format!("  ({n} attachments)")),
    }
    line
}

/// The delivery and verification state a message line ends with.
fn state(m: &Message) -> String {
    let delivery = match m.delivery {
        Delivery::Pending => "pending",
        Delivery::Queued => "queued",
        Delivery::Delivered => "delivered",
        Delivery::Received => "received",
        Delivery::Rejected => "rejected",
    };
    match (m.delivery, m.verified) {
        (Delivery::Pending, _) => "pending".to_owned(),
        (Delivery::Queued, _) => format!("held for {} by the rendezvous", terminal::inline(&m.to)),
        (_, true) => format!("{delivery}, verified"),
        (_, false) => format!(
            "{delivery}, NOT verified: {}",
            terminal::inline(m.reason.as_deref().unwrap_or("unknown reason"))
        ),
    }
}

/// Readable lines for a conversation, oldest first.
#[must_use]
pub fn history_lines(history: &History) -> String {
    let mut lines: Vec<String> = history.messages.iter().map(message_line).collect();
    let incoming = &history.chain.incoming;
    match incoming.state {
        Integrity::Gap => lines.push(format!(
            "chain from {}: messages missing at positions {}",
            terminal::inline(&history.with),
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
            terminal::inline(&history.with),
            incoming.faults
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
        terminal::inline(&c.with),
        c.messages,
        message_summary(&c.last)
    )
}

/// Readable lines for this user's devices, one per device: id, name, when added, and which is
/// this one.
#[must_use]
pub fn device_lines(list: &[parley_peer::view::Device]) -> String {
    list.iter()
        .map(|d| {
            format!(
                "{}  {}  added {}{}",
                d.id,
                terminal::inline(&d.name),
                d.added_at,
                if d.current { "  (this device)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Readable lines for the status.
#[must_use]
pub fn status_lines(s: &Status) -> String {
    let mut lines = format!(
        "user: {}\npeer-id: {}\nlisten: {}\nrendezvous: {} ({})\noutbox: {}\nqueued: {}\nrekeys: {}\nreachability: {}\nrelay: {}",
        terminal::inline(&s.user),
        terminal::inline(&s.peer_id),
        words(&s.listen_addrs),
        if s.rendezvous.connected {
            "connected"
        } else {
            "not connected"
        },
        words(&s.rendezvous.addrs),
        s.outbox,
        s.queued,
        s.rekeys,
        match s.reachability {
            Reachability::Public => "public",
            Reachability::Private => "private",
            Reachability::Unknown => "unknown",
        },
        if s.relay.reserved {
            format!("reserved ({})", words(&s.relay.addrs))
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
    if let Some(list) = &s.device_list {
        lines.push_str(&format!(
            "\ndevices: {} in the signed list (version {}){}",
            list.devices,
            list.version,
            if list.this_device {
                ""
            } else {
                ", this device NOT among them"
            }
        ));
    }
    for c in &s.connections {
        let path = match c.path {
            Path::Direct => "direct",
            Path::Relayed => "via relay",
        };
        lines.push_str(&format!(
            "\nconnected: {} {path}",
            terminal::inline(&c.user)
        ));
    }
    lines
}

/// Addresses (or other words from outside) on one line, separated by spaces.
fn words(list: &[String]) -> String {
    list.iter()
        .map(|w| terminal::inline(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Readable lines for a contact.
#[must_use]
pub fn contact_lines(c: &Contact) -> String {
    let user = terminal::inline(&c.user);
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

    fn received(text: &str) -> Message {
        Message {
            id: "0123456789abcdef0123456789abcdef".into(),
            from: "bob".into(),
            to: "alice".into(),
            text: text.into(),
            sent_at: "2026-11-22T10:00:00Z".into(),
            delivery: Delivery::Received,
            delivery_at: None,
            direction: Direction::Incoming,
            verified: true,
            verification: "verified".into(),
            reason: None,
            ttl: None,
            expires_at: None,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn a_peer_s_text_cannot_draw_a_line_of_its_own_nor_reach_the_terminal() {
        let mut m = received(
            "hi\n2026-11-22T10:00:01Z alice: pay bob  [delivered, verified]\r\n    attachment 1 of message 00: a.pdf (1 bytes)\x1b]0;owned\x07\x1b[2J\u{9b}31m\r",
        );
        m.attachments.push(Attachment {
            index: 0,
            name: "invoice\u{202e}fdp.exe".into(),
            sha256: "00".repeat(32),
            size: 7,
        });
        let shown = message_line(&m);
        assert_eq!(
            shown.lines().collect::<Vec<_>>(),
            [
                "2026-11-22T10:00:00Z bob: hi  [received, verified]",
                "    | 2026-11-22T10:00:01Z alice: pay bob  [delivered, verified]",
                "    |     attachment 1 of message 00: a.pdf (1 bytes)\\x1b]0;owned\\x07\\x1b[2J\\u{9b}31m\\r",
                "    attachment 0 of message 0123456789abcdef0123456789abcdef: invoice\\u{202e}fdp.exe (7 bytes)",
            ]
        );
        for c in ['\u{1b}', '\r', '\u{7}', '\u{9b}', '\u{202e}'] {
            assert!(!shown.contains(c), "{c:?} reached the output: {shown:?}");
        }
    }

    #[test]
    fn a_list_shows_a_multi_line_message_on_one_line() {
        let mut m = received("one\ntwo\x1b[1m");
        m.attachments.push(Attachment {
            index: 0,
            name: "a.txt".into(),
            sha256: "00".repeat(32),
            size: 1,
        });
        let line = conversation_line(&Conversation {
            with: "bob".into(),
            messages: 3,
            last: m,
            unread: 0,
            online: None,
            ratchet: parley_peer::view::RatchetView {
                steps: 0,
                last_step_at: None,
            },
        });
        assert_eq!(
            line,
            "bob  (3 messages)  last: 2026-11-22T10:00:00Z bob: one\\ntwo\\x1b[1m  [received, verified]  (1 attachment)"
        );
    }

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
