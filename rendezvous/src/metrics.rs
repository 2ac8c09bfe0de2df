//! Operator metrics in the Prometheus text format, served at `GET /metrics`: enrollments by
//! outcome, HTTPS refusals by reason, directory look-ups, refusals by reason, connected peers,
//! relay slots and circuits, relay refusals by reason, bytes on p2p connections, and the
//! mailbox (held entries and bytes, deposits, fetches, acknowledgements, expiries, key
//! look-ups, refusals by code).
//! Counts only: no name, no address, nothing a user sent.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use parley_p2p::DirectoryStats;

/// The rendezvous's counters.
#[derive(Debug)]
pub struct Metrics {
    enrollments: Mutex<BTreeMap<&'static str, u64>>,
    https_refusals: Mutex<BTreeMap<&'static str, u64>>,
    tracked_sources: AtomicU64,
    directory: Arc<DirectoryStats>,
}

/// The reasons of `parley_https_refusals_total`, listed even at 0.
const HTTPS_REFUSALS: [&str; 4] = [
    "rate_limited",
    "too_many_connections",
    "server_full",
    "headers_too_large",
];

/// The codes of `parley_mailbox_refusals_total`, listed even at 0.
const MAILBOX_REFUSALS: [&str; 9] = [
    "mailbox_disabled",
    "unknown_user",
    "mailbox_full",
    "mailbox_sender_quota",
    "mailbox_attachment_too_large",
    "mailbox_rate_limited",
    "mailbox_malformed",
    "mailbox_expired",
    "mailbox_unavailable",
];

impl Metrics {
    /// Counters for the HTTPS API, next to the directory's.
    #[must_use]
    pub fn new(directory: Arc<DirectoryStats>) -> Self {
        Self {
            enrollments: Mutex::default(),
            https_refusals: Mutex::new(HTTPS_REFUSALS.iter().map(|r| (*r, 0)).collect()),
            tracked_sources: AtomicU64::new(0),
            directory,
        }
    }

    /// Counts one enrollment request that ended with `outcome` (`issued`, or the error code).
    pub fn enrollment(&self, outcome: &'static str) {
        let mut counts = self
            .enrollments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *counts.entry(outcome).or_default() += 1;
    }

    /// Counts one request or connection the HTTPS listener refused for `reason`
    /// (`rate_limited`, `too_many_connections`, `server_full`, `headers_too_large`).
    pub fn https_refusal(&self, reason: &'static str) {
        let mut counts = self
            .https_refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *counts.entry(reason).or_default() += 1;
    }

    /// Records how many sources the enrollment rate limiter tracks now.
    pub fn tracked_sources(&self, n: usize) {
        self.tracked_sources
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The Prometheus text exposition (version 0.0.4).
    #[must_use]
    pub fn render(&self) -> String {
        let d = self.directory.snapshot();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let enrollments: Vec<(String, u64)> = self
            .enrollments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(outcome, n)| (format!("{{outcome=\"{outcome}\"}}"), *n))
            .collect();
        family(
            "parley_enrollments_total",
            "counter",
            "Enrollment requests by outcome.",
            &enrollments,
        );
        let https_refusals: Vec<(String, u64)> = self
            .https_refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n))
            .collect();
        family(
            "parley_https_refusals_total",
            "counter",
            "HTTPS requests refused by the rate limit or for their head's size, and connections refused over a source's share.",
            &https_refusals,
        );
        family(
            "parley_rate_limit_sources",
            "gauge",
            "Client sources the enrollment rate limiter tracks now.",
            &[(String::new(), self.tracked_sources.load(Ordering::Relaxed))],
        );
        family(
            "parley_lookups_total",
            "counter",
            "Directory look-ups answered.",
            &[(String::new(), d.lookups)],
        );
        family(
            "parley_refusals_total",
            "counter",
            "Directory requests and connections refused, by reason.",
            &[
                ("{reason=\"rate_limited\"}".into(), d.rate_limited),
                ("{reason=\"bad_request\"}".into(), d.refused_requests),
                ("{reason=\"handshake\"}".into(), d.refused_connections),
            ],
        );
        family(
            "parley_connected_peers",
            "gauge",
            "Peers connected to the directory now.",
            &[(String::new(), d.connected_peers)],
        );
        family(
            "parley_online_users",
            "gauge",
            "Users listed as online now.",
            &[(String::new(), d.online_users)],
        );
        family(
            "parley_relay_reservations",
            "gauge",
            "Relay slots held now.",
            &[(String::new(), d.relay_reservations)],
        );
        family(
            "parley_relay_circuits",
            "gauge",
            "Circuits open through the relay now.",
            &[(String::new(), d.relay_circuits)],
        );
        family(
            "parley_relay_circuits_opened_total",
            "counter",
            "Circuits opened through the relay.",
            &[(String::new(), d.relay_circuits_opened)],
        );
        let relay_refusals: Vec<(String, u64)> = d
            .relay_refusals
            .iter()
            .map(|(kind, reason, n)| (format!("{{kind=\"{kind}\",reason=\"{reason}\"}}"), *n))
            .collect();
        family(
            "parley_relay_refusals_total",
            "counter",
            "Relay slots and circuits refused, by kind and reason.",
            &relay_refusals,
        );
        let gauge = |n: u64| [(String::new(), n)];
        family(
            "parley_mailbox_held_entries",
            "gauge",
            "Messages the mailbox holds now.",
            &gauge(d.mailbox_held_entries),
        );
        family(
            "parley_mailbox_held_bytes",
            "gauge",
            "Bytes the mailbox holds now (sealed envelopes and attachment files).",
            &gauge(d.mailbox_held_bytes),
        );
        family(
            "parley_mailbox_deposits_total",
            "counter",
            "Deposits held.",
            &gauge(d.mailbox_deposits),
        );
        family(
            "parley_mailbox_fetches_total",
            "counter",
            "Fetches answered.",
            &gauge(d.mailbox_fetches),
        );
        family(
            "parley_mailbox_acknowledged_total",
            "counter",
            "Held messages deleted on their recipient's acknowledgement.",
            &gauge(d.mailbox_acknowledged),
        );
        family(
            "parley_mailbox_expired_total",
            "counter",
            "Held messages purged at their expiry.",
            &gauge(d.mailbox_expired),
        );
        family(
            "parley_mailbox_key_lookups_total",
            "counter",
            "Key look-ups answered (found or not).",
            &gauge(d.mailbox_key_lookups),
        );
        let mut mailbox_refusals: BTreeMap<&str, u64> =
            MAILBOX_REFUSALS.iter().map(|c| (*c, 0)).collect();
        for (code, n) in &d.mailbox_refusals {
            *mailbox_refusals.entry(code).or_default() += n;
        }
        let mailbox_refusals: Vec<(String, u64)> = mailbox_refusals
            .iter()
            .map(|(code, n)| (format!("{{code=\"{code}\"}}"), *n))
            .collect();
        family(
            "parley_mailbox_refusals_total",
            "counter",
            "Mailbox requests refused, by code.",
            &mailbox_refusals,
        );
        family(
            "parley_p2p_bytes_total",
            "counter",
            "Bytes moved on p2p connections (directory and relay; a relayed byte counts in and out).",
            &[
                ("{direction=\"received\"}".into(), d.bytes_received),
                ("{direction=\"sent\"}".into(), d.bytes_sent),
            ],
        );
        out
    }
}
