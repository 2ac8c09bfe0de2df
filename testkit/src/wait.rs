//! Waiting for a condition, with a bound that fails the test with a message.

use std::time::{Duration, Instant};

/// The bound of every wait that does not say otherwise.
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` every 200 ms until it holds, for up to [`WAIT`].
///
/// # Panics
/// "timed out waiting for `what`" when it does not hold in time.
pub fn wait_for(what: &str, check: impl FnMut() -> bool) {
    wait_within(what, WAIT, check);
}

/// [`wait_for`] with the bound `limit`.
///
/// # Panics
/// When `check` does not hold within `limit`.
pub fn wait_within(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}
