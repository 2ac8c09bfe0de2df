//! [`IdentityStore`] on the `identity` tree.

use parley_domain::DeviceIdentity;
use parley_usecases::ports::{IdentityStore, StoreError};

use crate::records::{IDENTITY_KEY, decode_identity, encode_identity};
use crate::{Store, unavailable};

impl IdentityStore for Store {
    #[tracing::instrument(name = "store.identity", level = "debug", skip_all, err(Display))]
    fn identity(&self) -> Result<Option<DeviceIdentity>, StoreError> {
        match self.identity.get(IDENTITY_KEY) {
            Ok(Some(value)) => {
                decode_identity(&self.keys.open_value("identity", IDENTITY_KEY, &value)?).map(Some)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable("read the device identity", e)),
        }
    }

    #[tracing::instrument(name = "store.save_identity", level = "debug", skip_all, fields(user = %identity.user), err(Display))]
    fn save_identity(&self, identity: &DeviceIdentity) -> Result<(), StoreError> {
        let value = self
            .keys
            .seal_value("identity", IDENTITY_KEY, &encode_identity(identity)?)?;
        self.identity
            .insert(IDENTITY_KEY, value)
            .map_err(|e| unavailable("save the device identity", e))?;
        self.flush()
    }
}
