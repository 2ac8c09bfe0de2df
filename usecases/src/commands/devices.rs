//! Which of a user's devices a message goes to.
//!
//! The directory lists every device of a name online (the newest publication first), and
//! until a user's devices vouch for each other, a user has one trusted set of keys: the ones
//! pinned at first contact (or last accepted with `trust`). So a message to a contact goes to
//! the device whose device key is the pinned one; a device with other keys is chosen only when
//! no listed device has the pinned key, and then the delivery meets the key change exactly as
//! it always did (refused at the handshake, held for the user's decision). Someone never met
//! has no pinned keys: the newest publication is chosen, deterministically.

use parley_domain::{PeerKeys, Username};

use super::Messaging;
use crate::ports::{
    AttachmentFiles, Clock, DeviceAddress, Directory, DirectoryError, Envelopes, EventSink,
    Mailbox, MessageStore, PrekeySecrets, PrekeyService, Transport,
};

/// The device to write to among `devices` (the newest publication first): the first with the
/// `pinned` device key, else the newest.
pub(super) fn choose<A: DeviceAddress>(devices: Vec<A>, pinned: Option<&PeerKeys>) -> Option<A> {
    let at = pinned
        .and_then(|keys| devices.iter().position(|d| d.has_device_key(keys)))
        .unwrap_or(0);
    devices.into_iter().nth(at)
}

impl<S, D, T, C, E, V, M> Messaging<S, D, T, C, E, V, M>
where
    S: MessageStore + AttachmentFiles + PrekeySecrets,
    D: Directory,
    T: Transport<Address = D::Address>,
    C: Clock,
    E: EventSink,
    V: Envelopes,
    M: Mailbox + PrekeyService,
{
    /// Where to write to `to`, whose keys are `pinned` (if met): a device holding the pinned
    /// device key that this node is connected to now, without asking the rendezvous; else the
    /// directory's choice ([`choose`]). `Ok(None)` when the directory lists no device.
    ///
    /// # Errors
    /// [`DirectoryError`] when the rendezvous had to be asked and could not answer.
    pub(super) async fn locate(
        &self,
        to: &Username,
        pinned: Option<&PeerKeys>,
    ) -> Result<Option<D::Address>, DirectoryError> {
        if let Some(keys) = pinned
            && let Some(at) = self
                .transport
                .connected(to)
                .await
                .into_iter()
                .find(|d| d.has_device_key(keys))
        {
            return Ok(Some(at));
        }
        Ok(choose(self.directory.lookup(to).await?, pinned))
    }
}
