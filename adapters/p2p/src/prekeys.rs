//! The wire format of `/parley/prekeys/1`, between a peer and its rendezvous (JSON, one request
//! and one response per stream), and its conversion to and from the domain's prekey types.
//!
//! The publishing device is the connection's certificate, never a field: unknown fields are
//! refused, so a request naming a device or a user is malformed. Keys and signatures are
//! standard base64 of their fixed-length bytes; a value of any other length does not convert.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use libp2p::StreamProtocol;
use parley_domain::{
    agreement::{KemPrekey, KemPublicKey, OneTimePrekey, PrekeyBundle, SignedPrekey},
    prekeys::MAX_ONE_TIME_HELD,
    ratchet::PublicKey,
};
use serde::{Deserialize, Serialize};

use crate::protocol::Meta;

/// The prekey protocol between a peer and the rendezvous.
pub const PREKEYS_PROTOCOL: StreamProtocol = StreamProtocol::new("/parley/prekeys/1");
/// The largest `/parley/prekeys/1` request read, in bytes: a publication of at most
/// [`MAX_ONE_TIME_HELD`] one-time prekeys (about 80 bytes each in JSON), the ML-KEM-768 key
/// (1 580 bytes of base64), the signatures and the metadata at worst JSON escaping. A longer
/// request is cut there, fails to parse, and its stream is dropped unanswered.
pub const MAX_PREKEYS_REQUEST_BYTES: u64 = 64 * 1024;
/// The largest `/parley/prekeys/1` response read, in bytes: one bundle (about 2 KiB) or a
/// refusal.
pub const MAX_PREKEYS_RESPONSE_BYTES: u64 = 16 * 1024;

// A publication of every one-time prekey a device may hold (about 100 bytes each at most), the
// KEM prekey and the metadata at worst escaping still fits, so that a batch over the limit is
// refused with its code rather than cut.
const _: () = assert!(
    (MAX_ONE_TIME_HELD * 100 + 4 * 1024 + crate::protocol::MAX_META_ENTRIES * 2 * 256 * 6) as u64
        <= MAX_PREKEYS_REQUEST_BYTES
);

/// A signed prekey (X25519 or ML-KEM-768) on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireSignedKey {
    /// Which of the device's prekeys.
    pub id: u32,
    /// The public key, standard base64 (32 bytes for X25519, 1184 for ML-KEM-768).
    pub key: String,
    /// The device's Ed25519 signature, standard base64 of 64 bytes.
    pub signature: String,
}

/// A one-time prekey on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireOneTimeKey {
    /// Which of the device's one-time prekeys.
    pub id: u32,
    /// The X25519 public key, standard base64 of 32 bytes.
    pub key: String,
}

/// A prekey bundle on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireBundle {
    /// The device's X25519 identity key (its certificate's), standard base64.
    pub identity: String,
    /// The signed X25519 prekey.
    pub signed_prekey: WireSignedKey,
    /// The signed ML-KEM-768 prekey.
    pub kem_prekey: WireSignedKey,
    /// One one-time prekey, handed out once; `null` when none is left.
    pub one_time_prekey: Option<WireOneTimeKey>,
}

/// A request on `/parley/prekeys/1`. The device it is about (publishing, counting) is the
/// connection's certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PrekeysRequest {
    /// "Hold these for my device": the signed prekeys replace the ones held, the one-time
    /// prekeys are added.
    Publish {
        /// The signed X25519 prekey.
        signed_prekey: WireSignedKey,
        /// The signed ML-KEM-768 prekey.
        kem_prekey: WireSignedKey,
        /// New one-time prekeys.
        #[serde(default)]
        one_time: Vec<WireOneTimeKey>,
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
    /// "How many one-time prekeys do you hold for my device?" (A struct variant, so that an
    /// unknown field is refused here too.)
    Remaining {
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
    /// "The bundle of this device of this user's."
    Fetch {
        /// The username asked for.
        username: String,
        /// The device asked for: its Ed25519 key (the one the fetcher pinned, or the CA
        /// certified), standard base64 of 32 bytes.
        device: String,
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
}

/// The answer on `/parley/prekeys/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PrekeysResponse {
    /// Held durably.
    Published {
        /// One-time prekeys held for the device now.
        one_time: u32,
    },
    /// The count asked for.
    Remaining {
        /// One-time prekeys held for the device; `null` when it has published none.
        one_time: Option<u32>,
    },
    /// The bundle asked for; `null` alike when nobody by that name is enrolled and when the
    /// user's current device has published no prekeys.
    Bundle {
        /// The bundle.
        bundle: Option<WireBundle>,
    },
    /// Refused, with a stable code and one sentence.
    Refused {
        /// [`parley_domain::prekeys::PrekeyRefusal::code`].
        code: String,
        /// One sentence.
        reason: String,
    },
}

/// A device's Ed25519 key as a fetch names it (standard base64 of 32 bytes); `None` for
/// anything else.
#[must_use]
pub fn device_key(text: &str) -> Option<[u8; 32]> {
    bytes(text)
}

/// The text a fetch names a device's Ed25519 key with.
#[must_use]
pub fn device_text(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

fn bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    // Base64 of N bytes is at most this long: anything longer is refused before decoding.
    if text.len() > N.div_ceil(3) * 4 {
        return None;
    }
    STANDARD.decode(text).ok()?.try_into().ok()
}

impl WireSignedKey {
    /// The signed X25519 prekey on the wire.
    #[must_use]
    pub fn from_signed(prekey: &SignedPrekey) -> Self {
        Self {
            id: prekey.id,
            key: STANDARD.encode(prekey.key.0),
            signature: STANDARD.encode(prekey.signature),
        }
    }

    /// The signed ML-KEM-768 prekey on the wire.
    #[must_use]
    pub fn from_kem(prekey: &KemPrekey) -> Self {
        Self {
            id: prekey.id,
            key: STANDARD.encode(prekey.key.as_bytes()),
            signature: STANDARD.encode(prekey.signature),
        }
    }

    /// As a signed X25519 prekey, when the key and signature have their lengths.
    #[must_use]
    pub fn to_signed(&self) -> Option<SignedPrekey> {
        Some(SignedPrekey {
            id: self.id,
            key: PublicKey(bytes::<32>(&self.key)?),
            signature: bytes::<64>(&self.signature)?,
        })
    }

    /// As a signed ML-KEM-768 prekey, when the key and signature have their lengths.
    #[must_use]
    pub fn to_kem(&self) -> Option<KemPrekey> {
        let key = bytes::<{ parley_domain::agreement::KEM_PUBLIC_LEN }>(&self.key)?;
        Some(KemPrekey {
            id: self.id,
            key: KemPublicKey::parse(&key).ok()?,
            signature: bytes::<64>(&self.signature)?,
        })
    }
}

impl WireOneTimeKey {
    /// The one-time prekey on the wire.
    #[must_use]
    pub fn from_prekey(prekey: &OneTimePrekey) -> Self {
        Self {
            id: prekey.id,
            key: STANDARD.encode(prekey.key.0),
        }
    }

    /// As a one-time prekey, when the key has its length.
    #[must_use]
    pub fn to_prekey(&self) -> Option<OneTimePrekey> {
        Some(OneTimePrekey {
            id: self.id,
            key: PublicKey(bytes::<32>(&self.key)?),
        })
    }
}

impl WireBundle {
    /// The bundle on the wire (a bundle without a KEM prekey has none to send).
    #[must_use]
    pub fn from_bundle(bundle: &PrekeyBundle) -> Option<Self> {
        Some(Self {
            identity: STANDARD.encode(bundle.identity.0),
            signed_prekey: WireSignedKey::from_signed(&bundle.signed_prekey),
            kem_prekey: WireSignedKey::from_kem(bundle.kem_prekey.as_ref()?),
            one_time_prekey: bundle
                .one_time_prekey
                .as_ref()
                .map(WireOneTimeKey::from_prekey),
        })
    }

    /// As a bundle, when every key and signature has its length.
    #[must_use]
    pub fn to_bundle(&self) -> Option<PrekeyBundle> {
        Some(PrekeyBundle {
            identity: PublicKey(bytes::<32>(&self.identity)?),
            signed_prekey: self.signed_prekey.to_signed()?,
            one_time_prekey: match &self.one_time_prekey {
                Some(k) => Some(k.to_prekey()?),
                None => None,
            },
            kem_prekey: Some(self.kem_prekey.to_kem()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(one_time: bool) -> PrekeyBundle {
        PrekeyBundle {
            identity: PublicKey([1; 32]),
            signed_prekey: SignedPrekey {
                id: 2,
                key: PublicKey([2; 32]),
                signature: [3; 64],
            },
            one_time_prekey: one_time.then_some(OneTimePrekey {
                id: 4,
                key: PublicKey([4; 32]),
            }),
            kem_prekey: Some(KemPrekey {
                id: 5,
                key: KemPublicKey::parse(&[5; parley_domain::agreement::KEM_PUBLIC_LEN])
                    .expect("a KEM key's length"),
                signature: [6; 64],
            }),
        }
    }

    #[test]
    fn a_bundle_comes_back_as_it_went() {
        for one_time in [true, false] {
            let sent = bundle(one_time);
            let wire = WireBundle::from_bundle(&sent).expect("a KEM prekey");
            let json = serde_json::to_string(&PrekeysResponse::Bundle { bundle: Some(wire) })
                .expect("json");
            let Ok(PrekeysResponse::Bundle { bundle: Some(got) }) = serde_json::from_str(&json)
            else {
                panic!("a bundle parses: {json}");
            };
            assert_eq!(got.to_bundle(), Some(sent));
        }
    }

    #[test]
    fn a_key_or_signature_of_another_length_does_not_convert() {
        let mut wire = WireBundle::from_bundle(&bundle(true)).expect("a KEM prekey");
        wire.signed_prekey.key = STANDARD.encode([0; 31]);
        assert_eq!(wire.to_bundle(), None);
        let mut wire = WireBundle::from_bundle(&bundle(true)).expect("a KEM prekey");
        wire.kem_prekey.key = STANDARD.encode([0; 1183]);
        assert_eq!(wire.to_bundle(), None);
        let mut wire = WireBundle::from_bundle(&bundle(true)).expect("a KEM prekey");
        wire.signed_prekey.signature = "not base64!".into();
        assert_eq!(wire.to_bundle(), None);
    }

    #[test]
    fn a_request_cannot_name_a_device_or_a_user() {
        for forged in [
            r#"{"kind":"remaining","device":"AA=="}"#,
            r#"{"kind":"publish","signed_prekey":{"id":1,"key":"","signature":""},"kem_prekey":{"id":1,"key":"","signature":""},"username":"bob"}"#,
            r#"{"kind":"fetch","username":"bob","as":"carol"}"#,
            r#"{"kind":"publish","signed_prekey":{"id":1,"key":"","signature":"","extra":1},"kem_prekey":{"id":1,"key":"","signature":""}}"#,
        ] {
            assert!(
                serde_json::from_str::<PrekeysRequest>(forged).is_err(),
                "{forged}"
            );
        }
        assert!(serde_json::from_str::<PrekeysRequest>(r#"{"kind":"remaining"}"#).is_ok());
    }
}
