//! The second factor: time-based one-time passwords (RFC 6238) as the rendezvous accepts them,
//! as pure rules. The HMAC-SHA1 of a time step is computed by the caller (the rendezvous holds
//! the secret) and passed in, as are the times.
//!
//! A code is 6 digits of HMAC-SHA1 over the 30-second step since the Unix epoch (the
//! parameters every standard authenticator app uses by default). A code is accepted for the
//! step it was made for, one step before it or one after it (a clock 30 s off either way), and
//! only for a step later than the last one accepted for the name: a code is used once, and an
//! older code seen after a newer one is refused too.

use std::fmt;

use crate::Username;

/// Digits in a code.
pub const DIGITS: usize = 6;
/// Seconds in a time step.
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted on each side of the current one.
pub const WINDOW: u64 = 1;
/// Bytes of a secret (160 bits, RFC 4226's recommended length for HMAC-SHA1).
pub const SECRET_BYTES: usize = 20;

/// A code as typed: exactly [`DIGITS`] ASCII digits (spaces between them are dropped, as
/// authenticator apps show `123 456`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TotpCode(u32);

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A live code is a credential for 90 seconds: never in a log.
        f.write_str("TotpCode(..)")
    }
}

/// Why a code was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a code is {DIGITS} digits, as the authenticator app shows it")]
pub struct NotACode;

impl TotpCode {
    /// Reads a code.
    ///
    /// # Errors
    /// [`NotACode`] unless `raw` is [`DIGITS`] ASCII digits, with any spaces.
    pub fn parse(raw: &str) -> Result<Self, NotACode> {
        let digits: Vec<u8> = raw.bytes().filter(|b| *b != b' ').collect();
        if digits.len() != DIGITS || !digits.iter().all(u8::is_ascii_digit) {
            return Err(NotACode);
        }
        Ok(Self(
            digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')),
        ))
    }

    /// The code's value.
    #[must_use]
    pub fn value(self) -> u32 {
        self.0
    }
}

/// The time step of `unix_seconds`.
#[must_use]
pub fn step_at(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// The code an HMAC-SHA1 of a step gives (RFC 4226's dynamic truncation, to [`DIGITS`]).
#[must_use]
pub fn code_of(mac: &[u8; 20]) -> TotpCode {
    let offset = usize::from(mac[19] & 0x0f);
    let bits = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    TotpCode(bits % 1_000_000)
}

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// It matches no step of the window.
    #[error("the code is not the current one")]
    Wrong,
    /// It matches a step no later than the last one accepted: it was used already.
    #[error("the code was used already")]
    Used,
}

/// Checks `code` at `unix_seconds` against the steps of the window, given the last step
/// accepted for this secret and the HMAC-SHA1 of a step. Every step of the window is
/// computed and compared, whatever matched first. Returns the step the code was made for,
/// which the caller records as the last one accepted (atomically with the check: two uses of
/// one code at once must not both pass).
///
/// # Errors
/// [`Refused::Wrong`] when no step of the window matches; [`Refused::Used`] when only steps
/// at or before `last_step` match.
pub fn accept(
    code: TotpCode,
    unix_seconds: u64,
    last_step: Option<u64>,
    mac: impl Fn(u64) -> [u8; 20],
) -> Result<u64, Refused> {
    let now = step_at(unix_seconds);
    let mut fresh = None;
    let mut stale = false;
    for step in now.saturating_sub(WINDOW)..=now.saturating_add(WINDOW) {
        if code_of(&mac(step)) != code {
            continue;
        }
        if last_step.is_some_and(|last| step <= last) {
            stale = true;
        } else if fresh.is_none() {
            fresh = Some(step);
        }
    }
    match (fresh, stale) {
        (Some(step), _) => Ok(step),
        (None, true) => Err(Refused::Used),
        (None, false) => Err(Refused::Wrong),
    }
}

/// The `otpauth://` URI that authenticator apps read (as text or as a QR code), for
/// `secret_base32` (RFC 4648 base32, without padding).
#[must_use]
pub fn otpauth_uri(user: &Username, secret_base32: &str) -> String {
    // A username is a-z, 0-9, '-' and '_': nothing in it needs escaping.
    format!("otpauth://totp/Parley:{user}?secret={secret_base32}&issuer=Parley")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for HMAC-SHA1 whose code for step `s` is `s % 1_000_000`: the rules, not
    /// the hash, are under test here (the rendezvous tests RFC 6238's own vectors).
    fn mac(step: u64) -> [u8; 20] {
        let mut mac = [0; 20];
        let value = u32::try_from(step % 1_000_000).expect("small");
        mac[..4].copy_from_slice(&value.to_be_bytes());
        mac
    }

    fn code(step: u64) -> TotpCode {
        code_of(&mac(step))
    }

    #[test]
    fn a_code_is_six_digits_with_any_spaces() {
        assert_eq!(TotpCode::parse("123456").map(TotpCode::value), Ok(123_456));
        assert_eq!(TotpCode::parse("123 456").map(TotpCode::value), Ok(123_456));
        assert_eq!(TotpCode::parse("000042").map(TotpCode::value), Ok(42));
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "+12345",
            "１２３４５６",
            "12\n456",
        ] {
            assert_eq!(TotpCode::parse(bad), Err(NotACode), "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", TotpCode::parse("123456")),
            "Ok(TotpCode(..))"
        );
    }

    #[test]
    fn the_truncation_is_rfc_4226s() {
        // RFC 4226, appendix D: the HMAC of count 0 for the secret "12345678901234567890".
        let mac = [
            0xcc, 0x93, 0xcf, 0x18, 0x50, 0x8d, 0x94, 0x93, 0x4c, 0x64, 0xb6, 0x5d, 0x8b, 0xa7,
            0x66, 0x7f, 0xb7, 0xcd, 0xe4, 0xb0,
        ];
        assert_eq!(code_of(&mac).value(), 755_224);
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_no_further() {
        let now = 1_000 * STEP_SECONDS + 7;
        assert_eq!(accept(code(1_000), now, None, mac), Ok(1_000));
        assert_eq!(accept(code(999), now, None, mac), Ok(999));
        assert_eq!(accept(code(1_001), now, None, mac), Ok(1_001));
        assert_eq!(accept(code(998), now, None, mac), Err(Refused::Wrong));
        assert_eq!(accept(code(1_002), now, None, mac), Err(Refused::Wrong));
    }

    #[test]
    fn a_code_is_accepted_once_and_an_older_one_never_after_it() {
        let now = 1_000 * STEP_SECONDS;
        let step = accept(code(1_000), now, None, mac).expect("fresh");
        assert_eq!(
            accept(code(1_000), now, Some(step), mac),
            Err(Refused::Used)
        );
        assert_eq!(accept(code(999), now, Some(step), mac), Err(Refused::Used));
        assert_eq!(accept(code(1_001), now, Some(step), mac), Ok(1_001));
    }

    #[test]
    fn the_uri_names_the_user_the_secret_and_the_issuer() {
        let user = Username::parse("bob").expect("valid");
        assert_eq!(
            otpauth_uri(&user, "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/Parley:bob?secret=JBSWY3DPEHPK3PXP&issuer=Parley"
        );
    }
}
