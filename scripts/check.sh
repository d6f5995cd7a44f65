#!/usr/bin/env bash
# shellcheck disable=SC2016  # single-quoted inner scripts and Dockerfile text are meant literally
# Smoke-check every address in /run/copa-test/env with the real buildctl
# (`debug workers`), the buildx builder with `docker buildx inspect`, and the
# Docker Engine's /grpc upgrade. Run after scripts/up.sh. Exit 1 if any fails.
#   scripts/check.sh          connection checks (a few seconds)
#   scripts/check.sh --build  also run one RUN step through each daemon
#                             (needs 127.0.0.1:5000/library/debian:bookworm;
#                             pushed from the rootfs tarball when missing)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=env.sh
source "$HERE/env.sh"

BUILD=0
[[ ${1:-} == --build ]] && BUILD=1
B=$COPA_TEST_BUILDCTL
TLS=(--tlscacert "$COPA_TEST_TLS_CACERT" --tlscert "$COPA_TEST_TLS_CERT" --tlskey "$COPA_TEST_TLS_KEY")
pass=0 fail=0

check() {
	local what=$1
	shift
	if timeout 60 "$@" >/dev/null 2>"${TMPDIR:-/tmp}/copa-check.err"; then
		echo "ok   $what"
		pass=$((pass + 1))
	else
		echo "FAIL $what: $(tail -n 1 "${TMPDIR:-/tmp}/copa-check.err")"
		fail=$((fail + 1))
	fi
}

addrs=(
	"$COPA_TEST_UNIX_V12" "$COPA_TEST_UNIX_NEW" "$COPA_TEST_TCP_PLAIN"
	"$COPA_TEST_DOCKER_CONTAINER" "$COPA_TEST_DOCKER_CONTAINER_V12"
	"$COPA_TEST_PODMAN_CONTAINER" "$COPA_TEST_NERDCTL_CONTAINER"
	"$COPA_TEST_SSH" "docker-container://buildx_buildkit_copa-builder0"
	"kube-pod://copa-test-pod?context=copa&namespace=default"
)
for a in "${addrs[@]}"; do
	check "$a" env PATH="$COPA_TEST_KUBECTL_DIR:$PATH" "$B" --addr "$a" debug workers
done
check "$COPA_TEST_TCP_TLS (mTLS)" "$B" --addr "$COPA_TEST_TCP_TLS" "${TLS[@]}" debug workers
check "$COPA_TEST_TCP_TLS refuses a client without a certificate" \
	bash -c '! "$1" --addr "$2" --tlscacert "$3" --timeout 5 debug workers' _ \
	"$B" "$COPA_TEST_TCP_TLS" "$COPA_TEST_TLS_CACERT"
check "$COPA_TEST_BUILDX (docker buildx inspect)" \
	env DOCKER_CONFIG="$COPA_TEST_DOCKER_CONFIG" docker buildx inspect "${COPA_TEST_BUILDX#buildx://}"
check "$COPA_TEST_DOCKER (POST /grpc upgrades to h2c)" bash -c \
	'curl -s -m 3 -o /dev/null -D - --unix-socket "${1#docker://unix://}" -X POST \
		-H "Connection: Upgrade" -H "Upgrade: h2c" http://localhost/grpc | grep -q "^HTTP/1.1 101"' _ \
	"$COPA_TEST_DOCKER"
check "registry $COPA_TEST_REGISTRY" curl -fsS -m 5 "http://$COPA_TEST_REGISTRY/v2/"

if ((BUILD)); then
	base=$COPA_TEST_REGISTRY/library/debian:bookworm
	if ! curl -fsS -m 5 -o /dev/null "http://$COPA_TEST_REGISTRY/v2/library/debian/manifests/bookworm"; then
		docker import "$COPA_TEST_ROOTFS_TAR" "$base" >/dev/null
		docker push "$base" >/dev/null
	fi
	ctx=$(mktemp -d)
	# `debian:bookworm` resolves through the docker.io mirror in buildkitd.toml.
	printf 'FROM debian:bookworm\nRUN echo "$(cat /etc/debian_version)" > /v && test -s /v\n' >"$ctx/Dockerfile"
	for a in "${addrs[@]}"; do
		check "$a: build with RUN" env PATH="$COPA_TEST_KUBECTL_DIR:$PATH" "$B" --addr "$a" build \
			--frontend dockerfile.v0 --local context="$ctx" --local dockerfile="$ctx" --no-cache
	done
	rm -rf "$ctx"
fi

echo "check: $pass passed, $fail failed"
((fail == 0))
