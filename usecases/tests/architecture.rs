//! The hexagon's walls: `parley-domain` and `parley-usecases` must never depend, even
//! transitively, on a crate that does I/O, owns a runtime or speaks a wire format. Reads the
//! real dependency graph from `cargo metadata`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{collections::HashSet, process::Command};

use serde_json::Value;

/// Crates (or prefixes, ending in `*`) the core must never reach.
const FORBIDDEN: &[&str] = &[
    "tokio*",
    "libp2p*",
    "sled",
    "rustls*",
    "futures-rustls",
    "tokio-rustls",
    "hyper*",
    "tauri*",
    "rcgen",
    "x509-parser",
    "serde_json",
    "opentelemetry*",
    "tracing-subscriber",
    "mio",
    "async-std",
    "reqwest",
    "aws-lc*",
    "ring",
    "argon2",
];

fn forbidden(name: &str) -> bool {
    FORBIDDEN.iter().any(|f| match f.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *f,
    })
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Every crate `root` reaches through normal (not dev, not build) dependencies.
fn normal_closure(meta: &Value, root: &str) -> HashSet<String> {
    let packages = meta["packages"].as_array().unwrap();
    let name_of = |id: &str| {
        packages
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let root_id = packages.iter().find(|p| p["name"] == root).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut seen = HashSet::new();
    let mut stack = vec![root_id];
    let mut names = HashSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        names.insert(name_of(&id));
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        for dep in node["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                stack.push(dep["pkg"].as_str().unwrap().to_owned());
            }
        }
    }
    names
}

fn check(root: &str) {
    let meta = metadata();
    let reached = normal_closure(&meta, root);
    assert!(
        reached.len() > 1,
        "{root} should at least reach its own dependencies"
    );
    let mut bad: Vec<_> = reached.iter().filter(|n| forbidden(n)).cloned().collect();
    bad.sort();
    assert!(
        bad.is_empty(),
        "{root} must not depend on {bad:?}: keep I/O in the adapters"
    );
}

#[test]
fn domain_reaches_no_io_crate() {
    check("parley-domain");
}

#[test]
fn usecases_reach_no_io_crate() {
    check("parley-usecases");
}

#[test]
fn usecases_depend_on_domain_and_nothing_of_ours_beyond() {
    let reached = normal_closure(&metadata(), "parley-usecases");
    let ours: HashSet<_> = reached
        .iter()
        .filter(|n| n.starts_with("parley-"))
        .cloned()
        .collect();
    assert_eq!(
        ours,
        HashSet::from(["parley-usecases".to_owned(), "parley-domain".to_owned()])
    );
}

#[test]
fn the_forbidden_list_catches_what_it_names() {
    // The check above could pass vacuously if the matcher were broken.
    for name in [
        "tokio",
        "tokio-util",
        "libp2p-swarm",
        "sled",
        "rustls",
        "tauri-build",
        "hyper-util",
    ] {
        assert!(forbidden(name), "{name}");
    }
    assert!(!forbidden("thiserror"));
    let adapters = normal_closure(&metadata(), "parley-p2p");
    assert!(
        adapters.iter().any(|n| forbidden(n)),
        "an adapter does reach I/O crates"
    );
}

#[test]
fn adapters_do_not_depend_on_each_other() {
    // Shared code between adapters lives in a crate made for it (`parley-pki`: the certificate
    // policy); the store keeps attachments in the envelope's cipher.
    let meta = metadata();
    for (adapter, allowed) in [
        ("parley-p2p", &["parley-pki"][..]),
        ("parley-enroll", &["parley-pki"]),
        ("parley-store", &["parley-envelope"]),
        ("parley-envelope", &[]),
        ("parley-telemetry", &[]),
        ("parley-pki", &[]),
        ("parley-process", &[]),
    ] {
        let mut others: Vec<_> = normal_closure(&meta, adapter)
            .into_iter()
            .filter(|n| n.starts_with("parley-") && n != adapter)
            .filter(|n| !["parley-domain", "parley-usecases"].contains(&n.as_str()))
            .filter(|n| !allowed.contains(&n.as_str()))
            .collect();
        others.sort();
        assert!(others.is_empty(), "{adapter} must not depend on {others:?}");
    }
}
