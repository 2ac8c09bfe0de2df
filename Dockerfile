# Parley's images: one build stage compiles both programs, one small runtime stage runs them
# as an unprivileged user. The rendezvous and the peers (alice, bob) use the same image with
# different commands (see docker-compose.yml). The programs are built with the release profile,
# as scripts/package.sh builds the Debian packages.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin parley --bin parley-rendezvous \
 && cp target/release/parley target/release/parley-rendezvous /usr/local/bin/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /home/parley --create-home parley \
 && mkdir -p /data && chown parley:parley /data && chmod 0700 /data
COPY --from=build /usr/local/bin/parley /usr/local/bin/parley-rendezvous /usr/local/bin/
COPY docker/peer.sh /usr/local/bin/parley-peer
USER parley
WORKDIR /home/parley
# The rendezvous's health: GET /healthz on its HTTPS port. -k: the probe runs on loopback
# inside the container, where the certificate's name cannot match; a peer's service
# (docker-compose.yml) replaces this check with its own.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl --fail --silent --show-error --insecure --max-time 2 https://127.0.0.1:8443/healthz || exit 1
