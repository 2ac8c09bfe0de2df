//! The bytes on disk: tree keys and the serde mirrors of the domain types, converted at the
//! edge. Decoding parses every field back through the domain's own `parse`, so a record that
//! breaks a domain rule is reported as corrupt, never trusted and never a panic.
//!
//! Error sentences never quote a record's content (serde_json's messages can echo a value, and
//! a value may be message text or key material): they name the tree, the place and the rule.

use parley_domain::envelope::check_attachment_name;
use parley_domain::{
    Attachment, AttachmentKey, AttachmentRef, CaFingerprint, ChainFault, ChainHead, Contact,
    Delivery, DeviceIdentity, Digest, Direction, Link, MessageId, MessageText, PeerKeys, Secret32,
    StoredMessage, Timestamp, Ttl, Username, Verification,
};
use parley_usecases::ports::StoreError;
use serde::{Deserialize, Serialize};

use crate::crypto::NAME_LEN;

/// The single key of the `identity` tree.
pub(crate) const IDENTITY_KEY: &[u8] = b"device";

/// A username's keyed hash, as it stands in sled keys.
pub(crate) type Name = [u8; NAME_LEN];

/// Bytes of a `messages` key: contact hash and local sequence.
pub(crate) const MESSAGE_KEY_LEN: usize = NAME_LEN + 8;

/// Bytes of an envelope digest.
const DIGEST_LEN: usize = 32;

/// `contact ‖ seq (big-endian)`: a key of `messages`.
pub(crate) fn message_key(contact: &Name, seq: u64) -> [u8; MESSAGE_KEY_LEN] {
    let mut key = [0u8; MESSAGE_KEY_LEN];
    key[..NAME_LEN].copy_from_slice(contact);
    key[NAME_LEN..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Splits a `messages` key into its contact hash and sequence.
pub(crate) fn split_message_key(key: &[u8]) -> Result<(Name, u64), StoreError> {
    let key: &[u8; MESSAGE_KEY_LEN] = key.try_into().map_err(|_| {
        corrupt(
            "messages",
            "a key is not a 16-byte name and an 8-byte sequence",
        )
    })?;
    let mut name = [0u8; NAME_LEN];
    name.copy_from_slice(&key[..NAME_LEN]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&key[NAME_LEN..]);
    Ok((name, u64::from_be_bytes(seq)))
}

/// `sender ‖ id`: a key of `seen`.
pub(crate) fn seen_key(sender: &Name, id: &MessageId) -> [u8; NAME_LEN + 16] {
    let mut key = [0u8; NAME_LEN + 16];
    key[..NAME_LEN].copy_from_slice(sender);
    key[NAME_LEN..].copy_from_slice(id.as_bytes());
    key
}

/// `seq (big-endian)`: a key of `outbox`, the sequence of its message's key.
pub(crate) fn outbox_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// `sender ‖ chain position (big-endian)`: a key of `links`.
pub(crate) fn link_key(sender: &Name, seq: u64) -> [u8; NAME_LEN + 8] {
    message_key(sender, seq)
}

/// A time as 8 bytes that sort like the time (big-endian, sign bit flipped).
pub(crate) fn time_key(at: Timestamp) -> [u8; 8] {
    (at.0.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

/// `expires_at ‖ messages key`: a key of `expiry`.
pub(crate) fn expiry_key(at: Timestamp, message: &[u8]) -> Vec<u8> {
    let mut key = time_key(at).to_vec();
    key.extend_from_slice(message);
    key
}

/// Splits an `expiry` key into its time bytes and the `messages` key.
pub(crate) fn split_expiry_key(key: &[u8]) -> Result<([u8; 8], &[u8]), StoreError> {
    let bad = || corrupt("expiry", "a key is not a time and a message key");
    if key.len() != 8 + MESSAGE_KEY_LEN {
        return Err(bad());
    }
    let (at, message) = key.split_at(8);
    Ok((at.try_into().map_err(|_| bad())?, message))
}

/// The name prefix of a message's files under `attachments/`: the hex of its `seen` key.
pub(crate) fn record_id(seen_key: &[u8]) -> String {
    hex::encode(seen_key)
}

/// `seen` value: the envelope's digest, then the `messages` key of the copy kept.
pub(crate) fn encode_seen(digest: &Digest, message_key: &[u8]) -> Vec<u8> {
    let mut value = digest.0.to_vec();
    value.extend_from_slice(message_key);
    value
}

/// The digest a `seen` value remembers.
pub(crate) fn decode_seen(value: &[u8]) -> Result<Digest, StoreError> {
    value
        .get(..DIGEST_LEN)
        .and_then(|d| d.try_into().ok())
        .map(Digest)
        .ok_or_else(|| corrupt("seen", "a value is shorter than a digest"))
}

/// `links` value: `digest ‖ prev` (the position is in the key).
pub(crate) fn encode_link(link: &Link) -> Vec<u8> {
    let mut value = link.digest.0.to_vec();
    value.extend_from_slice(&link.prev.0);
    value
}

pub(crate) fn decode_link(seq: u64, value: &[u8]) -> Result<Link, StoreError> {
    let bad = || corrupt("links", "a value is not two digests");
    if value.len() != 2 * DIGEST_LEN {
        return Err(bad());
    }
    let (digest, prev) = value.split_at(DIGEST_LEN);
    Ok(Link {
        seq,
        digest: Digest(digest.try_into().map_err(|_| bad())?),
        prev: Digest(prev.try_into().map_err(|_| bad())?),
    })
}

/// `heads` value: `seq (big-endian) ‖ digest`.
pub(crate) fn encode_head(head: &ChainHead) -> Vec<u8> {
    let mut value = head.seq.to_be_bytes().to_vec();
    value.extend_from_slice(&head.digest.0);
    value
}

pub(crate) fn decode_head(value: &[u8]) -> Result<ChainHead, StoreError> {
    let bad = || corrupt("heads", "a value is not a sequence and a digest");
    if value.len() != 8 + DIGEST_LEN {
        return Err(bad());
    }
    let (seq, digest) = value.split_at(8);
    Ok(ChainHead {
        seq: u64::from_be_bytes(seq.try_into().map_err(|_| bad())?),
        digest: Digest(digest.try_into().map_err(|_| bad())?),
    })
}

/// `faults` value: a count (u64, big-endian).
pub(crate) fn decode_count(value: &[u8]) -> Result<u64, StoreError> {
    value
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt("faults", "a value is not an 8-byte count"))
}

/// `outbox` value: `messages key ‖ message id ‖ envelope sealed under the message's key`.
pub(crate) fn encode_outbox(message_key: &[u8], id: &MessageId, envelope: &[u8]) -> Vec<u8> {
    let mut value = message_key.to_vec();
    value.extend_from_slice(id.as_bytes());
    value.extend_from_slice(envelope);
    value
}

/// An `outbox` value's parts: `messages` key, message id, sealed envelope.
pub(crate) fn decode_outbox(value: &[u8]) -> Result<(&[u8], MessageId, &[u8]), StoreError> {
    let bad = || corrupt("outbox", "a value is shorter than a message key and an id");
    if value.len() < MESSAGE_KEY_LEN + 16 {
        return Err(bad());
    }
    let (message_key, rest) = value.split_at(MESSAGE_KEY_LEN);
    let (id, envelope) = rest.split_at(16);
    let id: [u8; 16] = id.try_into().map_err(|_| bad())?;
    Ok((message_key, MessageId::from_bytes(id), envelope))
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
    verification: VerificationRecord,
    /// Milliseconds.
    ttl: Option<u64>,
    /// Milliseconds since the Unix epoch.
    expires_at: Option<i64>,
    attachments: Vec<AttachmentRecord>,
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
    Queued(i64),
    Delivered(i64),
    Received(i64),
    Rejected(i64),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
enum VerificationRecord {
    Verified,
    Fork { seq: u64 },
    Broken { seq: u64 },
}

/// An attachment: what the header names, and its key; digests and key as hex.
#[derive(Serialize, Deserialize)]
struct AttachmentRecord {
    name: String,
    size: u64,
    sha256: String,
    key: String,
    plain_sha256: String,
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
            Delivery::Queued(at) => DeliveryRecord::Queued(at.0),
            Delivery::Delivered(at) => DeliveryRecord::Delivered(at.0),
            Delivery::Received(at) => DeliveryRecord::Received(at.0),
            Delivery::Rejected(at) => DeliveryRecord::Rejected(at.0),
        },
        verification: match message.verification {
            Verification::Verified => VerificationRecord::Verified,
            Verification::Failed(ChainFault::Fork { seq }) => VerificationRecord::Fork { seq },
            Verification::Failed(ChainFault::Broken { seq }) => VerificationRecord::Broken { seq },
        },
        ttl: message.ttl.map(Ttl::millis),
        expires_at: message.expires_at.map(|at| at.0),
        attachments: message
            .attachments
            .iter()
            .map(|a| AttachmentRecord {
                name: a.meta.name.clone(),
                size: a.meta.size,
                sha256: hex::encode(a.meta.sha256.0),
                key: hex::encode(a.key.key.expose()),
                plain_sha256: hex::encode(a.key.plain_sha256.0),
            })
            .collect(),
    };
    serde_json::to_vec(&record)
        .map_err(|_| StoreError::Unavailable("could not encode a message".into()))
}

pub(crate) fn decode_message(bytes: &[u8]) -> Result<StoredMessage, StoreError> {
    const TREE: &str = "messages";
    let record: MessageRecord =
        serde_json::from_slice(bytes).map_err(|e| json_problem(TREE, &e))?;
    let ttl = record
        .ttl
        .map(|ms| {
            let ttl = Ttl::from_millis(ms);
            if ttl.millis() == ms {
                Ok(ttl)
            } else {
                Err(corrupt(TREE, "a time to live is out of range"))
            }
        })
        .transpose()?;
    let digest = |field: &str, raw: &str| -> Result<Digest, StoreError> {
        Digest::parse(raw).ok_or_else(|| corrupt(TREE, format_args!("{field} is not a digest")))
    };
    let attachments = record
        .attachments
        .iter()
        .map(|a| {
            check_attachment_name(&a.name).map_err(|e| corrupt(TREE, e))?;
            let key: [u8; 32] = hex::decode(&a.key)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| corrupt(TREE, "an attachment key is not 32 hex bytes"))?;
            Ok(Attachment {
                meta: AttachmentRef {
                    name: a.name.clone(),
                    size: a.size,
                    sha256: digest("an attachment's sha256", &a.sha256)?,
                },
                key: AttachmentKey {
                    key: Secret32::new(key),
                    plain_sha256: digest("an attachment's plain_sha256", &a.plain_sha256)?,
                },
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
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
            DeliveryRecord::Queued(at) => Delivery::Queued(Timestamp(at)),
            DeliveryRecord::Delivered(at) => Delivery::Delivered(Timestamp(at)),
            DeliveryRecord::Received(at) => Delivery::Received(Timestamp(at)),
            DeliveryRecord::Rejected(at) => Delivery::Rejected(Timestamp(at)),
        },
        verification: match record.verification {
            VerificationRecord::Verified => Verification::Verified,
            VerificationRecord::Fork { seq } => Verification::Failed(ChainFault::Fork { seq }),
            VerificationRecord::Broken { seq } => Verification::Failed(ChainFault::Broken { seq }),
        },
        ttl,
        expires_at: record.expires_at.map(Timestamp),
        attachments,
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
        ed25519: hex::encode(identity.ed25519.expose()),
        x25519: hex::encode(identity.x25519.expose()),
        certificate_der: hex::encode(&identity.certificate_der),
        ca_der: hex::encode(&identity.ca_der),
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
        let bytes = hex::decode(raw)
            .ok()
            .ok_or_else(|| corrupt(TREE, format_args!("{field} is not hex")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| corrupt(TREE, format_args!("{field} is not 32 bytes")))?;
        Ok(Secret32::new(bytes))
    };
    let der = |field: &str, raw: &str| {
        hex::decode(raw)
            .ok()
            .ok_or_else(|| corrupt(TREE, format_args!("{field} is not hex")))
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
            ed25519: hex::encode(keys.ed25519),
            x25519: keys.x25519.as_ref().map(hex::encode),
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
        hex::decode(raw)
            .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_bytes_when_hexed_and_read_back_then_they_round_trip_and_junk_is_refused() {
        let bytes = [0x00, 0x7f, 0xa5, 0xff];
        assert_eq!(hex::decode(hex::encode(bytes)).ok(), Some(bytes.to_vec()));
        assert_eq!(hex::decode("").ok(), Some(vec![]));
        for bad in ["0", "zz", "+1", "é0"] {
            assert_eq!(hex::decode(bad).ok(), None, "{bad}");
        }
    }

    #[test]
    fn given_a_message_key_when_split_then_it_gives_back_its_parts_and_bad_keys_are_corrupt() {
        let key = message_key(&[7; NAME_LEN], 0x0102_0304_0506_0708);
        assert_eq!(
            split_message_key(&key).ok(),
            Some(([7; NAME_LEN], 0x0102_0304_0506_0708))
        );
        for bad in [&b"bob"[..], &key[1..], &[0; MESSAGE_KEY_LEN + 1]] {
            assert!(split_message_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn given_times_when_made_keys_then_the_keys_sort_like_the_times() {
        let times = [i64::MIN, -5, -1, 0, 1, 99, 1_700_000_000_000, i64::MAX];
        let keys: Vec<_> = times.iter().map(|&t| time_key(Timestamp(t))).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        let key = expiry_key(Timestamp(5), &message_key(&[1; NAME_LEN], 9));
        let (at, message) = split_expiry_key(&key).expect("splits");
        assert_eq!((at, message), (time_key(Timestamp(5)), &key[8..]));
        assert!(split_expiry_key(&key[1..]).is_err());
    }

    #[test]
    fn given_small_values_when_encoded_then_they_decode_back_and_short_ones_are_corrupt() {
        let link = Link {
            seq: 4,
            digest: Digest([1; 32]),
            prev: Digest([2; 32]),
        };
        assert_eq!(decode_link(4, &encode_link(&link)), Ok(link));
        assert!(decode_link(4, &[0; 63]).is_err());
        let head = ChainHead {
            seq: 9,
            digest: Digest([3; 32]),
        };
        assert_eq!(decode_head(&encode_head(&head)), Ok(head));
        assert!(decode_head(&[0; 39]).is_err());
        let mkey = message_key(&[5; NAME_LEN], 2);
        assert_eq!(
            decode_seen(&encode_seen(&Digest([6; 32]), &mkey)),
            Ok(Digest([6; 32]))
        );
        assert!(decode_seen(&[0; 31]).is_err());
        let id = MessageId::from_bytes([8; 16]);
        let value = encode_outbox(&mkey, &id, b"sealed");
        assert_eq!(
            decode_outbox(&value).ok(),
            Some((&mkey[..], id, &b"sealed"[..]))
        );
        assert!(decode_outbox(&value[..39]).is_err());
        assert_eq!(decode_count(&7u64.to_be_bytes()), Ok(7));
        assert!(decode_count(&[0; 7]).is_err());
    }

    fn full_message() -> StoredMessage {
        let user = |name| Username::parse(name).expect("valid literal");
        StoredMessage {
            id: MessageId::from_bytes([1; 16]),
            from: user("bob"),
            to: user("alice"),
            text: MessageText::parse("hello").expect("valid literal"),
            sent_at: Timestamp(10),
            direction: Direction::Incoming,
            delivery: Delivery::Received(Timestamp(11)),
            verification: Verification::Failed(ChainFault::Broken { seq: 3 }),
            ttl: Some(Ttl::from_millis(60_000)),
            expires_at: Some(Timestamp(60_010)),
            attachments: vec![Attachment {
                meta: AttachmentRef {
                    name: "photo.jpg".into(),
                    size: 1234,
                    sha256: Digest([2; 32]),
                },
                key: AttachmentKey {
                    key: Secret32::new([3; 32]),
                    plain_sha256: Digest([4; 32]),
                },
            }],
        }
    }

    #[test]
    fn given_a_message_with_every_field_when_encoded_then_it_decodes_back_the_same() {
        let message = full_message();
        let bytes = encode_message(&message).expect("encodes");
        assert_eq!(decode_message(&bytes), Ok(message));
        let fork = StoredMessage {
            verification: Verification::Failed(ChainFault::Fork { seq: 1 }),
            ttl: None,
            expires_at: None,
            attachments: vec![],
            ..full_message()
        };
        let bytes = encode_message(&fork).expect("encodes");
        assert_eq!(decode_message(&bytes), Ok(fork));
    }

    #[test]
    fn given_records_that_break_domain_rules_when_decoding_then_they_are_corrupt() {
        let good: serde_json::Value =
            serde_json::from_slice(&encode_message(&full_message()).expect("encodes"))
                .expect("json");
        let bent = |path: &[&str], value: serde_json::Value| {
            let mut record = good.clone();
            let mut at = &mut record;
            for step in path {
                at = match step.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*step],
                };
            }
            *at = value;
            serde_json::to_vec(&record).expect("json")
        };
        for (what, bytes) in [
            ("empty text", bent(&["text"], "".into())),
            ("bad sender", bent(&["from"], "Bob".into())),
            ("bad id", bent(&["id"], "xyz".into())),
            ("ttl out of range", bent(&["ttl"], 5.into())),
            (
                "attachment name",
                bent(&["attachments", "0", "name"], "../x".into()),
            ),
            (
                "attachment key",
                bent(&["attachments", "0", "key"], "00".into()),
            ),
            (
                "attachment digest",
                bent(&["attachments", "0", "sha256"], "zz".into()),
            ),
        ] {
            let Err(StoreError::Unavailable(why)) = decode_message(&bytes) else {
                panic!("{what}: must be refused");
            };
            assert!(why.contains("corrupt record"), "{what}: {why}");
        }
        assert!(decode_identity(br#"{"user":"Alice"}"#).is_err());
        assert!(decode_contact(br#"{"user":"bob","keys":{"ed25519":"00","x25519":null},"pending":null,"pinned_at":1}"#).is_err());
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
