# syntax=docker/dockerfile:1
# sse-bridge: a multi-stage build. The builder compiles the release binary
# with BuildKit caches for the registry and the target directory (so a
# source change rebuilds only the crate, not its ~400 dependencies); the
# runtime is distroless (glibc, CA certificates, no shell), non-root, and
# works with a read-only root filesystem: the bridge writes nothing to disk.
#
#   docker build -t sse-bridge .
#   docker run --read-only -p 8080:8080 -p 50051:50051 \
#     -e SSE_BRIDGE_JWT_SECRET=… sse-bridge
#
# Not built in this project's CI (no registry is reachable there); the
# Dockerfile is linted with hadolint and the runtime contract is tested on
# the release binary (docs/deploy.md says what was and was not exercised).

FROM rust:1.95-slim-bookworm AS builder
# jemalloc, the bridge's allocator, is built from C with make (the slim
# image has gcc but not make).
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# protox compiles proto/ in build.rs: no protoc needed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sse-bridge \
    && install -D -m 0755 target/release/sse-bridge /out/sse-bridge

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/sse-bridge /usr/local/bin/sse-bridge
# Listen on every interface inside the container; everything else comes
# from the environment or a mounted config file (SSE_BRIDGE_CONFIG).
ENV SSE_BRIDGE_HTTP_ADDR=0.0.0.0:8080 \
    SSE_BRIDGE_GRPC_ADDR=0.0.0.0:50051 \
    SSE_BRIDGE_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080 50051
# Distroless has no curl: the binary checks itself (exit 0 when /healthz is 200).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/sse-bridge", "health", "--url", "http://127.0.0.1:8080"]
# SIGTERM drains: /readyz turns 503, streams end with a reconnect hint.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sse-bridge"]
CMD ["serve"]
