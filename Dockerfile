# A small static image: the musl binary from scripts/release on an empty (scratch) base.
#
#   docker build -t ankisyncd .
#   docker run -d -p 27701:27701 -v ankisyncd-data:/data -e SYNC_USER1=me:secret ankisyncd
#
# The build stage runs on the builder's own architecture and cross-compiles for the image's
# (docker buildx build --platform linux/arm64,linux/arm/v7,linux/amd64 .), so images for a
# Raspberry Pi build at native speed, without emulation.

FROM --platform=$BUILDPLATFORM rust:1-bookworm AS build
ARG TARGETARCH
ARG TARGETVARIANT
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Caches keep the dependencies' builds and the PyPI tools between image builds; the binary is
# copied out of the cache within the same step.
RUN --mount=type=cache,target=/src/target \
    --mount=type=cache,target=/usr/local/cargo/registry \
    case "$TARGETARCH$TARGETVARIANT" in \
        amd64) target=x86_64-unknown-linux-musl ;; \
        arm64|arm64v8) target=aarch64-unknown-linux-musl ;; \
        armv7) target=armv7-unknown-linux-musleabihf ;; \
        *) echo "no release target for $TARGETARCH$TARGETVARIANT" >&2; exit 1 ;; \
    esac \
    && scripts/release "$target" \
    && mkdir -p /out/data /out/tmp \
    && cp "target/$target/dist/ankisyncd" /out/ankisyncd

FROM scratch
COPY --from=build /out/ankisyncd /ankisyncd
# The data folder and a temporary folder (SQLite's, for large sorts) belong to the unprivileged
# user the server runs as; scratch has no /etc/passwd, so the user is a number.
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build --chown=65532:65532 /out/tmp /tmp
USER 65532:65532
WORKDIR /data
# The working directory is the volume: the default database (./ankisyncd.redb) lives there,
# and so does ./ankisyncd.toml, read as the config file when present.
ENV ANKISYNCD_HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 27701
# `ankisyncd healthcheck` asks this server's /health, with the same configuration.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/ankisyncd", "healthcheck"]
ENTRYPOINT ["/ankisyncd"]
CMD ["serve"]
