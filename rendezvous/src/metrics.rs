//! Operator metrics in the Prometheus text format, served at `GET /metrics`: enrollments by
//! outcome, directory look-ups, refusals by reason, connected peers. Counts only: no name, no
//! address, nothing a user sent.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Arc, Mutex, PoisonError},
};

use parley_p2p::DirectoryStats;

/// The rendezvous's counters.
#[derive(Debug)]
pub struct Metrics {
    enrollments: Mutex<BTreeMap<&'static str, u64>>,
    directory: Arc<DirectoryStats>,
}

impl Metrics {
    /// Counters for the HTTPS API, next to the directory's.
    #[must_use]
    pub fn new(directory: Arc<DirectoryStats>) -> Self {
        Self {
            enrollments: Mutex::default(),
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
        out
    }
}
