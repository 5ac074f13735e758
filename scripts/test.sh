#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and end-to-end tests (which start real
# daemons as root on temporary data roots). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/install-test-peers.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests run the built binaries (berthd, berth), so build them first.
cargo build --workspace --bins
cargo test --workspace
