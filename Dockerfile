# Parley's images: one build stage compiles both programs, one small runtime stage runs them
# as an unprivileged user. The rendezvous and the peers (alice, bob) use the same image with
# different commands (see docker-compose.yml).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin parley --bin parley-rendezvous \
 && cp target/release/parley target/release/parley-rendezvous /usr/local/bin/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /home/parley --create-home parley \
 && mkdir -p /data && chown parley:parley /data
COPY --from=build /usr/local/bin/parley /usr/local/bin/parley-rendezvous /usr/local/bin/
COPY docker/peer.sh /usr/local/bin/parley-peer
USER parley
WORKDIR /home/parley
