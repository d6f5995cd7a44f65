#!/usr/bin/env bash
# The main job, end to end: install and start a real BuildKit (and the rest of
# the test environment), build the vulnerable Debian image and its Trivy
# report, build copa, patch the image through BuildKit, and show the package
# versions and layers before and after.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
scripts/up.sh
# shellcheck source=env.sh
source scripts/env.sh

cargo build --release --quiet
copa=target/release/copa
image=$COPA_TEST_IMAGE_HERMETIC
report=$COPA_TEST_HERMETIC_REPORT
patched=${image%:*}:demo-patched
packages=(copa-hello copa-libdemo copa-tool)

versions() {
	docker run --rm "$1" dpkg-query -W -f '  ${Package} ${Version}\n' "${packages[@]}"
	echo "  layers: $(docker image inspect -f '{{len .RootFS.Layers}}' "$1")"
}

echo "== BuildKit"
"$copa" connect --addr "$COPA_TEST_UNIX_NEW"

echo
echo "== $image before"
versions "$image"

echo
echo "== copa patch -i $image -r $report -t demo-patched --addr $COPA_TEST_UNIX_NEW"
"$copa" patch -i "$image" -r "$report" -t demo-patched --addr "$COPA_TEST_UNIX_NEW" --progress plain

echo
echo "== $patched after"
versions "$patched"
