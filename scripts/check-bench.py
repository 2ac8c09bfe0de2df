#!/usr/bin/env python3
"""Checks the JSON of `parley-bench --quick --json`: one object, the five ratios and the raw
figures present, every figure a finite positive number. The figures themselves are not judged
here (a debug build on a shared machine); docs/performance.md holds a release run."""
import json
import math
import sys

RATIOS = ["latency_ratio", "throughput_ratio", "connect_ratio", "bulk_ratio", "crypto_ratio"]
FIGURES = [
    "/latency/parley_p50_ms", "/latency/parley_p99_ms", "/latency/durable_echo_p50_ms",
    "/latency/stock_libp2p_p50_ms", "/throughput/parley_messages_per_s",
    "/throughput/fdatasync_per_s", "/connect/parley_p50_ms", "/connect/tls_durable_echo_p50_ms",
    "/bulk/parley_mib_per_s", "/bulk/tls_mib_per_s", "/crypto/seal_us", "/crypto/open_us",
    "/crypto/primitives_seal_us", "/crypto/primitives_open_us",
    "/rendezvous/enrollments_per_s", "/rendezvous/lookups_per_s", "/rendezvous/rss_idle_mib",
    "/memory/idle_daemon_rss_mib",
]


def pointer(doc, path):
    for part in path.strip("/").split("/"):
        doc = doc[part]
    return doc


def main(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    doc = json.loads(text)
    assert isinstance(doc, dict), "the output is one JSON object"
    failures = []
    for key in RATIOS + FIGURES:
        try:
            value = doc[key] if not key.startswith("/") else pointer(doc, key)
        except (KeyError, TypeError):
            failures.append(f"{key} is missing")
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            failures.append(f"{key} is {value!r}, not a finite positive number")
    for failure in failures:
        print(f"bench json: {failure}", file=sys.stderr)
    print(f"bench json: {len(RATIOS) + len(FIGURES) - len(failures)} figures checked, "
          f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
