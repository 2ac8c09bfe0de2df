//! A user's devices as the user signed them: a versioned list of device keys, each version
//! signed by one of the devices of the version before it, so that contacts accept a new device
//! of someone they pinned without a key-change alarm, and nobody else (a rendezvous that lies
//! included) can add one.
//!
//! ```text
//! signed = "parley/device-list/v1" ‖ len:u8 ‖ user ‖ version:u64
//!          ‖ count:u8 ‖ per device: ed25519:[32] ‖ added_at_ms:i64 ‖ len:u8 ‖ name
//!          ‖ signer:[32]
//! ```
//!
//! Integers are big-endian. On the wire and at rest a list is `signed ‖ signature:[64]`
//! ([`DeviceList::encode`], [`DeviceList::decode`]). A device is named by [`device_id`]: the
//! first 8 bytes of its key in hex, short enough to type. The rules a holder of the list applies to a new version
//! ([`DeviceList::accept`]):
//!
//! - the first list seen of a user (no version held) is taken on first use when it is well
//!   formed and signed by a device it lists (a contact who never met the user trusts exactly
//!   the devices in it);
//! - a later one must name the same user, carry a higher version (an old version replayed is
//!   refused, so a removed device cannot come back), and be signed by a device of the version
//!   held (a device the user removed can sign nothing that is accepted any more);
//! - every list holds 1 to [`MAX_DEVICES`] devices, each key once, each name of 1 to
//!   [`MAX_DEVICE_NAME`] bytes of printable text.
//!
//! A certificate whose key is in the list held is a confirmed device; any other certificate of
//! the name is unconfirmed ([`DeviceList::standing_of`]): a key change, until the user of the
//! list signs it in or a contact accepts it by hand.

use crate::{Timestamp, Username};

/// The most devices a user may have.
pub const MAX_DEVICES: usize = 8;
/// The longest device name, in bytes.
pub const MAX_DEVICE_NAME: usize = 64;

const CONTEXT: &[u8] = b"parley/device-list/v1";

/// One device of a user, as the list names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDevice {
    /// Its Ed25519 device key (the key its certificate certifies).
    pub ed25519: [u8; 32],
    /// When it was added, in milliseconds since the Unix epoch.
    pub added_at: Timestamp,
    /// What its owner calls it ("laptop").
    pub name: String,
}

/// A version of a user's device list, with its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList {
    /// Whose devices.
    pub user: Username,
    /// Higher is newer; the first list is version 1.
    pub version: u64,
    /// The devices, in the order they were added.
    pub devices: Vec<ListedDevice>,
    /// The device key that signed this version.
    pub signer: [u8; 32],
    /// Its Ed25519 signature over [`DeviceList::signed_bytes`].
    pub signature: [u8; 64],
}

/// Why a list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListRefusal {
    /// Not one of the device lists this user may have.
    #[error("the device list is malformed: {0}")]
    Malformed(&'static str),
    /// It is another user's.
    #[error("the device list is another user's")]
    OtherUser,
    /// Its version is not higher than the one held: an old list replayed.
    #[error("the device list is version {got}, not newer than version {held} already held")]
    Stale {
        /// The version refused.
        got: u64,
        /// The version held.
        held: u64,
    },
    /// Its signer is not a device of the list held (a removed device, or nobody's).
    #[error("the device list is signed by a device that is not one of the user's current devices")]
    UnknownSigner,
    /// The signature does not hold.
    #[error("the device list's signature does not hold")]
    BadSignature,
}

/// What a certificate of the user is, against the list held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its key is in the list: a device the user signed in.
    Confirmed,
    /// Its key is not: a key change until the user signs it in or a contact accepts it.
    Unconfirmed,
}

impl DeviceList {
    /// The bytes the signer signs.
    ///
    /// # Errors
    /// [`ListRefusal::Malformed`] when a field does not fit its length byte (a list that
    /// [`DeviceList::check_shape`] accepts always fits).
    pub fn signed_bytes(&self) -> Result<Vec<u8>, ListRefusal> {
        let user = self.user.as_str().as_bytes();
        let mut out = Vec::with_capacity(CONTEXT.len() + 64 + self.devices.len() * 112);
        out.extend_from_slice(CONTEXT);
        out.push(u8::try_from(user.len()).map_err(|_| ListRefusal::Malformed("user"))?);
        out.extend_from_slice(user);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(
            u8::try_from(self.devices.len())
                .map_err(|_| ListRefusal::Malformed("too many devices"))?,
        );
        for device in &self.devices {
            out.extend_from_slice(&device.ed25519);
            out.extend_from_slice(&device.added_at.0.to_be_bytes());
            out.push(
                u8::try_from(device.name.len())
                    .map_err(|_| ListRefusal::Malformed("device name too long"))?,
            );
            out.extend_from_slice(device.name.as_bytes());
        }
        out.extend_from_slice(&self.signer);
        Ok(out)
    }

    /// `signed ‖ signature`, as the list travels and is kept.
    ///
    /// # Errors
    /// As [`DeviceList::signed_bytes`].
    pub fn encode(&self) -> Result<Vec<u8>, ListRefusal> {
        let mut out = self.signed_bytes()?;
        out.extend_from_slice(&self.signature);
        Ok(out)
    }

    /// Reads [`DeviceList::encode`]'s bytes: the layout only (a name that is no username, or
    /// text that is no UTF-8, is malformed); the rules are [`DeviceList::accept`]'s.
    ///
    /// # Errors
    /// [`ListRefusal::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ListRefusal> {
        let mut r = Reader(bytes);
        if r.take(CONTEXT.len())? != CONTEXT {
            return Err(ListRefusal::Malformed("not a device list"));
        }
        let user_len = usize::from(r.byte()?);
        let user = std::str::from_utf8(r.take(user_len)?)
            .ok()
            .and_then(|u| Username::parse(u).ok())
            .ok_or(ListRefusal::Malformed("the user is not a username"))?;
        let version = u64::from_be_bytes(r.array()?);
        let count = usize::from(r.byte()?);
        if count > MAX_DEVICES {
            return Err(ListRefusal::Malformed("more devices than a user may have"));
        }
        let mut devices = Vec::with_capacity(count);
        for _ in 0..count {
            let ed25519 = r.array()?;
            let added_at = Timestamp(i64::from_be_bytes(r.array()?));
            let name_len = usize::from(r.byte()?);
            let name = std::str::from_utf8(r.take(name_len)?)
                .map_err(|_| ListRefusal::Malformed("a device name is not UTF-8"))?
                .to_owned();
            devices.push(ListedDevice {
                ed25519,
                added_at,
                name,
            });
        }
        let signer = r.array()?;
        let signature = r.array()?;
        if !r.0.is_empty() {
            return Err(ListRefusal::Malformed("bytes after the signature"));
        }
        Ok(Self {
            user,
            version,
            devices,
            signer,
            signature,
        })
    }

    /// Checks what needs no other list: the version, the number of devices, each key once,
    /// each name, and the signature by the signer named.
    ///
    /// # Errors
    /// [`ListRefusal::Malformed`], [`ListRefusal::BadSignature`].
    pub fn check_shape(&self) -> Result<(), ListRefusal> {
        if self.version == 0 {
            return Err(ListRefusal::Malformed("versions start at 1"));
        }
        check_devices(&self.devices)?;
        if !self.signed_by(&self.signer) {
            return Err(ListRefusal::BadSignature);
        }
        Ok(())
    }

    fn signed_by(&self, key: &[u8; 32]) -> bool {
        use ed25519_dalek::{Signature, VerifyingKey};
        let Ok(bytes) = self.signed_bytes() else {
            return false;
        };
        VerifyingKey::from_bytes(key).is_ok_and(|key| {
            key.verify_strict(&bytes, &Signature::from_bytes(&self.signature))
                .is_ok()
        })
    }

    /// Whether `new` may replace `held` (`None`: no list of the user is held yet), by the
    /// rules in the module's documentation.
    ///
    /// # Errors
    /// [`ListRefusal`]; nothing changes on refusal.
    pub fn accept(held: Option<&Self>, new: &Self) -> Result<(), ListRefusal> {
        new.check_shape()?;
        match held {
            None => {
                if new.lists(&new.signer) {
                    Ok(())
                } else {
                    Err(ListRefusal::UnknownSigner)
                }
            }
            Some(held) => {
                if held.user != new.user {
                    return Err(ListRefusal::OtherUser);
                }
                if new.version <= held.version {
                    return Err(ListRefusal::Stale {
                        got: new.version,
                        held: held.version,
                    });
                }
                if held.lists(&new.signer) {
                    Ok(())
                } else {
                    Err(ListRefusal::UnknownSigner)
                }
            }
        }
    }

    /// Whether `ed25519` is one of the listed devices.
    #[must_use]
    pub fn lists(&self, ed25519: &[u8; 32]) -> bool {
        self.devices.iter().any(|d| d.ed25519 == *ed25519)
    }

    /// What a certificate of this user with the device key `ed25519` is.
    #[must_use]
    pub fn standing_of(&self, ed25519: &[u8; 32]) -> Standing {
        if self.lists(ed25519) {
            Standing::Confirmed
        } else {
            Standing::Unconfirmed
        }
    }

    /// The next version: `devices` as they will be, to be signed by a device of this one.
    ///
    /// # Errors
    /// [`ListRefusal::Malformed`] when it would hold no device, more than [`MAX_DEVICES`], or
    /// a device twice.
    pub fn next(&self, devices: Vec<ListedDevice>) -> Result<Unsigned, ListRefusal> {
        let next = Unsigned {
            user: self.user.clone(),
            version: self
                .version
                .checked_add(1)
                .ok_or(ListRefusal::Malformed("no version after this one"))?,
            devices,
        };
        next.check()?;
        Ok(next)
    }
}

/// A version not signed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsigned {
    /// Whose devices.
    pub user: Username,
    /// Its version.
    pub version: u64,
    /// The devices.
    pub devices: Vec<ListedDevice>,
}

impl Unsigned {
    /// The first list of a user: its one device, version 1.
    ///
    /// # Errors
    /// [`ListRefusal::Malformed`] for a name that is not one.
    pub fn first(user: Username, device: ListedDevice) -> Result<Self, ListRefusal> {
        let first = Self {
            user,
            version: 1,
            devices: vec![device],
        };
        first.check()?;
        Ok(first)
    }

    fn check(&self) -> Result<(), ListRefusal> {
        check_devices(&self.devices)
    }

    /// The bytes `signer` signs for this version.
    ///
    /// # Errors
    /// As [`DeviceList::signed_bytes`].
    pub fn signed_bytes(&self, signer: &[u8; 32]) -> Result<Vec<u8>, ListRefusal> {
        self.clone().signed([0; 64], *signer).signed_bytes()
    }

    /// The list with `signer`'s `signature` over [`Unsigned::signed_bytes`].
    #[must_use]
    pub fn signed(self, signature: [u8; 64], signer: [u8; 32]) -> DeviceList {
        DeviceList {
            user: self.user,
            version: self.version,
            devices: self.devices,
            signer,
            signature,
        }
    }
}

/// The short name of the device whose key is `ed25519`: its first 8 bytes, lower-case hex.
#[must_use]
pub fn device_id(ed25519: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    ed25519[..8]
        .iter()
        .fold(String::with_capacity(16), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Reads a list's bytes front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ListRefusal> {
        if self.0.len() < n {
            return Err(ListRefusal::Malformed("the list is cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, ListRefusal> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ListRefusal> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// 1 to [`MAX_DEVICES`] devices, each key once, each name well formed.
fn check_devices(devices: &[ListedDevice]) -> Result<(), ListRefusal> {
    if devices.is_empty() {
        return Err(ListRefusal::Malformed("no device"));
    }
    if devices.len() > MAX_DEVICES {
        return Err(ListRefusal::Malformed("more devices than a user may have"));
    }
    for (i, device) in devices.iter().enumerate() {
        if devices[..i].iter().any(|d| d.ed25519 == device.ed25519) {
            return Err(ListRefusal::Malformed("a device listed twice"));
        }
        check_name(&device.name)?;
    }
    Ok(())
}

/// A device name: 1 to [`MAX_DEVICE_NAME`] bytes, no control characters.
///
/// # Errors
/// [`ListRefusal::Malformed`].
pub fn check_name(name: &str) -> Result<(), ListRefusal> {
    if name.is_empty() || name.len() > MAX_DEVICE_NAME {
        return Err(ListRefusal::Malformed(
            "a device name is 1 to 64 bytes long",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ListRefusal::Malformed(
            "a device name has no control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn device(n: u8, name: &str) -> ListedDevice {
        ListedDevice {
            ed25519: key(n).verifying_key().to_bytes(),
            added_at: Timestamp(1_800_000_000_000 + i64::from(n)),
            name: name.to_owned(),
        }
    }

    fn sign(unsigned: Unsigned, by: u8) -> DeviceList {
        let signer = key(by).verifying_key().to_bytes();
        let bytes = unsigned.signed_bytes(&signer).expect("fits");
        let signature = key(by).sign(&bytes).to_bytes();
        unsigned.signed(signature, signer)
    }

    fn bob() -> Username {
        Username::parse("bob").expect("valid")
    }

    fn first() -> DeviceList {
        sign(
            Unsigned::first(bob(), device(1, "laptop")).expect("first"),
            1,
        )
    }

    #[test]
    fn a_first_list_is_taken_on_first_use_when_a_device_it_lists_signed_it() {
        let list = first();
        assert_eq!(DeviceList::accept(None, &list), Ok(()));
        assert_eq!(
            list.standing_of(&device(1, "x").ed25519),
            Standing::Confirmed
        );
        assert_eq!(
            list.standing_of(&device(2, "x").ed25519),
            Standing::Unconfirmed
        );
        // Signed by a key it does not list: someone else's word about bob's devices.
        let outsider = sign(
            Unsigned::first(bob(), device(1, "laptop")).expect("first"),
            9,
        );
        assert_eq!(
            DeviceList::accept(None, &outsider),
            Err(ListRefusal::UnknownSigner)
        );
    }

    #[test]
    fn a_device_signed_in_by_a_current_one_is_accepted() {
        let held = first();
        let next = held
            .next(vec![device(1, "laptop"), device(2, "desktop")])
            .expect("next");
        let by_laptop = sign(next.clone(), 1);
        assert_eq!(DeviceList::accept(Some(&held), &by_laptop), Ok(()));
        assert_eq!(
            by_laptop.standing_of(&device(2, "x").ed25519),
            Standing::Confirmed
        );
        // The new device cannot sign itself in: it is not in the list held.
        let by_itself = sign(next, 2);
        assert_eq!(
            DeviceList::accept(Some(&held), &by_itself),
            Err(ListRefusal::UnknownSigner)
        );
    }

    #[test]
    fn a_forged_a_replayed_or_a_removed_devices_list_is_refused() {
        let v1 = first();
        let v2 = sign(
            v1.next(vec![device(1, "laptop"), device(2, "desktop")])
                .expect("v2"),
            1,
        );
        // The desktop removes the laptop.
        let v3 = sign(v2.next(vec![device(2, "desktop")]).expect("v3"), 2);
        assert_eq!(DeviceList::accept(Some(&v2), &v3), Ok(()));
        // The laptop, removed, signs a list bringing itself back: refused.
        let comeback = sign(
            v3.next(vec![device(1, "laptop"), device(2, "desktop")])
                .expect("v4"),
            1,
        );
        assert_eq!(
            DeviceList::accept(Some(&v3), &comeback),
            Err(ListRefusal::UnknownSigner)
        );
        // v2 replayed after v3: stale.
        assert_eq!(
            DeviceList::accept(Some(&v3), &v2),
            Err(ListRefusal::Stale { got: 2, held: 3 })
        );
        // Any byte changed breaks the signature.
        let mut renamed = v3.clone();
        renamed.devices[0].name = "phone".into();
        assert_eq!(
            DeviceList::accept(Some(&v2), &renamed),
            Err(ListRefusal::BadSignature)
        );
        let mut bumped = v3.clone();
        bumped.version = 4;
        assert_eq!(
            DeviceList::accept(Some(&v3), &bumped),
            Err(ListRefusal::BadSignature)
        );
        // Another user's list does not replace bob's.
        let eve = sign(
            Unsigned {
                user: Username::parse("eve").expect("valid"),
                version: 9,
                devices: vec![device(2, "desktop")],
            },
            2,
        );
        assert_eq!(
            DeviceList::accept(Some(&v3), &eve),
            Err(ListRefusal::OtherUser)
        );
    }

    #[test]
    fn a_list_travels_as_its_signed_bytes_and_signature_and_nothing_else() {
        let v2 = sign(
            first()
                .next(vec![device(1, "laptop"), device(2, "Bob's desktop ✓")])
                .expect("v2"),
            1,
        );
        let bytes = v2.encode().expect("fits");
        assert_eq!(DeviceList::decode(&bytes), Ok(v2.clone()));
        for cut in [0, 10, bytes.len() - 1] {
            assert!(DeviceList::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(DeviceList::decode(&longer).is_err());
        let mut other = bytes;
        other[0] ^= 1;
        assert!(DeviceList::decode(&other).is_err());
        assert_eq!(device_id(&[0xab; 32]), "abababababababab");
    }

    #[test]
    fn a_list_holds_one_to_eight_distinct_well_named_devices() {
        let held = first();
        let nine: Vec<ListedDevice> = (1..=9).map(|n| device(n, "d")).collect();
        assert!(matches!(held.next(nine), Err(ListRefusal::Malformed(_))));
        let eight: Vec<ListedDevice> = (1..=8).map(|n| device(n, "d")).collect();
        assert!(held.next(eight).is_ok());
        assert!(matches!(
            held.next(Vec::new()),
            Err(ListRefusal::Malformed(_))
        ));
        assert!(matches!(
            held.next(vec![device(1, "a"), device(1, "b")]),
            Err(ListRefusal::Malformed(_))
        ));
        for bad in ["", "line\nbreak", &"x".repeat(MAX_DEVICE_NAME + 1)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("Bob's laptop ✓").is_ok());
        // A list signed as it should be but with a device twice is refused even so.
        let mut twice = first();
        twice.devices.push(device(1, "again"));
        assert!(matches!(
            DeviceList::accept(None, &twice),
            Err(ListRefusal::Malformed(_))
        ));
    }
}
