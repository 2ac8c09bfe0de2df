//! The second factor's secrets on the rendezvous: made here, kept sealed, checked here.
//!
//! A secret is 20 random bytes (RFC 4226's 160 bits). It is stored only sealed with
//! AES-256-GCM under a key derived (HKDF-SHA256) from the CA's private key, with the username
//! as associated data: a copy of the registry (a backup, a stolen disk image of `registry/`
//! without `ca-key.pem`, later a database dump) holds no usable secret, and a sealed secret
//! moved to another name does not open. Instances that share the CA key (`--ca-key`) share
//! this key too. The rules (window, single use) are the domain's [`parley_domain::totp`]; this
//! module computes the HMAC-SHA1 they are given.
//!
//! Crypto: aws-lc-rs, already the TLS stack's provider, for HKDF, AES-GCM and HMAC-SHA1 (SHA-1
//! only as RFC 6238's HMAC, where its collision weakness does not apply).

use aws_lc_rs::{aead, hkdf, hmac};
use base64::Engine as _;
use parley_domain::{Username, totp};
use serde::{Deserialize, Serialize};

/// What the registry keeps for a name with the second factor on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpRecord {
    /// base64 of nonce (12 bytes) ‖ AES-256-GCM ciphertext and tag of the secret.
    pub sealed: String,
    /// The last step a code was accepted for: codes for it and earlier are refused.
    #[serde(default)]
    pub last_step: Option<u64>,
}

/// A fresh secret, shown once to the user.
pub struct NewSecret {
    /// To keep in the registry.
    pub record: TotpRecord,
    /// RFC 4648 base32 without padding, for the `otpauth://` URI.
    pub base32: String,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewSecret(..)")
    }
}

/// Why a sealed secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a stored second-factor secret does not open with this CA key")]
pub struct Unopenable;

/// Seals, opens and checks second-factor secrets.
pub struct Vault {
    key: aead::LessSafeKey,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

/// HKDF's `info` for the at-rest key: a key for this and nothing else.
const AT_REST_INFO: &[u8] = b"parley/totp-at-rest/v1";
const NONCE_BYTES: usize = 12;

struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl Vault {
    /// The vault keyed from `ca_key`, the CA private key's own bytes (its PKCS#8 DER).
    ///
    /// # Panics
    /// Never: HKDF-SHA256 to 32 bytes and an AES-256 key of 32 bytes cannot fail.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn new(ca_key: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"").extract(ca_key);
        let mut key = [0u8; 32];
        prk.expand(&[AT_REST_INFO], KeyLen)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes of HKDF-SHA256 output");
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, &key).expect("a 32-byte AES key");
        Self {
            key: aead::LessSafeKey::new(key),
        }
    }

    /// A fresh secret for `user`, sealed for the registry.
    ///
    /// # Panics
    /// When AES-GCM refuses a 20-byte message, which it never does.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn new_secret(&self, user: &Username) -> NewSecret {
        let mut secret = [0u8; totp::SECRET_BYTES];
        crate::ca::fill_random(&mut secret);
        let mut nonce = [0u8; NONCE_BYTES];
        crate::ca::fill_random(&mut nonce);
        let mut sealed = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(user.as_str().as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM seals 20 bytes");
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        NewSecret {
            record: TotpRecord {
                sealed: base64::engine::general_purpose::STANDARD.encode(stored),
                last_step: None,
            },
            base32: data_encoding::BASE32_NOPAD.encode(&secret),
        }
    }

    /// The secret in `record`, which must have been sealed for `user`.
    fn open(&self, user: &Username, record: &TotpRecord) -> Result<Vec<u8>, Unopenable> {
        let stored = base64::engine::general_purpose::STANDARD
            .decode(&record.sealed)
            .map_err(|_| Unopenable)?;
        if stored.len() < NONCE_BYTES {
            return Err(Unopenable);
        }
        let (nonce, sealed) = stored.split_at(NONCE_BYTES);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unopenable)?;
        let mut sealed = sealed.to_vec();
        let secret = self
            .key
            .open_in_place(
                nonce,
                aead::Aad::from(user.as_str().as_bytes()),
                &mut sealed,
            )
            .map_err(|_| Unopenable)?;
        Ok(secret.to_vec())
    }

    /// Checks `code` for `user` at `unix_seconds`: the step it was made for, to record as the
    /// record's new `last_step`.
    ///
    /// # Errors
    /// The domain's refusal, or [`Unopenable`] (as `Err(None)`) when the record does not open.
    pub fn check(
        &self,
        user: &Username,
        record: &TotpRecord,
        code: totp::TotpCode,
        unix_seconds: u64,
    ) -> Result<u64, Option<totp::Refused>> {
        let secret = self.open(user, record).map_err(|_| None)?;
        totp::accept(code, unix_seconds, record.last_step, |step| {
            mac(&secret, step)
        })
        .map_err(Some)
    }
}

/// HMAC-SHA1 of the big-endian step, as RFC 6238 asks.
fn mac(secret: &[u8], step: u64) -> [u8; 20] {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mut out = [0u8; 20];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238s_sha1_vectors_give_their_codes() {
        // RFC 6238, appendix B, SHA-1 rows, to 6 of their 8 digits.
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59u64, 287_082),
            (1_111_111_109, 81_804),
            (1_111_111_111, 50_471),
            (1_234_567_890, 5_924),
            (2_000_000_000, 279_037),
            (20_000_000_000, 353_130),
        ] {
            let got = totp::code_of(&mac(secret, totp::step_at(time))).value();
            assert_eq!(got, code, "at {time}");
        }
    }

    fn user(raw: &str) -> Username {
        Username::parse(raw).expect("valid")
    }

    fn code_now(base32: &str, unix_seconds: u64) -> totp::TotpCode {
        let secret = data_encoding::BASE32_NOPAD
            .decode(base32.as_bytes())
            .expect("base32");
        totp::code_of(&mac(&secret, totp::step_at(unix_seconds)))
    }

    #[test]
    fn a_sealed_secret_opens_for_its_name_and_key_only() {
        let vault = Vault::new(&[7; 48]);
        let bob = user("bob");
        let new = vault.new_secret(&bob);
        assert_eq!(new.base32.len(), 32, "160 bits in base32");
        assert!(!new.record.sealed.contains(&new.base32));
        let at = 1_800_000_000;
        let code = code_now(&new.base32, at);
        assert_eq!(
            vault.check(&bob, &new.record, code, at),
            Ok(totp::step_at(at))
        );
        assert_eq!(vault.check(&user("eve"), &new.record, code, at), Err(None));
        let other = Vault::new(&[8; 48]);
        assert_eq!(other.check(&bob, &new.record, code, at), Err(None));
        let used = TotpRecord {
            last_step: Some(totp::step_at(at)),
            ..new.record.clone()
        };
        assert_eq!(
            vault.check(&bob, &used, code, at),
            Err(Some(totp::Refused::Used))
        );
        let mut tampered = new.record.clone();
        let flipped = if tampered.sealed.as_bytes()[20] == b'A' {
            "B"
        } else {
            "A"
        };
        tampered.sealed.replace_range(20..21, flipped);
        assert_eq!(vault.check(&bob, &tampered, code, at), Err(None));
    }
}
