//! This user's signed device list against a rendezvous that keeps it honestly, loses it, rolls
//! it back or lies about it.

use std::collections::HashMap;
use std::sync::Mutex;

use ed25519_dalek::{Signer as _, SigningKey};
use parley_domain::devices::{DeviceList, ListRefusal, ListedDevice, Standing, Unsigned};

use super::*;
use crate::commands::{DeviceListError, OwnDevices};
use crate::ports::{AccountError, AccountService, DeviceLists, ListSigner, StoreError};

#[derive(Default)]
struct Held(Mutex<HashMap<Username, DeviceList>>);

impl DeviceLists for Held {
    fn device_list(&self, user: &Username) -> Result<Option<DeviceList>, StoreError> {
        Ok(self.0.lock().expect("lock").get(user).cloned())
    }

    fn keep_device_list(&self, list: &DeviceList) -> Result<(), StoreError> {
        self.0
            .lock()
            .expect("lock")
            .insert(list.user.clone(), list.clone());
        Ok(())
    }
}

/// The rendezvous's side: keeps what `DeviceList::accept` takes, as the real one does; or
/// serves what a test makes it serve.
#[derive(Default)]
struct Rendezvous {
    list: Mutex<Option<DeviceList>>,
    down: Mutex<bool>,
    published: Mutex<u32>,
}

impl AccountService for Rendezvous {
    async fn totp_enable(&self) -> Result<String, AccountError> {
        unreachable!("not asked")
    }

    async fn totp_disable(&self, _: &str) -> Result<(), AccountError> {
        unreachable!("not asked")
    }

    async fn publish_devices(&self, list: &DeviceList) -> Result<(), AccountError> {
        if *self.down.lock().expect("lock") {
            return Err(AccountError::Unavailable("down".into()));
        }
        let mut held = self.list.lock().expect("lock");
        DeviceList::accept(held.as_ref(), list).map_err(|e| AccountError::Refused {
            code: "device_list_refused".into(),
            reason: e.to_string(),
        })?;
        *held = Some(list.clone());
        *self.published.lock().expect("lock") += 1;
        Ok(())
    }

    async fn devices(&self) -> Result<Option<DeviceList>, AccountError> {
        if *self.down.lock().expect("lock") {
            return Err(AccountError::Unavailable("down".into()));
        }
        Ok(self.list.lock().expect("lock").clone())
    }
}

struct Key(SigningKey);

impl Key {
    fn of(n: u8) -> Self {
        Self(SigningKey::from_bytes(&[n; 32]))
    }
}

impl ListSigner for Key {
    fn device_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    fn sign_device_list(&self, unsigned: Unsigned) -> Result<DeviceList, ListRefusal> {
        let signer = self.device_key();
        let signature = self.0.sign(&unsigned.signed_bytes(&signer)?).to_bytes();
        Ok(unsigned.signed(signature, signer))
    }
}

fn device(key: &Key, name: &str) -> ListedDevice {
    ListedDevice {
        ed25519: key.device_key(),
        added_at: Timestamp(1_800_000_000_000),
        name: name.into(),
    }
}

const NOW: Timestamp = Timestamp(1_800_000_000_000);

fn laptop<'a>(held: &'a Held, rv: &'a Rendezvous) -> OwnDevices<&'a Held, &'a Rendezvous, Key> {
    OwnDevices::new(user("bob"), held, rv, Key::of(1))
}

#[test]
fn given_no_list_anywhere_when_refreshing_then_the_first_device_publishes_itself_as_version_1() {
    let (held, rv) = (Held::default(), Rendezvous::default());
    let devices = block_on(laptop(&held, &rv).refresh(NOW, "laptop")).expect("published");
    assert_eq!(devices.list.version, 1);
    assert_eq!(devices.list.devices, vec![device(&Key::of(1), "laptop")]);
    assert_eq!(devices.standing, Standing::Confirmed);
    assert_eq!(rv.list.lock().expect("lock").as_ref(), Some(&devices.list));
    assert_eq!(
        held.device_list(&user("bob")).expect("reads"),
        Some(devices.list.clone())
    );
    // Again: nothing to publish.
    let again = block_on(laptop(&held, &rv).refresh(NOW, "laptop")).expect("held");
    assert_eq!(again.list, devices.list);
    assert_eq!(*rv.published.lock().expect("lock"), 1);
}

#[test]
fn given_a_rendezvous_that_lost_or_rolled_back_the_list_then_the_list_held_goes_back() {
    let (held, rv) = (Held::default(), Rendezvous::default());
    let v1 = block_on(laptop(&held, &rv).refresh(NOW, "laptop"))
        .expect("v1")
        .list;
    let v2 = Key::of(1)
        .sign_device_list(
            v1.next(vec![
                device(&Key::of(1), "laptop"),
                device(&Key::of(2), "desktop"),
            ])
            .expect("v2"),
        )
        .expect("signed");
    block_on(rv.publish_devices(&v2)).expect("published");
    assert_eq!(
        block_on(laptop(&held, &rv).refresh(NOW, "laptop"))
            .expect("v2")
            .list,
        v2
    );
    // Rolled back to v1 (a restored backup, or a lie): v2 is published again.
    *rv.list.lock().expect("lock") = Some(v1);
    let devices = block_on(laptop(&held, &rv).refresh(NOW, "laptop")).expect("healed");
    assert_eq!(devices.list, v2);
    assert_eq!(rv.list.lock().expect("lock").as_ref(), Some(&v2));
    // Lost altogether: the same.
    *rv.list.lock().expect("lock") = None;
    block_on(laptop(&held, &rv).refresh(NOW, "laptop")).expect("healed");
    assert_eq!(rv.list.lock().expect("lock").as_ref(), Some(&v2));
}

#[test]
fn given_a_rendezvous_serving_a_list_no_device_of_the_user_signed_then_it_is_refused() {
    let (held, rv) = (Held::default(), Rendezvous::default());
    let v1 = block_on(laptop(&held, &rv).refresh(NOW, "laptop"))
        .expect("v1")
        .list;
    // The rendezvous's own device for bob, signed by itself, as a newer version.
    let planted = Key::of(9)
        .sign_device_list(
            v1.next(vec![
                device(&Key::of(1), "laptop"),
                device(&Key::of(9), "mine"),
            ])
            .expect("v2"),
        )
        .expect("signed");
    *rv.list.lock().expect("lock") = Some(planted);
    let e = block_on(laptop(&held, &rv).refresh(NOW, "laptop")).expect_err("refused");
    assert_eq!(e, DeviceListError::Refused(ListRefusal::UnknownSigner));
    assert_eq!(e.code(), "device_list_refused");
    assert_eq!(held.device_list(&user("bob")).expect("reads"), Some(v1));
}

#[test]
fn given_a_device_enrolled_beside_a_list_that_does_not_name_it_then_it_stands_unconfirmed() {
    let rv = Rendezvous::default();
    block_on(laptop(&Held::default(), &rv).refresh(NOW, "laptop")).expect("v1");
    // A second home enrolled with the password only: the list names the laptop alone.
    let held = Held::default();
    let other = OwnDevices::new(user("bob"), &held, &rv, Key::of(3));
    let devices = block_on(other.refresh(NOW, "desktop")).expect("fetched");
    assert_eq!(devices.standing, Standing::Unconfirmed);
    assert_eq!(devices.list.version, 1);
    assert_eq!(
        *rv.published.lock().expect("lock"),
        1,
        "it published nothing"
    );
}

#[test]
fn given_the_rendezvous_down_or_a_bad_name_then_it_says_so_and_keeps_nothing() {
    let (held, rv) = (Held::default(), Rendezvous::default());
    *rv.down.lock().expect("lock") = true;
    let e = block_on(laptop(&held, &rv).refresh(NOW, "laptop")).expect_err("down");
    assert_eq!(e.code(), "rendezvous_unavailable");
    *rv.down.lock().expect("lock") = false;
    let e = block_on(laptop(&held, &rv).refresh(NOW, "bad\nname")).expect_err("bad name");
    assert_eq!(e.code(), "bad_device_name");
    assert_eq!(held.device_list(&user("bob")).expect("reads"), None);
    assert_eq!(*rv.list.lock().expect("lock"), None);
}
