#!/usr/bin/env bash
# Stop everything scripts/up.sh started: the buildkitd containers (Docker,
# Podman, nerdctl, the buildx builder), the host buildkitds, sshd, the
# registry, dockerd and containerd (only those up.sh started, by their pid
# files). Keeps the caches, images, volumes, keys and registry data, so
# up.sh afterwards is quick. Removes /run/copa-test/env.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

need_root
T0=$SECONDS
rm -f "$ENV_FILE"

if docker info >/dev/null 2>&1; then
	for c in copa-bk-docker copa-bk-docker-v12 "$BUILDX_CONTAINER"; do
		if docker rm -f "$c" >/dev/null 2>&1; then log "removed docker container $c"; fi
	done
fi
if command -v podman >/dev/null; then
	if podman rm -f -t 5 copa-bk-podman >/dev/null 2>&1; then log "removed podman container copa-bk-podman"; fi
fi
if [[ -x $(nerdctl_bin) ]] && [[ -S /run/containerd/containerd.sock ]] &&
	ctr --address /run/containerd/containerd.sock --connect-timeout 2s version >/dev/null 2>&1; then
	if "$(nerdctl_bin)" --namespace default rm -f copa-bk-nerdctl >/dev/null 2>&1; then
		log "removed nerdctl container copa-bk-nerdctl"
	fi
fi

"$HERE/fixtures.sh" --stop || true
stop_daemon sshd 10
for v in "${BK_VERSIONS[@]}"; do
	stop_daemon "buildkitd-$v" 30
done
stop_daemon registry 10
stop_daemon dockerd 60
stop_daemon containerd 30
log "down done in $((SECONDS - T0))s"
