#!/usr/bin/env python3
"""Static checks of docker-compose.yml and the Dockerfile, for machines without a Docker engine.

Every service, port, volume and variable the compose file names must exist and fit together,
and every program a container runs must be one the Dockerfile builds. Prints one line per
failed check and 'compose: N passed, M failed'.
"""
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
checks = []


def check(ok, what):
    checks.append((bool(ok), what))


with open(os.path.join(ROOT, "docker-compose.yml")) as f:
    compose = yaml.safe_load(f)
with open(os.path.join(ROOT, "Dockerfile")) as f:
    dockerfile = f.read()

services = compose.get("services", {})
check(set(services) == {"jaeger", "rendezvous", "alice", "bob"}, "services are jaeger, rendezvous, alice, bob")

# The Dockerfile: multi-stage, non-root runtime, builds what the services run.
stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", dockerfile, re.M)
check(len(stages) >= 2, "the Dockerfile is multi-stage")
runtime = dockerfile.split("FROM")[-1]
user = re.search(r"^USER\s+(\S+)", runtime, re.M)
check(user and user.group(1) not in ("root", "0", "root:root", "0:0"), "the runtime stage runs as a non-root user")
check(re.search(r"^RUN\s.*useradd\s[^\n]*\bparley\b", runtime, re.M | re.S) and user and user.group(1) == "parley",
      "the runtime user is made in the image")
check(re.search(r"chmod\s+0?700\s+/data\b", runtime), "the data folder is mode 0700")
health = re.search(r"^HEALTHCHECK\s.*?CMD\s+(.+)$", runtime, re.M | re.S)
check(health and "/healthz" in health.group(1), "the runtime stage has a HEALTHCHECK on /healthz")
check(health and health.group(1).split()[0] in ("curl", "wget") and re.search(r"install[^\n]*\b" + health.group(1).split()[0] + r"\b", runtime),
      "the health check's program is installed in the runtime image")
check("--release" in dockerfile.split("FROM")[1], "the build stage uses the release profile")
built = set(re.findall(r"--bin\s+(\S+)", dockerfile))
installed = {"parley-peer"} if "docker/peer.sh /usr/local/bin/parley-peer" in dockerfile else set()
check(os.access(os.path.join(ROOT, "docker", "peer.sh"), os.X_OK), "docker/peer.sh exists and is executable")
check(built == {"parley", "parley-rendezvous"}, f"the Dockerfile builds parley and parley-rendezvous ({built})")
for name in ("parley", "parley-rendezvous"):
    check(f"target/release/{name}" in dockerfile, f"the Dockerfile copies {name} into the runtime image")
check(os.path.exists(os.path.join(ROOT, "rendezvous", "src", "main.rs")), "the rendezvous binary's source exists")

declared_volumes = set((compose.get("volumes") or {}).keys())
declared_networks = set((compose.get("networks") or {}).keys())
for name, svc in services.items():
    for net in svc.get("networks") or []:
        check(net in declared_networks, f"{name}: network {net} is declared")
    for vol in svc.get("volumes") or []:
        source = vol.split(":")[0]
        check(source in declared_volumes, f"{name}: volume {source} is declared")
    for dep in (svc.get("depends_on") or {}):
        check(dep in services, f"{name}: depends on an existing service {dep}")
    if name == "jaeger":
        continue
    check(svc.get("build") == ".", f"{name}: built from the repository's Dockerfile")
    check("healthcheck" in svc, f"{name}: has a health check")
    command = svc.get("command") or []
    program = command[0] if command else None
    check(program in built | installed, f"{name}: runs a program the image provides ({program})")
    env = svc.get("environment") or {}
    check(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").startswith("http://jaeger:43"), f"{name}: exports traces to jaeger")
    check(env.get("OTEL_EXPORTER_OTLP_PROTOCOL") in ("grpc", "http/protobuf"), f"{name}: names an OTLP protocol")

ports = {p.split(":")[-1] for p in services["jaeger"].get("ports", [])}
check({"16686", "4317", "4318"} <= ports, "jaeger publishes the UI and both OTLP ports")
rv = services["rendezvous"]
rv_args = " ".join(rv["command"])
for flag, port in (("--https=0.0.0.0:", "8443"), ("--p2p=/ip4/0.0.0.0/tcp/", "4001")):
    check(flag + port in rv_args and any(p.endswith(":" + port) for p in rv.get("ports", [])),
          f"the rendezvous listens on and publishes {port}")
announce = re.search(r"--announce=/ip4/([0-9.]+)/tcp/4001", rv_args)
address = rv["networks"]["parley"]["ipv4_address"]
check(announce and announce.group(1) == address, "the rendezvous announces its fixed address")
subnet = compose["networks"]["parley"]["ipam"]["config"][0]["subnet"]
check(address.rsplit(".", 1)[0] == subnet.split("/")[0].rsplit(".", 1)[0], "the fixed address is in the subnet")

with open(os.path.join(ROOT, "docker", "peer.sh")) as f:
    entry = f.read()
for peer in ("alice", "bob"):
    env = services[peer]["environment"]
    for var in ("PARLEY_SERVER", "PARLEY_USER", "PARLEY_PASSWORD", "PARLEY_HOME"):
        check(var in env and var in entry, f"{peer}: {var} is set and used by the entry point")
    check(env.get("PARLEY_USER") == peer, f"{peer}: enrolls as {peer}")
    check(env.get("PARLEY_SERVER", "").startswith("https://rendezvous:8443"), f"{peer}: enrolls at the rendezvous service")

failed = [what for ok, what in checks if not ok]
for what in failed:
    print(f"FAILED: {what}")
print(f"compose: {len(checks) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
