#!/usr/bin/env bash
# The whole test suite, as CI runs it on a clean machine (as root): install
# what the tests talk to, start it, then run every test of the host and the
# plugins. A second run skips what is installed and running.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
scripts/up.sh

echo "== plugin unit tests (native)"
cargo test --manifest-path plugins/Cargo.toml --quiet

echo "== copa: unit and integration tests against the real daemons"
cargo test --workspace
