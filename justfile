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

# A real client's full sync of a 100k-note collection through nginx and Caddy, configured
# from deploy/ (needs: apt-get install -y nginx-light caddy).
proxy-test:
    cargo bench --bench behind_proxy
