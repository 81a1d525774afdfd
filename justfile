# Optional shortcuts; every recipe is a plain cargo command or script you can run yourself.

# Run the server with one user (me / secret) on 127.0.0.1:27701.
run:
    SYNC_USER1=me:secret cargo run --release

# Every test, including the real-client end-to-end tests.
test:
    cargo test

# What CI runs.
ci:
    bash .ci/run

fmt:
    cargo fmt --all

lint:
    cargo clippy --all-targets -- -D warnings

# Optimised binary at target/release/ankisyncd.
build:
    cargo build --release

# A real client's full sync of a 100k-note collection through nginx and Caddy, configured
# from deploy/ (needs: apt-get install -y nginx-light caddy).
proxy-test:
    cargo bench --bench behind_proxy

# Static Linux binaries (x86_64, aarch64, armv7) in target/release-artifacts/: scripts/release.
release *targets:
    scripts/release {{targets}}

# The aarch64 release binary under qemu user emulation, synced by the real Anki client.
smoke-aarch64:
    scripts/smoke-release aarch64-unknown-linux-musl

# The same for the armv7 (32-bit Raspberry Pi OS) binary.
smoke-armv7:
    scripts/smoke-release armv7-unknown-linux-musleabihf

# The same smoke test on the x86_64 release binary, natively: the reference figures.
smoke-x86_64:
    scripts/smoke-release x86_64-unknown-linux-musl

# Every benchmark, one after the other (benches/README.md): criterion micro-benchmarks, then
# full sync, media sync and load against the official server. Takes tens of minutes.
bench:
    cargo bench --bench micro
    cargo bench --bench full_sync
    cargo bench --bench media_sync
    cargo bench --bench load
