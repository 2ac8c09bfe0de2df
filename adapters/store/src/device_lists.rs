//! [`DeviceLists`] on the `device_lists` tree: the newest signed device list accepted per user.

use parley_domain::{Username, devices::DeviceList};
use parley_usecases::ports::{DeviceLists, StoreError};

use crate::records::corrupt;
use crate::{Store, unavailable};

impl DeviceLists for Store {
    #[tracing::instrument(name = "store.device_list", level = "debug", skip_all, fields(%user), err(Display))]
    fn device_list(&self, user: &Username) -> Result<Option<DeviceList>, StoreError> {
        let key = self.name(user);
        match self.device_lists.get(key) {
            Ok(Some(value)) => {
                let plain = self.keys.open_value("device_lists", &key, &value)?;
                DeviceList::decode(&plain)
                    .map(Some)
                    .map_err(|_| corrupt("device_lists", "a held device list is unreadable"))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable("read a device list", e)),
        }
    }

    #[tracing::instrument(name = "store.keep_device_list", level = "debug", skip_all, fields(user = %list.user, version = list.version), err(Display))]
    fn keep_device_list(&self, list: &DeviceList) -> Result<(), StoreError> {
        let key = self.name(&list.user);
        let bytes = list
            .encode()
            .map_err(|e| StoreError::Unavailable(format!("a device list cannot be kept: {e}")))?;
        let value = self.keys.seal_value("device_lists", &key, &bytes)?;
        self.device_lists
            .insert(key, value)
            .map_err(|e| unavailable("keep a device list", e))?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::{
        Timestamp,
        devices::{ListedDevice, Unsigned},
    };

    use super::*;
    use crate::Unlock;

    #[test]
    fn a_kept_list_comes_back_after_a_reopen_and_is_not_readable_on_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bob = Username::parse("bob").expect("valid");
        let list = Unsigned::first(
            bob.clone(),
            ListedDevice {
                ed25519: [7; 32],
                added_at: Timestamp(1_800_000_000_000),
                name: "laptop-on-the-desk".into(),
            },
        )
        .expect("first")
        .signed([9; 64], [7; 32]);
        {
            let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens");
            assert_eq!(store.device_list(&bob).expect("reads"), None);
            store.keep_device_list(&list).expect("kept");
        }
        let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens again");
        assert_eq!(store.device_list(&bob).expect("reads"), Some(list));
        drop(store);
        let on_disk = walk(dir.path());
        assert!(
            !on_disk
                .windows(b"laptop-on-the-desk".len())
                .any(|w| w == b"laptop-on-the-desk"),
            "a device's name is sealed at rest"
        );
    }

    fn walk(path: &std::path::Path) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(path).expect("reads").flatten() {
            let path = entry.path();
            if path.is_dir() {
                all.extend(walk(&path));
            } else {
                all.extend(std::fs::read(&path).expect("reads"));
            }
        }
        all
    }
}
