//! The bytes on disk: tree keys and the serde mirrors of the domain types, converted at the
//! edge. Decoding parses every field back through the domain's own `parse`, so a record that
//! breaks a domain rule is reported as corrupt, never trusted and never a panic.
//!
//! Error sentences never quote a record's content (serde_json's messages can echo a value, and
//! a value may be message text or key material): they name the tree, the place and the rule.

use parley_domain::{
    CaFingerprint, Contact, Delivery, DeviceIdentity, Direction, MessageId, MessageText, PeerKeys,
    Secret32, StoredMessage, Timestamp, Username,
};
use parley_usecases::ports::StoreError;
use serde::{Deserialize, Serialize};

/// The single key of the `identity` tree.
pub(crate) const IDENTITY_KEY: &[u8] = b"device";

/// Separates a username from what follows it in a key; never part of a username.
const SEPARATOR: u8 = 0x00;

/// `username ‖ 0x00`: the prefix of one conversation in `messages`.
pub(crate) fn conversation_prefix(with: &Username) -> Vec<u8> {
    let mut key = with.as_str().as_bytes().to_vec();
    key.push(SEPARATOR);
    key
}

/// `contact ‖ 0x00 ‖ seq (big-endian)`: a key of `messages`.
pub(crate) fn message_key(contact: &Username, seq: u64) -> Vec<u8> {
    let mut key = conversation_prefix(contact);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `sender ‖ 0x00 ‖ id`: a key of `seen`.
pub(crate) fn seen_key(sender: &Username, id: &MessageId) -> Vec<u8> {
    let mut key = conversation_prefix(sender);
    key.extend_from_slice(id.as_bytes());
    key
}

/// `seq (big-endian)`: a key of `outbox`.
pub(crate) fn outbox_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Splits a `messages` key into its conversation (the raw username bytes) and sequence.
pub(crate) fn split_message_key(key: &[u8]) -> Result<(&[u8], u64), StoreError> {
    let bad = || {
        corrupt(
            "messages",
            "a key is not username, 0x00 and an 8-byte sequence",
        )
    };
    let at = key.iter().position(|&b| b == SEPARATOR).ok_or_else(bad)?;
    let (user, rest) = key.split_at(at);
    let seq: [u8; 8] = rest
        .get(1..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(bad)?;
    Ok((user, u64::from_be_bytes(seq)))
}

/// A record that cannot be read back: `StoreError::Unavailable("corrupt record in <tree>: …")`.
pub(crate) fn corrupt(tree: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt record in the {tree} tree: {what}"))
}

/// A JSON problem, described without quoting the input.
fn json_problem(tree: &str, e: &serde_json::Error) -> StoreError {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "JSON of the wrong shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    corrupt(
        tree,
        format_args!("{kind} at line {} column {}", e.line(), e.column()),
    )
}

/// `StoredMessage` as JSON.
#[derive(Serialize, Deserialize)]
struct MessageRecord {
    /// 32 hex digits.
    id: String,
    from: String,
    to: String,
    text: String,
    /// Milliseconds since the Unix epoch.
    sent_at: i64,
    direction: DirectionRecord,
    delivery: DeliveryRecord,
    verified: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DirectionRecord {
    Outgoing,
    Incoming,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "at")]
enum DeliveryRecord {
    Pending,
    Delivered(i64),
    Received(i64),
}

pub(crate) fn encode_message(message: &StoredMessage) -> Result<Vec<u8>, StoreError> {
    let record = MessageRecord {
        id: message.id.to_string(),
        from: message.from.to_string(),
        to: message.to.to_string(),
        text: message.text.as_str().to_owned(),
        sent_at: message.sent_at.0,
        direction: match message.direction {
            Direction::Outgoing => DirectionRecord::Outgoing,
            Direction::Incoming => DirectionRecord::Incoming,
        },
        delivery: match message.delivery {
            Delivery::Pending => DeliveryRecord::Pending,
            Delivery::Delivered(at) => DeliveryRecord::Delivered(at.0),
            Delivery::Received(at) => DeliveryRecord::Received(at.0),
        },
        verified: message.verified,
    };
    serde_json::to_vec(&record)
        .map_err(|e| StoreError::Unavailable(format!("could not encode a message: {e}")))
}

pub(crate) fn decode_message(bytes: &[u8]) -> Result<StoredMessage, StoreError> {
    const TREE: &str = "messages";
    let record: MessageRecord =
        serde_json::from_slice(bytes).map_err(|e| json_problem(TREE, &e))?;
    Ok(StoredMessage {
        id: MessageId::parse(&record.id).map_err(|e| corrupt(TREE, e))?,
        from: Username::parse(&record.from).map_err(|e| corrupt(TREE, e))?,
        to: Username::parse(&record.to).map_err(|e| corrupt(TREE, e))?,
        text: MessageText::parse(record.text).map_err(|e| corrupt(TREE, e))?,
        sent_at: Timestamp(record.sent_at),
        direction: match record.direction {
            DirectionRecord::Outgoing => Direction::Outgoing,
            DirectionRecord::Incoming => Direction::Incoming,
        },
        delivery: match record.delivery {
            DeliveryRecord::Pending => Delivery::Pending,
            DeliveryRecord::Delivered(at) => Delivery::Delivered(Timestamp(at)),
            DeliveryRecord::Received(at) => Delivery::Received(Timestamp(at)),
        },
        verified: record.verified,
    })
}

/// `DeviceIdentity` as JSON; keys and DER as lower-case hex.
#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    user: String,
    ed25519: String,
    x25519: String,
    certificate_der: String,
    ca_der: String,
    /// `sha256:<64 hex>`.
    ca_fingerprint: String,
    server: String,
    rendezvous_addrs: Vec<String>,
}

pub(crate) fn encode_identity(identity: &DeviceIdentity) -> Result<Vec<u8>, StoreError> {
    let record = IdentityRecord {
        user: identity.user.to_string(),
        ed25519: hex(identity.ed25519.expose()),
        x25519: hex(identity.x25519.expose()),
        certificate_der: hex(&identity.certificate_der),
        ca_der: hex(&identity.ca_der),
        ca_fingerprint: identity.ca_fingerprint.to_string(),
        server: identity.server.clone(),
        rendezvous_addrs: identity.rendezvous_addrs.clone(),
    };
    serde_json::to_vec(&record)
        .map_err(|_| StoreError::Unavailable("could not encode the device identity".into()))
}

pub(crate) fn decode_identity(bytes: &[u8]) -> Result<DeviceIdentity, StoreError> {
    const TREE: &str = "identity";
    let record: IdentityRecord =
        serde_json::from_slice(bytes).map_err(|e| json_problem(TREE, &e))?;
    let secret = |field: &str, raw: &str| -> Result<Secret32, StoreError> {
        let bytes = unhex(raw).ok_or_else(|| corrupt(TREE, format_args!("{field} is not hex")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| corrupt(TREE, format_args!("{field} is not 32 bytes")))?;
        Ok(Secret32::new(bytes))
    };
    let der = |field: &str, raw: &str| {
        unhex(raw).ok_or_else(|| corrupt(TREE, format_args!("{field} is not hex")))
    };
    Ok(DeviceIdentity {
        user: Username::parse(&record.user).map_err(|e| corrupt(TREE, e))?,
        ed25519: secret("ed25519", &record.ed25519)?,
        x25519: secret("x25519", &record.x25519)?,
        certificate_der: der("certificate_der", &record.certificate_der)?,
        ca_der: der("ca_der", &record.ca_der)?,
        ca_fingerprint: CaFingerprint::parse(&record.ca_fingerprint)
            .map_err(|e| corrupt(TREE, e))?,
        server: record.server,
        rendezvous_addrs: record.rendezvous_addrs,
    })
}

/// `Contact` as JSON; keys as lower-case hex.
#[derive(Serialize, Deserialize)]
struct ContactRecord {
    user: String,
    keys: KeysRecord,
    pending: Option<KeysRecord>,
    pinned_at: i64,
}

#[derive(Serialize, Deserialize)]
struct KeysRecord {
    ed25519: String,
    x25519: Option<String>,
}

impl From<&PeerKeys> for KeysRecord {
    fn from(keys: &PeerKeys) -> Self {
        Self {
            ed25519: hex(&keys.ed25519),
            x25519: keys.x25519.as_ref().map(|k| hex(k)),
        }
    }
}

pub(crate) fn encode_contact(contact: &Contact) -> Result<Vec<u8>, StoreError> {
    let record = ContactRecord {
        user: contact.user.to_string(),
        keys: KeysRecord::from(&contact.keys),
        pending: contact.pending.as_ref().map(KeysRecord::from),
        pinned_at: contact.pinned_at.0,
    };
    serde_json::to_vec(&record)
        .map_err(|_| StoreError::Unavailable("could not encode a contact".into()))
}

pub(crate) fn decode_contact(bytes: &[u8]) -> Result<Contact, StoreError> {
    const TREE: &str = "contacts";
    let record: ContactRecord =
        serde_json::from_slice(bytes).map_err(|e| json_problem(TREE, &e))?;
    let key = |raw: &str| -> Result<[u8; 32], StoreError> {
        unhex(raw)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| corrupt(TREE, "a key is not 32 hex bytes"))
    };
    let keys = |record: &KeysRecord| -> Result<PeerKeys, StoreError> {
        Ok(PeerKeys {
            ed25519: key(&record.ed25519)?,
            x25519: record.x25519.as_deref().map(key).transpose()?,
        })
    };
    Ok(Contact {
        user: Username::parse(&record.user).map_err(|e| corrupt(TREE, e))?,
        keys: keys(&record.keys)?,
        pending: record.pending.as_ref().map(keys).transpose()?,
        pinned_at: Timestamp(record.pinned_at),
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn unhex(raw: &str) -> Option<Vec<u8>> {
    // `from_str_radix` alone would take a sign ("+f"), so check the digits first.
    if !raw.len().is_multiple_of(2) || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(raw.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_bytes_when_hexed_and_read_back_then_they_round_trip_and_junk_is_refused() {
        let bytes = [0x00, 0x7f, 0xa5, 0xff];
        assert_eq!(unhex(&hex(&bytes)), Some(bytes.to_vec()));
        assert_eq!(unhex(""), Some(vec![]));
        for bad in ["0", "zz", "+1", "é0"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
    }

    #[test]
    fn given_a_message_key_when_split_then_it_gives_back_its_parts_and_bad_keys_are_corrupt() {
        let bob = Username::parse("bob").expect("valid literal");
        let key = message_key(&bob, 0x0102_0304_0506_0708);
        assert_eq!(
            split_message_key(&key).ok(),
            Some((&b"bob"[..], 0x0102_0304_0506_0708))
        );
        for bad in [&b"bob"[..], b"bob\0", b"bob\x00123456789"] {
            assert!(split_message_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn given_malformed_json_when_decoding_then_the_error_never_quotes_the_record() {
        let bad = br#"{"id":"00","from":"bob","to":"eve","text":"x","sent_at":"secret words"}"#;
        let Err(StoreError::Unavailable(why)) = decode_message(bad) else {
            panic!("a malformed record must be refused");
        };
        assert!(
            why.contains("corrupt record") && !why.contains("secret"),
            "{why}"
        );
    }
}
