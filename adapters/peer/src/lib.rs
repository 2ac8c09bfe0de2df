//! The running Parley peer: the message store, the libp2p node and the use cases, wired once,
//! behind a typed application API.
//!
//! Three programs drive it: `parley daemon` (over its control socket), `parley-desktop` (over
//! Tauri commands) and the benchmark. They parse what a person typed at their edge (see the
//! parsers in [`error`]), call the same [`Peer`] methods with domain values, and show the same
//! documents ([`view`]) or the same refusals ([`PeerError`], each with its stable code), so a
//! rule changes in one place.
//!
//! This crate also owns what every driver must do alike: the home folder's layout ([`Home`]),
//! where disk work runs ([`blocking`]), and what happens when the store can no longer write
//! ([`Peer::stop_on_store_failure`]). The background work lives here too: storing incoming
//! messages with group commit, retrying the outbox, deleting expired messages, and watching
//! contacts' presence.
#![forbid(unsafe_code)]

mod background;
pub mod error;
mod first_prekeys;
mod home;
mod peer;
pub mod view;

use parley_domain::Timestamp;
use parley_usecases::ports::Clock;

pub use error::PeerError;
pub use first_prekeys::{FirstPrekeysError, publish_first_prekeys};
pub use home::Home;
pub use peer::{Attachment, Config, Outgoing, Peer, Watcher};

/// Runs disk work (`work`) without holding up the async workers: the one rule for every
/// driver. On a multi-threaded tokio runtime the worker hands its other tasks over while
/// `work` runs (`block_in_place`); elsewhere `work` simply runs.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp(ms)
    }

    async fn sleep(&self, duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}
