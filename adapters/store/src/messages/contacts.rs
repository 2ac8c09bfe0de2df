//! [`Contacts`] on the `contacts` tree: pinned keys, and keys waiting for the user.

use parley_domain::{Contact, Username};
use parley_usecases::ports::{Contacts, StoreError};

use crate::records::{decode_contact, encode_contact};
use crate::{Store, unavailable};

impl Contacts for Store {
    #[tracing::instrument(name = "store.contact", level = "debug", skip_all, fields(%user), err(Display))]
    fn contact(&self, user: &Username) -> Result<Option<Contact>, StoreError> {
        let ckey = self.name(user);
        match self.contacts.get(ckey) {
            Ok(Some(value)) => {
                decode_contact(&self.keys.open_value("contacts", &ckey, &value)?).map(Some)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable("read a contact", e)),
        }
    }

    #[tracing::instrument(name = "store.save_contact", level = "debug", skip_all, fields(user = %contact.user), err(Display))]
    fn save_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        let ckey = self.name(&contact.user);
        let value = self
            .keys
            .seal_value("contacts", &ckey, &encode_contact(contact)?)?;
        self.contacts
            .insert(ckey, value)
            .map_err(|e| unavailable("save a contact", e))?;
        self.flush()
    }
}
