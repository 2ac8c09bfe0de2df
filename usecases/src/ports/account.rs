//! The account port: what a device asks the rendezvous about its own user's account (the
//! second factor, the signed device list), over its own certified connection.

use std::future::Future;

use auto_impl::auto_impl;
use parley_domain::devices::DeviceList;

/// Why an account request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The rendezvous could not be reached or did not answer.
    #[error("the rendezvous could not be reached: {0}")]
    Unavailable(String),
    /// The rendezvous refused, with a stable code and one sentence.
    #[error("{reason}")]
    Refused {
        /// A stable snake_case code (`totp_on`, `totp_off`, `invalid_totp`, `locked_out`, …).
        code: String,
        /// One sentence.
        reason: String,
    },
}

impl AccountError {
    /// A stable snake_case name.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::Unavailable(_) => "rendezvous_unavailable",
            Self::Refused { code, .. } => code,
        }
    }
}

/// This user's account at the rendezvous.
#[auto_impl(&, Arc)]
pub trait AccountService: Send + Sync {
    /// Turns the second factor on; resolves with its secret (RFC 4648 base32), shown once.
    ///
    /// # Errors
    /// [`AccountError`]: refused `totp_on` when it is on already.
    fn totp_enable(&self) -> impl Future<Output = Result<String, AccountError>> + Send;

    /// Turns the second factor off with a current `code`.
    ///
    /// # Errors
    /// [`AccountError`]: refused `totp_off`, `invalid_totp`, `locked_out`.
    fn totp_disable(&self, code: &str) -> impl Future<Output = Result<(), AccountError>> + Send;

    /// Publishes a new version of this user's device list, signed by this device; resolves
    /// once the rendezvous holds it durably.
    ///
    /// # Errors
    /// [`AccountError`]: refused `device_list_refused` (a version not newer than the one held,
    /// a signer not among the current devices), `device_not_enrolled`.
    fn publish_devices(
        &self,
        list: &DeviceList,
    ) -> impl Future<Output = Result<(), AccountError>> + Send;

    /// This user's device list as the rendezvous holds it (`None`: none published yet). Not
    /// checked: the caller judges it against the list it holds.
    ///
    /// # Errors
    /// [`AccountError`]; a list that cannot be read is `Unavailable`.
    fn devices(&self) -> impl Future<Output = Result<Option<DeviceList>, AccountError>> + Send;
}

/// This device's key, as it signs its user's device lists.
#[auto_impl(&, Arc)]
pub trait ListSigner: Send + Sync {
    /// This device's Ed25519 key (the one its certificate certifies).
    fn device_key(&self) -> [u8; 32];
    /// `unsigned`, signed by this device.
    ///
    /// # Errors
    /// As [`parley_domain::devices::Unsigned::signed_bytes`] (never for a checked version).
    fn sign_device_list(
        &self,
        unsigned: parley_domain::devices::Unsigned,
    ) -> Result<parley_domain::devices::DeviceList, parley_domain::devices::ListRefusal>;
}
