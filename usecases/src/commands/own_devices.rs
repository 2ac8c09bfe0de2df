//! This user's devices as the user signed them: [`OwnDevices::refresh`] makes sure the
//! rendezvous holds a signed device list (the first device publishes version 1, naming itself)
//! and that the one this device holds is the newest it accepted.
//!
//! The list the rendezvous serves is judged by [`DeviceList::accept`] against the one held:
//! a rendezvous cannot roll this device back to an older list, nor hand it one signed by a
//! device that is no longer the user's. What the rendezvous lost (or rolled back) is published
//! again from the list held.

use parley_domain::{
    Timestamp, Username,
    devices::{DeviceList, ListRefusal, ListedDevice, Standing, Unsigned},
};

use crate::ports::{AccountError, AccountService, DeviceLists, ListSigner, StoreError};

/// The device-list interactor: the list held, the rendezvous's account service, and this
/// device's key to sign with.
pub struct OwnDevices<L, A, G> {
    me: Username,
    lists: L,
    account: A,
    signer: G,
}

/// Why the device list could not be made sure of. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceListError {
    /// The rendezvous could not be reached, or refused the publication.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The list held could not be read or kept.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The rendezvous serves a list this device does not accept after the one it holds.
    #[error("the rendezvous serves a device list this device does not accept: {0}")]
    Refused(ListRefusal),
    /// The device's name is not one a list can carry.
    #[error("{0}")]
    BadName(ListRefusal),
}

impl DeviceListError {
    /// A stable snake_case name.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::Account(e) => e.code(),
            Self::Store(_) => "store_unavailable",
            Self::Refused(_) => "device_list_refused",
            Self::BadName(_) => "bad_device_name",
        }
    }
}

/// The list made sure of, and where this device stands in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Devices {
    /// The newest list accepted.
    pub list: DeviceList,
    /// This device's key.
    pub current: [u8; 32],
    /// Whether the list names this device.
    pub standing: Standing,
}

impl<L: DeviceLists, A: AccountService, G: ListSigner> OwnDevices<L, A, G> {
    /// Wires the interactor for the user `me`.
    pub fn new(me: Username, lists: L, account: A, signer: G) -> Self {
        Self {
            me,
            lists,
            account,
            signer,
        }
    }

    /// Makes sure of the list, as the module says: when neither this device nor the
    /// rendezvous holds one, this device publishes version 1 naming itself `name` (added
    /// `now`). Resolves once the list is published and held.
    ///
    /// # Errors
    /// [`DeviceListError`]; the list held is left as it was.
    pub async fn refresh(&self, now: Timestamp, name: &str) -> Result<Devices, DeviceListError> {
        let held = self.lists.device_list(&self.me)?;
        let served = self.account.devices().await?;
        let list = match (held, served) {
            (None, None) => {
                let first = Unsigned::first(
                    self.me.clone(),
                    ListedDevice {
                        ed25519: self.signer.device_key(),
                        added_at: now,
                        name: name.to_owned(),
                    },
                )
                .map_err(DeviceListError::BadName)?;
                let list = self
                    .signer
                    .sign_device_list(first)
                    .map_err(DeviceListError::BadName)?;
                self.account.publish_devices(&list).await?;
                self.lists.keep_device_list(&list)?;
                list
            }
            (Some(held), None) => {
                self.account.publish_devices(&held).await?;
                held
            }
            (held, Some(served)) if held.as_ref() == Some(&served) => served,
            (None, Some(served)) => {
                if served.user != self.me {
                    return Err(DeviceListError::Refused(ListRefusal::OtherUser));
                }
                DeviceList::accept(None, &served).map_err(DeviceListError::Refused)?;
                self.lists.keep_device_list(&served)?;
                served
            }
            (Some(held), Some(served))
                if served.user == held.user && served.version < held.version =>
            {
                // Rolled back: the newer list held goes back (the rendezvous takes it after
                // the older one when a device of that one signed it).
                self.account.publish_devices(&held).await?;
                held
            }
            (Some(held), Some(served)) => {
                DeviceList::accept(Some(&held), &served).map_err(DeviceListError::Refused)?;
                self.lists.keep_device_list(&served)?;
                served
            }
        };
        let current = self.signer.device_key();
        Ok(Devices {
            standing: list.standing_of(&current),
            list,
            current,
        })
    }
}
