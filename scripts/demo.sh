#!/usr/bin/env bash
# The main job, end to end: install and start real BuildKit daemons, build
# copa, and connect to BuildKit through several address schemes, showing the
# version, workers, MergeOp/DiffOp support and timings of each.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
scripts/up.sh
# shellcheck source=env.sh
source scripts/env.sh

cargo build --release --quiet
copa=target/release/copa

echo "== plugins"
"$copa" plugin list

show() {
	echo
	echo "== copa connect --addr $1"
	"$copa" connect --addr "$@"
}

show "$COPA_TEST_UNIX_V12"
show "$COPA_TEST_UNIX_NEW"
show "$COPA_TEST_TCP_TLS" --cacert "$COPA_TEST_TLS_CACERT" --cert "$COPA_TEST_TLS_CERT" --key "$COPA_TEST_TLS_KEY"
show "$COPA_TEST_DOCKER"
show "$COPA_TEST_DOCKER_CONTAINER"
show "$COPA_TEST_PODMAN_CONTAINER"
show "$COPA_TEST_NERDCTL_CONTAINER"
show "$COPA_TEST_SSH"
DOCKER_CONFIG=$COPA_TEST_DOCKER_CONFIG show "$COPA_TEST_BUILDX"
