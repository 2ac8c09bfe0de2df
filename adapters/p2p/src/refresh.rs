//! TLS 1.3 traffic-key refresh on a random timer: every connection's TLS stream is wrapped in
//! [`Refreshing`], which sends a `KeyUpdate` (rustls's `refresh_traffic_keys`) once a deadline
//! drawn uniformly in `[min, max]` has passed, then draws the next one.
//!
//! The update is made in `poll_write`, just before the next application bytes are handed to
//! rustls: rustls queues the `KeyUpdate` ahead of them and encrypts them under the new keys, so
//! no record is ever half written across the change. A connection that writes nothing sends no
//! update until it writes again (pings keep every connection writing every 10 s); and since
//! each update is followed by data, the other side never sees a run of bare updates (rustls
//! refuses more than 32 in a row).

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::{AsyncRead, AsyncWrite};
use futures_rustls::TlsStream;
use tokio::time::Instant;

/// The default interval between two refreshes of a connection's traffic keys: a random time
/// between 30 s and 120 s.
pub const DEFAULT_TLS_REFRESH: (Duration, Duration) =
    (Duration::from_secs(30), Duration::from_secs(120));

/// How often a node's connections refresh their TLS traffic keys, and how many times they did.
/// Cheap to clone: clones share the counter.
#[derive(Debug, Clone)]
pub struct Refresh {
    every: (Duration, Duration),
    count: Arc<AtomicU64>,
}

impl Default for Refresh {
    fn default() -> Self {
        Self::new(DEFAULT_TLS_REFRESH)
    }
}

impl Refresh {
    /// Refreshes every `every.0..=every.1` (a reversed range is read the right way round).
    #[must_use]
    pub fn new(every: (Duration, Duration)) -> Self {
        let (a, b) = every;
        Self {
            every: (a.min(b), a.max(b)),
            count: Arc::default(),
        }
    }

    /// Traffic-key refreshes made so far on every connection sharing this counter.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// A random deadline from now, uniform in the interval.
    fn next_deadline(&self) -> Instant {
        let (min, max) = self.every;
        let span = u64::try_from((max - min).as_nanos()).unwrap_or(u64::MAX);
        let mut bytes = [0u8; 8];
        // Without randomness the deadline falls at the interval's middle: still refreshed.
        let offset = match getrandom::fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes) % span.saturating_add(1),
            Err(_) => span / 2,
        };
        let wait = min.saturating_add(Duration::from_nanos(offset));
        let now = Instant::now();
        // An interval too long to represent means "not in this process's life".
        now.checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
    }

    /// Wraps a connection's TLS stream.
    pub(crate) fn wrap<S>(&self, inner: TlsStream<S>) -> Refreshing<S> {
        Refreshing {
            inner,
            deadline: self.next_deadline(),
            refresh: self.clone(),
        }
    }
}

/// A TLS stream that refreshes its traffic keys on [`Refresh`]'s timer.
#[derive(Debug)]
pub struct Refreshing<S> {
    inner: TlsStream<S>,
    deadline: Instant,
    refresh: Refresh,
}

impl<S> Refreshing<S> {
    /// Sends a `KeyUpdate` if the deadline has passed, and draws the next deadline.
    fn refresh_if_due(&mut self) {
        if Instant::now() < self.deadline {
            return;
        }
        let refreshed = match &mut self.inner {
            TlsStream::Client(s) => s.get_mut().1.refresh_traffic_keys(),
            TlsStream::Server(s) => s.get_mut().1.refresh_traffic_keys(),
        };
        match refreshed {
            Ok(()) => {
                self.refresh.count.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "the TLS traffic keys could not be refreshed"),
        }
        self.deadline = self.refresh.next_deadline();
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Refreshing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Refreshing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if !buf.is_empty() {
            self.refresh_if_due();
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_fall_within_the_interval() {
        let refresh = Refresh::new((Duration::from_millis(400), Duration::from_millis(200)));
        for _ in 0..1000 {
            let now = Instant::now();
            let wait = refresh.next_deadline().saturating_duration_since(now);
            assert!(wait >= Duration::from_millis(199), "{wait:?}");
            assert!(wait <= Duration::from_millis(401), "{wait:?}");
        }
    }

    #[test]
    fn an_empty_interval_is_a_fixed_period() {
        let refresh = Refresh::new((Duration::from_secs(1), Duration::from_secs(1)));
        let wait = refresh
            .next_deadline()
            .saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900));
    }
}
