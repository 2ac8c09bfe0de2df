//! Wire formats of the request-response protocols between a peer and its rendezvous (JSON, one
//! request and one response per stream), and the metadata bounds every protocol shares; the
//! message protocol between peers is in [`crate::message`]. Converted to and from domain types
//! here, at the edge.
//!
//! No message carries its sender: the receiver takes the sender from the connection's verified
//! certificate. Unknown fields are refused, so a forged `from` is a malformed request rather
//! than something silently ignored. `meta` carries protocol metadata (the W3C trace context
//! comes here) and is bounded.

use std::collections::BTreeMap;

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The directory protocol between a peer and the rendezvous (version 2: a look-up answers
/// every device of the user).
pub const DIRECTORY_PROTOCOL: StreamProtocol = StreamProtocol::new("/parley/directory/2");
/// At most this many metadata entries, each key and value at most 256 bytes.
pub const MAX_META_ENTRIES: usize = 8;
/// At most this many addresses are published per peer.
pub const MAX_PUBLISHED_ADDRS: usize = 16;
/// A look-up answers at most this many devices of the user, the newest publications first.
pub const MAX_LOOKUP_DEVICES: usize = 8;
/// A message refusal's reason is cut to this many bytes before it is sent.
pub const MAX_REASON_BYTES: usize = 1024;
/// The largest `/parley/directory/2` request read, in bytes: a publication of
/// [`MAX_PUBLISHED_ADDRS`] addresses of 256 characters at worst JSON escaping, plus the
/// metadata.
pub const MAX_DIRECTORY_REQUEST_BYTES: u64 = 64 * 1024;
/// The largest `/parley/directory/2` response read, in bytes: [`MAX_LOOKUP_DEVICES`] records
/// of [`MAX_PUBLISHED_ADDRS`] addresses, each at most 256 characters plus `/p2p/<id>` (320 in
/// all), at worst JSON escaping (6 bytes a character): 8 × 16 × 320 × 6 = 240 KiB, with room
/// for the peer ids and the framing.
pub const MAX_DIRECTORY_RESPONSE_BYTES: u64 = 256 * 1024;

/// Protocol metadata (trace context), bounded by [`MAX_META_ENTRIES`].
pub type Meta = BTreeMap<String, String>;

/// A request to the directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DirectoryRequest {
    /// "I am online at these addresses." The username is the certificate's, never a field.
    Publish {
        /// Multiaddrs, without `/p2p/`.
        addrs: Vec<String>,
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
    /// "Where is this user?"
    Lookup {
        /// The username asked for.
        username: String,
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
}

/// Where one device of a user is online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRecord {
    /// The device's peer id (its certificate's Ed25519 key).
    pub peer_id: String,
    /// Multiaddrs, each ending in `/p2p/<peer_id>`.
    pub addrs: Vec<String>,
}

/// The directory's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DirectoryResponse {
    /// Publication recorded.
    Published,
    /// The answer to a look-up: every device of the user online now, the newest publication
    /// first, at most [`MAX_LOOKUP_DEVICES`]; empty alike for an unknown and an offline user.
    Lookup {
        /// Where each device is.
        devices: Vec<PeerRecord>,
    },
    /// Too many look-ups: retry later.
    RateLimited {
        /// Milliseconds to wait.
        retry_after_ms: u64,
    },
    /// Refused, with one sentence.
    Refused {
        /// Why.
        reason: String,
    },
}

/// The mailbox protocol between a peer and the rendezvous: deposit, fetch, acknowledge, the
/// key look-up of someone never met, and (from the rendezvous to a connected peer) "mail is
/// waiting".
pub const MAILBOX_PROTOCOL: StreamProtocol = StreamProtocol::new("/parley/mailbox/1");
/// The largest wrapped envelope a deposit carries, in bytes: the envelope's own cap and the
/// wrapping.
pub const MAX_WRAPPED_BYTES: usize = 25 * 1024;
/// At most this many attachment files in one deposit (the envelope's own limit).
pub const MAX_DEPOSIT_FILES: usize = 8;
/// At most this many entries in one fetched batch.
pub const MAX_BATCH_ENTRIES: usize = 64;
/// Beyond its first entry, a batch stops at this many bytes.
pub const MAX_BATCH_BYTES: u64 = 4 * 1024 * 1024;
/// At most this many ids in one acknowledgement.
pub const MAX_ACK_IDS: usize = MAX_BATCH_ENTRIES;
/// The largest `/parley/mailbox/1` response or request read, for `largest` attachment bytes
/// held: one entry of the largest size (base64 grows by a third), with room for the framing.
#[must_use]
pub fn max_mailbox_message_bytes(largest: u64) -> u64 {
    let payload = largest
        .saturating_mul(2)
        .saturating_add(u64::try_from(MAX_WRAPPED_BYTES).unwrap_or(u64::MAX))
        .max(MAX_BATCH_BYTES);
    payload.saturating_mul(4) / 3 + 64 * 1024
}

/// A request on `/parley/mailbox/1`. The depositor and the fetcher are the connection's
/// certificate, never a field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MailboxRequest {
    /// "Hold this for `to`."
    Deposit {
        /// The recipient's username.
        to: String,
        /// The wrapped envelope, standard base64.
        sealed: String,
        /// The encrypted attachment files, standard base64, in the header's order.
        #[serde(default)]
        files: Vec<String>,
        /// When the message disappears, in milliseconds since the Unix epoch.
        #[serde(default)]
        expires_at_ms: Option<i64>,
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
    /// "What is held for me?" (the oldest batch).
    Fetch {
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
    /// "These are stored on my device; delete them."
    Ack {
        /// Entry ids, 32 hex digits each.
        ids: Vec<String>,
    },
    /// "Which keys did the CA certify for this name?"
    Keys {
        /// The username asked for.
        username: String,
    },
    /// From the rendezvous to a connected peer: mail is waiting.
    Waiting,
}

/// One held entry on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldItem {
    /// Its id, 32 hex digits.
    pub id: String,
    /// The wrapped envelope, standard base64.
    pub sealed: String,
    /// The attachment files, standard base64.
    pub files: Vec<String>,
}

/// The answer on `/parley/mailbox/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MailboxResponse {
    /// Held durably.
    Held,
    /// The oldest entries, and whether more wait.
    Mail {
        /// The entries.
        items: Vec<HeldItem>,
        /// More wait behind them.
        more: bool,
    },
    /// Deleted (ids that were not held are ignored).
    Acknowledged,
    /// The certificate issued for the name asked for, or `null` when nobody by that name is
    /// enrolled.
    Certificate {
        /// DER, standard base64.
        der: Option<String>,
    },
    /// Noted (the answer to [`MailboxRequest::Waiting`]).
    Noted,
    /// Refused, with a stable code and one sentence.
    Refused {
        /// [`parley_domain::mailbox::Refusal::code`], or `rate_limited`, `malformed`.
        code: String,
        /// One sentence.
        reason: String,
        /// Whether the same request can never succeed.
        #[serde(default)]
        permanent: bool,
    },
}

/// The renewal protocol between a peer and the rendezvous: a new certificate for the
/// connection's own user and keys.
pub const RENEW_PROTOCOL: StreamProtocol = StreamProtocol::new("/parley/renew/1");
/// The largest `/parley/renew/1` request read, in bytes (metadata only).
pub const MAX_RENEW_REQUEST_BYTES: u64 = 16 * 1024;
/// The largest `/parley/renew/1` response read, in bytes (one PEM certificate, or a refusal).
pub const MAX_RENEW_RESPONSE_BYTES: u64 = 16 * 1024;

/// "Issue me a new certificate." It names neither user nor key: both are the connection's
/// verified certificate's, proven in the TLS handshake.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// Protocol metadata.
    #[serde(default)]
    pub meta: Meta,
}

/// The answer on `/parley/renew/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RenewResponse {
    /// The new certificate, for the same user and keys.
    Renewed {
        /// PEM.
        certificate_pem: String,
    },
    /// Too soon after the last renewal: retry later.
    RateLimited {
        /// Milliseconds to wait.
        retry_after_ms: u64,
    },
    /// Refused, with one sentence (the key is no longer bound to the user, renewal is off).
    Refused {
        /// Why.
        reason: String,
    },
}

/// True when `meta` stays within the documented bounds.
#[must_use]
pub fn meta_within_bounds(meta: &Meta) -> bool {
    meta.len() <= MAX_META_ENTRIES && meta.iter().all(|(k, v)| k.len() <= 256 && v.len() <= 256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_cannot_name_a_user() {
        let forged = r#"{"kind":"publish","addrs":[],"username":"bob"}"#;
        assert!(serde_json::from_str::<DirectoryRequest>(forged).is_err());
    }

    #[test]
    fn a_renewal_cannot_name_a_user_or_a_key() {
        for forged in [r#"{"username":"bob"}"#, r#"{"ed25519":"AA=="}"#] {
            assert!(
                serde_json::from_str::<RenewRequest>(forged).is_err(),
                "{forged}"
            );
        }
        assert!(serde_json::from_str::<RenewRequest>("{}").is_ok());
    }

    #[test]
    fn unknown_and_offline_answers_have_one_shape() {
        let none = serde_json::to_string(&DirectoryResponse::Lookup {
            devices: Vec::new(),
        })
        .expect("json");
        assert_eq!(none, r#"{"kind":"lookup","devices":[]}"#);
    }

    #[test]
    fn a_lookup_answer_lists_devices_and_refuses_the_single_peer_of_version_1() {
        let two = r#"{"kind":"lookup","devices":[{"peer_id":"a","addrs":["/ip4/1.2.3.4/tcp/1"]},{"peer_id":"b","addrs":[]}]}"#;
        let Ok(DirectoryResponse::Lookup { devices }) = serde_json::from_str(two) else {
            panic!("a list of devices parses");
        };
        assert_eq!(
            devices
                .iter()
                .map(|d| d.peer_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        let old = r#"{"kind":"lookup","peer":{"peer_id":"a","addrs":[]}}"#;
        assert!(serde_json::from_str::<DirectoryResponse>(old).is_err());
    }
}
