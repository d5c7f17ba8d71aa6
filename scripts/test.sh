#!/usr/bin/env bash
# The whole test suite: the clients it drives, formatting, lints, then every test of the
# workspace. RILL_SLOW=1 runs the long versions (200 crash rounds, more property cases).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
