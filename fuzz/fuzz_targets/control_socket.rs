//! The control socket between `parley daemon` and the other subcommands: one JSON request per
//! line, decoded by the daemon, and one JSON response per line, decoded by the client. The
//! `Request` and `Response` types are the CLI's own file (`parley-cli` is a binary crate, so
//! the module is compiled in here by path), and the fields are parsed with the domain's
//! parsers as the daemon does.
//!
//! Invariants: whatever decodes encodes to JSON that decodes to the same value (for a
//! response, unless it holds a fractional number, see below); the request's values are domain
//! values parsed on the way in, and each one's text form parses back to the same value: a
//! username is the text it prints, a text is its own, a time to live lies within 1 s ..= 30
//! days, and a message id prints as lower-case hex.
#![no_main]

// The socket's name is not needed here.
#[allow(dead_code)]
#[path = "../../adapters/cli/src/control.rs"]
mod control;

use control::{Request, Response};
use libfuzzer_sys::fuzz_target;
use parley_domain::{MessageId, MessageText, Ttl, Username};
use parley_fuzz::json_round_trip as round_trip;
use serde_json::Value;

fn username(user: &Username) {
    let again = Username::parse(user.as_str()).expect("a username's text parses");
    assert_eq!(again.as_str(), user.as_str());
}

fuzz_target!(|data: &[u8]| {
    // The daemon reads one line of at most MAX_REQUEST bytes (and one more, to notice a longer
    // one); a line that is not UTF-8 ends the connection.
    let data = &data[..data.len().min(control::MAX_REQUEST + 1)];
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    match round_trip::<Request>(line.as_bytes()) {
        Some(Request::Send { to, text, ttl, .. }) => {
            username(&to);
            let again = MessageText::parse(text.as_str().to_owned()).expect("a text's text parses");
            assert_eq!(again.as_str(), text.as_str());
            if let Some(ttl) = ttl {
                assert!((Ttl::MIN..=Ttl::MAX).contains(&ttl), "a TTL out of bounds");
                assert_eq!(
                    Ttl::parse(&ttl.to_string()),
                    Ok(ttl),
                    "a TTL does not survive printing"
                );
            }
        }
        Some(Request::SaveAttachment { with, id, .. }) => {
            username(&with);
            let printed = id.to_string();
            assert_eq!(printed, printed.to_ascii_lowercase());
            assert!(
                MessageId::parse(&printed).is_ok_and(|again| again == id),
                "a message id does not survive printing"
            );
        }
        Some(Request::History { with }) => username(&with),
        Some(Request::Contact { user } | Request::Trust { user }) => username(&user),
        // A code is passed on as typed: the peer reads it (six digits) before it asks.
        Some(
            Request::Conversations
            | Request::Status
            | Request::Subscribe
            | Request::TotpEnable
            | Request::Devices
            | Request::TotpDisable { .. },
        )
        | None => {}
    }
    // The client's side. serde_json reads a fractional number to the nearest double only
    // approximately, so such a number need not survive a round trip; the daemon sends none.
    if serde_json::from_str::<Response<Value>>(line)
        .is_ok_and(|r| !matches!(r, Response::Ok { data } if has_fraction(&data)))
    {
        round_trip::<Response<Value>>(line.as_bytes());
    }
});

/// Whether `value` holds a number that is not an integer.
fn has_fraction(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_fraction),
        Value::Object(fields) => fields.values().any(has_fraction),
        _ => false,
    }
}
