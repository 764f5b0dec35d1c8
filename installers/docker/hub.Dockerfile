# The Tradecast hub as a container image. Build from the repository root:
#
#   docker build -f installers/docker/hub.Dockerfile -t tradecast-hub .
#   docker run -d --name hub -p 7480:7480/tcp -p 7480:7480/udp -v tradecast-hub:/data \
#     -e TRADECAST_HUB_LISTEN=0.0.0.0:7480 tradecast-hub
#
# The hub binds loopback unless told otherwise (ARCHITECTURE.md); in a container it must listen
# on the container's interface, hence TRADECAST_HUB_LISTEN above (the QUIC endpoint follows the
# HTTP address over UDP unless `quic_listen` says otherwise). For production add
# `--production`, a PostgreSQL URL (TRADECAST_HUB_DATABASE_URL) and real secrets
# (TRADECAST_HUB_SECRET_*_FILE pointing at mounted files): hub/README.md lists every setting.
# Not built here: this machine has no Docker engine.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the hub needs; the desktop crate (GTK/WebKit) is not a default member.
COPY Cargo.toml Cargo.lock ./
COPY protocol protocol
COPY node node
COPY hub hub
COPY desktop desktop
COPY ea-sdk ea-sdk
COPY migrations migrations
COPY src src
COPY tests tests
COPY testdata testdata
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang \
    && rm -rf /var/lib/apt/lists/*
RUN cargo build --profile dist -p tradecast-hub --bin tradecast-hub

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data --shell /usr/sbin/nologin tradecast-hub \
    && mkdir -p /data && chown tradecast-hub /data
COPY --from=build /src/target/dist/tradecast-hub /usr/local/bin/tradecast-hub
USER tradecast-hub
VOLUME /data
EXPOSE 7480/tcp 7480/udp
ENTRYPOINT ["/usr/local/bin/tradecast-hub"]
CMD ["serve", "--data", "/data"]
