//! `GET /metrics` as the operator's guide describes it: exactly the families
//! `docs/operations.md` lists, with the types and label values it names, served where
//! `--metrics` says (the HTTPS port, a plain-HTTP listener of its own, or nowhere).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::https;
use parley_testkit::https::{Answer, parse_answer};
use parley_testkit::{Log, Rendezvous, WAIT};

/// The operator's guide, as checked in.
const OPERATIONS: &str = include_str!("../../docs/operations.md");

/// The metric rows of the guide's tables: `(name, type, the row's text)`.
fn documented() -> Vec<(String, String, String)> {
    OPERATIONS
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `parley_")?;
            let (name, rest) = rest.split_once('`')?;
            let name = format!("parley_{}", name.split('{').next()?);
            let kind = rest.trim_start_matches(" |").split('|').next()?.trim();
            Some((name, kind.to_owned(), line.to_owned()))
        })
        .collect()
}

/// `(name, type)` of every family in a Prometheus text, and every sample line.
fn served(text: &str) -> (BTreeSet<(String, String)>, Vec<String>) {
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    (families, samples)
}

async fn over_https(server: &Rendezvous) -> Answer {
    https(server).raw("GET /metrics HTTP/1.1", b"").await
}

/// One plain-HTTP request to `addr` (`<ip>:<port>`); the answer read until the server closes.
fn plain(addr: &str, head: &str) -> Answer {
    let mut tcp = TcpStream::connect(addr).expect("connect to the metrics listener");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a read timeout");
    write!(tcp, "{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send");
    let mut bytes = Vec::new();
    tcp.read_to_end(&mut bytes).expect("read the answer");
    parse_answer(&bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operations_guide_lists_exactly_the_metrics_served_with_their_label_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start(dir.path(), &[]);
    // Some traffic, so that families whose labels appear with use have samples.
    https(&server)
        .post_json("/v1/enroll", &serde_json::json!({}))
        .await
        .assert_error(400, "invalid_json");
    let answer = over_https(&server).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let (families, samples) = served(&text);

    let rows = documented();
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(|(n, k, _)| (n.clone(), k.clone()))
        .collect();
    assert_eq!(
        listed.len(),
        rows.len(),
        "every metric is listed once in docs/operations.md"
    );
    assert_eq!(
        families, listed,
        "docs/operations.md lists exactly the families GET /metrics serves, with their types"
    );
    // Every label value served is one the guide names in that metric's row.
    for sample in &samples {
        let (name, labels) = match sample.split_once('{') {
            Some((name, rest)) => (name, rest.split('}').next().unwrap_or_default()),
            None => continue,
        };
        let row = &rows
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not documented"))
            .2;
        for pair in labels.split(',') {
            let (label, value) = pair.split_once('=').expect("label=\"value\"");
            let value = value.trim_matches('"');
            assert!(
                row.contains(&format!("{{{label}")) || row.contains(&format!(",{label}")),
                "{name}: the label {label} is not in its row: {row}"
            );
            assert!(
                row.contains(&format!("`{value}`"))
                    || row.contains(&format!("`{label}=\"{value}\"`")),
                "{name}: the value {label}={value} is not named in its row: {row}"
            );
        }
    }
    assert!(
        samples
            .iter()
            .all(|s| !s.contains("alice") && !s.contains("127.0.0.1")),
        "no name or address"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_to_a_plain_listener_of_their_own_or_are_turned_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut moved = Rendezvous::options(&dir.path().join("moved"))
        .args(&["--metrics", "127.0.0.1:0"])
        .env("RUST_LOG", "warn,rustls=error")
        .log(Log::Inherit)
        .start();
    let line = moved.proc().next_line("its `metrics:` line", WAIT);
    let addr = line
        .strip_prefix("metrics: http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("expected `metrics: http://<addr>/metrics`, got {line:?}"))
        .to_owned();
    let answer = plain(&addr, "GET /metrics HTTP/1.1");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        String::from_utf8_lossy(&answer.body).contains("# TYPE parley_enrollments_total counter")
    );
    plain(&addr, "GET /healthz HTTP/1.1").assert_error(404, "not_found");
    plain(&addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0")
        .assert_error(405, "method_not_allowed");
    over_https(&moved).await.assert_error(404, "not_found");
    let health = https(&moved).raw("GET /healthz HTTP/1.1", b"").await;
    assert_eq!(health.status, 200, "the API still serves the rest");

    let off = common::start(&dir.path().join("off"), &["--metrics", "off"]);
    over_https(&off).await.assert_error(404, "not_found");

    let out = std::process::Command::new(parley_testkit::binary("parley-rendezvous"))
        .arg("--data")
        .arg(dir.path().join("bad"))
        .args(["--metrics", "everywhere"])
        .output()
        .expect("run the rendezvous");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--metrics is `https`, `off`, or an address"),
        "{err}"
    );
}
