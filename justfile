# Optional shortcuts; every recipe is a plain cargo command you can run yourself.

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

# Every benchmark, one after the other (benches/README.md): criterion micro-benchmarks, then
# full sync, media sync and load against the official server. Takes tens of minutes.
bench:
    cargo bench --bench micro
    cargo bench --bench full_sync
    cargo bench --bench media_sync
    cargo bench --bench load
