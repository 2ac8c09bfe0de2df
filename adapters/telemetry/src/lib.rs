//! Logging for Parley's binaries: readable lines by default, one JSON object per line with
//! `--log-format json`, always on stderr (stdout carries the contract's lines), `RUST_LOG`
//! respected.
//!
//! **Architecture invariant:** this crate decides where records go, never what they say; no
//! message text, password or key is ever handed to it (the types that hold them redact their
//! `Debug`, and the code logs ids, names and sizes only).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log records are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for collectors.
    Json,
}

/// Installs the global subscriber: `RUST_LOG` when set (and valid), else `default_filter`.
/// Call once, first thing in `main`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
