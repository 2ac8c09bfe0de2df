//! The rendezvous under test and a raw HTTPS client of it, pinned to its CA with the
//! enrollment client's own verifier.

use std::path::Path;
use std::sync::Arc;

use parley_domain::CaFingerprint;
use parley_enroll::verifier::PinnedCa;
use parley_testkit::{Log, Rendezvous, https::Client};

/// The binary on `data` with free ports and `extra` arguments, its warnings on stderr.
pub fn start(data: &Path, extra: &[&str]) -> Rendezvous {
    Rendezvous::options(data)
        .args(extra)
        .env("RUST_LOG", "warn,rustls=error")
        .log(Log::Inherit)
        .start()
}

/// TLS 1.3 to `server`, pinned to its CA.
pub fn https(server: &Rendezvous) -> Client {
    let fingerprint = CaFingerprint::parse(&server.fingerprint).expect("a valid fingerprint line");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedCa::new(Some(fingerprint), provider.clone()));
    Client::new(&server.addr, verifier, provider)
}
