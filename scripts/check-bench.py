#!/usr/bin/env python3
"""Checks the JSON of `parley-bench --quick --json`: one object, the ratios and the raw figures
present, every figure a finite positive number (the mailbox's memory per held entry may be 0:
resident memory moves in pages, and held entries are on disk). The figures themselves are not judged
here (a debug build on a shared machine); docs/performance.md holds a release run."""
import json
import math
import sys

RATIOS = ["latency_ratio", "throughput_ratio", "connect_ratio", "bulk_ratio", "crypto_ratio",
          "mailbox_deposit_ratio", "mailbox_fetch_ratio", "offline_to_delivered"]
FIGURES = [
    "/latency/parley_p50_ms", "/latency/parley_p99_ms", "/latency/durable_echo_p50_ms",
    "/latency/stock_libp2p_p50_ms", "/throughput/parley_messages_per_s",
    "/throughput/fdatasync_per_s", "/connect/parley_p50_ms", "/connect/tls_durable_echo_p50_ms",
    "/bulk/parley_mib_per_s", "/bulk/tls_mib_per_s", "/crypto/seal_us", "/crypto/open_us",
    "/crypto/primitives_seal_us", "/crypto/primitives_open_us",
    "/rendezvous/enrollments_per_s", "/rendezvous/lookups_per_s", "/rendezvous/rss_idle_mib",
    "/memory/idle_daemon_rss_mib",
    "/mailbox/deposits_per_s", "/mailbox/deposit_busy_cores", "/mailbox/fetch_per_s",
    "/mailbox/fdatasync_per_s", "/mailbox/held", "/mailbox/rss_empty_mib",
    "/mailbox/rss_held_mib",
]
# Finite and not negative.
NOT_NEGATIVE = ["/mailbox/rss_per_held_entry_bytes"]


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
    for key in RATIOS + FIGURES + NOT_NEGATIVE:
        try:
            value = doc[key] if not key.startswith("/") else pointer(doc, key)
        except (KeyError, TypeError):
            failures.append(f"{key} is missing")
            continue
        least_ok = 0 if key in NOT_NEGATIVE else None
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value)
                or (value < 0 if least_ok == 0 else value <= 0)):
            kind = "not negative" if least_ok == 0 else "positive"
            failures.append(f"{key} is {value!r}, not a finite {kind} number")
    try:
        times = pointer(doc, "/mailbox/offline_to_delivered_ms")
    except (KeyError, TypeError):
        times = None
    if not isinstance(times, list) or not times or not all(
            isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for t in times):
        failures.append(f"/mailbox/offline_to_delivered_ms is {times!r}, not a list of "
                        "finite positive numbers")
    for failure in failures:
        print(f"bench json: {failure}", file=sys.stderr)
    print(f"bench json: {len(RATIOS) + len(FIGURES) + len(NOT_NEGATIVE) + 1 - len(failures)} "
          f"figures checked, "
          f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
