#!/usr/bin/env bash
# Benchmark (not a test): for each address scheme, `copa connect` against
# `buildctl --addr X debug workers` on the same daemon, run alternately, and
# the cost of resolving an address through a plugin with a cold and a warm
# compilation cache. Prints medians and ratios.
#
#   scripts/bench.sh [RUNS]        (default 9 runs per command and address)
#
# Needs the daemons of scripts/up.sh and a release build of copa.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${1:-9}

# shellcheck source=env.sh
source scripts/env.sh
cargo build --release --quiet
copa=$PWD/target/release/copa
buildctl=$COPA_TEST_BUILDCTL
export COPA_CACHE_DIR=/var/cache/copa/bench-plugin-cache

now_ns() { date +%s%N; }

# time_ms CMD...: wall time of one run in milliseconds (output discarded).
time_ms() {
	local start end
	start=$(now_ns)
	"$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
	end=$(now_ns)
	echo $(((end - start) / 1000))
}

median() { python3 -c 'import statistics,sys; v=[int(x)/1000 for x in sys.argv[1:]]; print(f"{statistics.median(v):.1f}")' "$@"; }

tls=(--cacert "$COPA_TEST_TLS_CACERT" --cert "$COPA_TEST_TLS_CERT" --key "$COPA_TEST_TLS_KEY")
btls=(--tlscacert "$COPA_TEST_TLS_CACERT" --tlscert "$COPA_TEST_TLS_CERT" --tlskey "$COPA_TEST_TLS_KEY")
kube_path="$COPA_TEST_KUBECTL_DIR:$PATH"

# name | address | extra copa flags | extra buildctl flags | env [| buildctl address]
cases=(
	"unix-v0.12.4|$COPA_TEST_UNIX_V12|||"
	"unix-v0.34.2|$COPA_TEST_UNIX_NEW|||"
	"tcp-mtls|$COPA_TEST_TCP_TLS|tls|tls|"
	"docker-container|$COPA_TEST_DOCKER_CONTAINER|||"
	"podman-container|$COPA_TEST_PODMAN_CONTAINER|||"
	"nerdctl-container|$COPA_TEST_NERDCTL_CONTAINER|||"
	"ssh|$COPA_TEST_SSH|||"
	"buildx (buildctl: the builder's container)|$COPA_TEST_BUILDX|||DOCKER_CONFIG=$COPA_TEST_DOCKER_CONFIG|docker-container://buildx_buildkit_copa-builder0"
	"kubepod (stand-in kubectl)|kube-pod://buildkitd-0|||PATH=$kube_path"
	"docker (engine, copa only)|$COPA_TEST_DOCKER|||"
)

printf '%-28s %12s %12s %8s\n' "address" "copa ms" "buildctl ms" "ratio"
for case in "${cases[@]}"; do
	IFS='|' read -r name addr cflags bflags envs baddr <<<"$case"
	cargs=(connect --addr "$addr")
	bargs=(--addr "${baddr:-$addr}" debug workers)
	[[ $cflags == tls ]] && cargs+=("${tls[@]}")
	[[ $bflags == tls ]] && bargs=("${btls[@]}" "${bargs[@]}")
	envv=()
	[[ -n $envs ]] && envv=("$envs")
	copa_t=() bk_t=()
	"$copa" "${cargs[@]}" >/dev/null 2>&1 || true # warm the plugin cache
	for ((i = 0; i < RUNS; i++)); do
		copa_t+=("$(time_ms env "${envv[@]}" "$copa" "${cargs[@]}")")
		if [[ $name != docker\ * ]]; then
			bk_t+=("$(time_ms env "${envv[@]}" "$buildctl" "${bargs[@]}")")
		fi
	done
	cm=$(median "${copa_t[@]}")
	if ((${#bk_t[@]})); then
		bm=$(median "${bk_t[@]}")
		ratio=$(python3 -c "print(f'{$cm/$bm:.2f}')")
	else
		bm="-" ratio="-"
	fi
	printf '%-28s %12s %12s %8s\n' "$name" "$cm" "$bm" "$ratio"
done
echo "(copa connect also runs the capability probe, a gateway build with a session, which buildctl debug workers does not)"

echo
echo "plugin resolve (copa resolve --addr ssh://build-host/run/bk.sock, whole process)"
cold=() warm=()
for ((i = 0; i < RUNS; i++)); do
	rm -rf "$COPA_CACHE_DIR"
	cold+=("$(time_ms "$copa" resolve --addr ssh://build-host/run/bk.sock)")
	warm+=("$(time_ms "$copa" resolve --addr ssh://build-host/run/bk.sock)")
done
printf '  cold cache (compile to native code): %s ms\n' "$(median "${cold[@]}")"
printf '  warm cache (deserialize + call):     %s ms\n' "$(median "${warm[@]}")"
nat=()
for ((i = 0; i < RUNS; i++)); do
	nat+=("$(time_ms "$copa" resolve --addr unix:///run/bk.sock)")
done
printf '  native unix:// (no plugin):          %s ms\n' "$(median "${nat[@]}")"
inproc=()
for ((i = 0; i < RUNS; i++)); do
	inproc+=("$("$copa" connect --json --addr "$COPA_TEST_SSH" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["timings_ms"]["resolve"]*1000))')")
done
printf '  in-process resolve step, warm (ssh):  %s ms\n' "$(median "${inproc[@]}")"
