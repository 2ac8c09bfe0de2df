//! `/parley/account/1`'s registry side: the [`parley_p2p::AccountKeeper`] port on the
//! enrollment service, so that a code given over a device's connection counts toward the same
//! per-name lockout as one given to enrollment.
//!
//! Like renewal, it checks in the registry that the certificate's key is still bound to its
//! user: the handshake proved the key, the CA's signature the name once, and this that nothing
//! changed since.
//!
//! A device list is kept only when [`DeviceList::accept`] takes it after the one held, when
//! the publishing device signed it, and when every key it names is bound to the user: the
//! rendezvous cannot vouch for a device, but it refuses to keep what no contact would accept
//! and a list naming a device that never enrolled under the name.

use parley_domain::{PeerKeys, Username, devices::DeviceList};
use parley_p2p::{AccountKeeper, AccountRefusal};

use crate::service::{Error, Service};

impl Service {
    fn check_bound(&self, user: &Username, keys: &PeerKeys) -> Result<(), AccountRefusal> {
        let owner = self
            .registry()
            .key_owner(&keys.ed25519)
            .map_err(failed(user, "account request failed"))?;
        if owner.as_deref() == Some(user.as_str()) {
            Ok(())
        } else {
            Err(AccountRefusal::new(
                "key_not_bound",
                format!("this device's key is no longer bound to {user}; enroll again"),
            ))
        }
    }
}

/// Logs `error` (what failed, for `user`) and answers the device `unavailable`.
fn failed<E: std::fmt::Display>(
    user: &Username,
    what: &'static str,
) -> impl FnOnce(E) -> AccountRefusal {
    move |error| {
        tracing::error!(%user, %error, "{what}");
        unavailable()
    }
}

fn unavailable() -> AccountRefusal {
    AccountRefusal::new(
        "unavailable",
        "the rendezvous cannot change the account now; try again later",
    )
}

fn refusal(user: &Username, error: Error) -> AccountRefusal {
    match error {
        Error::TotpAlreadyOn => AccountRefusal::new(
            "totp_on",
            format!(
                "{user} has a second factor on already; turn it off first with `parley totp disable`"
            ),
        ),
        Error::TotpOff => AccountRefusal::new(
            "totp_off",
            format!("{user} has no second factor on; turn it on with `parley totp enable`"),
        ),
        Error::InvalidTotp | Error::TotpRequired => AccountRefusal::new(
            "invalid_totp",
            "the code is wrong or was used already; give the authenticator app's next code",
        ),
        Error::LockedOut(wait) => {
            let seconds = crate::lockout::wait_seconds(wait);
            AccountRefusal::new(
                "locked_out",
                format!(
                    "too many wrong passwords or codes were given for {user}; try again in {seconds} seconds"
                ),
            )
        }
        Error::Busy => AccountRefusal::new(
            "busy",
            "the rendezvous is busy with this account; retry in a moment",
        ),
        other => {
            tracing::error!(%user, error = %other, "account request failed");
            unavailable()
        }
    }
}

/// A list refused by the rules, in one sentence.
fn list_refused(reason: impl std::fmt::Display) -> AccountRefusal {
    AccountRefusal::new(
        "device_list_refused",
        format!("the device list was refused: {reason}"),
    )
}

/// Tries of a device list's compare-and-swap before the request is answered as busy.
const LIST_TRIES: usize = 4;

impl Service {
    fn held_list(&self, user: &Username) -> Result<Option<(DeviceList, Vec<u8>)>, AccountRefusal> {
        let Some(bytes) = self
            .registry()
            .device_list(user)
            .map_err(failed(user, "reading a device list failed"))?
        else {
            return Ok(None);
        };
        let list = DeviceList::decode(&bytes)
            .map_err(failed(user, "a device list in the registry is unreadable"))?;
        Ok(Some((list, bytes)))
    }

    fn keep_list(
        &self,
        user: &Username,
        keys: &PeerKeys,
        list: &DeviceList,
    ) -> Result<(), AccountRefusal> {
        if list.user != *user {
            return Err(list_refused("it is another user's"));
        }
        if list.signer != keys.ed25519 {
            return Err(list_refused("it is not signed by the device publishing it"));
        }
        for device in &list.devices {
            let owner = self
                .registry()
                .key_owner(&device.ed25519)
                .map_err(failed(user, "account request failed"))?;
            if owner.as_deref() != Some(user.as_str()) {
                return Err(AccountRefusal::new(
                    "device_not_enrolled",
                    format!(
                        "the device list names device {}, which is not enrolled as {user}",
                        parley_domain::devices::device_id(&device.ed25519)
                    ),
                ));
            }
        }
        let new = list.encode().map_err(list_refused)?;
        for _ in 0..LIST_TRIES {
            let held = self.held_list(user)?;
            DeviceList::accept(held.as_ref().map(|(l, _)| l), list).map_err(list_refused)?;
            let swapped = self
                .registry()
                .replace_device_list(user, held.as_ref().map(|(_, b)| b.as_slice()), &new)
                .map_err(failed(user, "writing a device list failed"))?;
            if swapped {
                self.registry()
                    .flush_blocking()
                    .map_err(failed(user, "writing a device list failed"))?;
                tracing::info!(%user, version = list.version, devices = list.devices.len(), "device list published");
                return Ok(());
            }
        }
        Err(AccountRefusal::new(
            "busy",
            "the rendezvous is busy with this account; retry in a moment",
        ))
    }
}

impl AccountKeeper for Service {
    fn totp_enable(&self, user: &Username, keys: &PeerKeys) -> Result<String, AccountRefusal> {
        self.check_bound(user, keys)?;
        Service::totp_enable(self, user).map_err(|e| refusal(user, e))
    }

    fn totp_disable(
        &self,
        user: &Username,
        keys: &PeerKeys,
        code: &str,
    ) -> Result<(), AccountRefusal> {
        self.check_bound(user, keys)?;
        Service::totp_disable(self, user, code).map_err(|e| refusal(user, e))
    }

    fn publish_devices(
        &self,
        user: &Username,
        keys: &PeerKeys,
        list: &DeviceList,
    ) -> Result<(), AccountRefusal> {
        self.check_bound(user, keys)?;
        self.keep_list(user, keys, list)
    }

    fn devices(
        &self,
        user: &Username,
        keys: &PeerKeys,
    ) -> Result<Option<DeviceList>, AccountRefusal> {
        self.check_bound(user, keys)?;
        Ok(self.held_list(user)?.map(|(list, _)| list))
    }
}
