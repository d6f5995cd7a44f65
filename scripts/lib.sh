# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings and helpers for scripts/setup.sh, scripts/up.sh and
# scripts/down.sh. Sourced, never executed. Everything here must be safe to
# source more than once.

# ---- versions (the docs name v0.12.4; v0.34.2 is the newest release) -------
BK_OLD=v0.12.4
BK_NEW=v0.34.2
BUILDX_VERSION=v0.38.2
NERDCTL_VERSION=v2.1.3
BK_VERSIONS=("$BK_OLD" "$BK_NEW")

# ---- paths ------------------------------------------------------------------
CACHE=/var/cache/copa            # survives between runs, outside the repo
GO_PREFIX=$CACHE/go              # <name>-<version>/ per Go program
ROOTFS_DIR=$CACHE/rootfs
ROOTFS_TAR=$ROOTFS_DIR/bookworm-minbase.tar
RUN_DIR=/run/copa-test           # sockets, pid files, the env file
STATE=/var/lib/copa-test         # daemon roots, keys, certificates
LOG_DIR=/var/log/copa-test
ENV_FILE=$RUN_DIR/env
DEBIAN_MIRROR=${COPA_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# ---- fixed loopback ports ---------------------------------------------------
PORT_TCP_TLS=28443    # newest buildkitd, mTLS
PORT_TCP_PLAIN=28080  # v0.12.4 buildkitd, no TLS
PORT_SSH=28022
PORT_REGISTRY=5000

IMAGE_REPO=copa-test/buildkit
BUILDX_BUILDER=copa-builder
BUILDX_NODE=${BUILDX_BUILDER}0
BUILDX_CONTAINER=buildx_buildkit_$BUILDX_NODE
DOCKER_CONFIG_DIR=$RUN_DIR/docker-config

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin:/root/.cargo/bin:$PATH

bk_dir() { echo "$GO_PREFIX/buildkit-$1"; }
bk_sock() { echo "$RUN_DIR/buildkit-$1.sock"; }
bk_image() { echo "$IMAGE_REPO:$1"; }
buildctl_new() { echo "$(bk_dir "$BK_NEW")/buildctl"; }
nerdctl_bin() { echo "$GO_PREFIX/nerdctl-$NERDCTL_VERSION/nerdctl"; }
buildx_bin() { echo "$GO_PREFIX/buildx-$BUILDX_VERSION/buildx"; }

log() { printf '[copa-test %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() {
	[[ $(id -u) -eq 0 ]] || die "must run as root"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND... : poll COMMAND until it
# succeeds; fail after the timeout. The only synchronisation used for
# readiness.
wait_for() {
	local what=$1 timeout=$2
	shift 2
	local deadline=$((SECONDS + timeout)) delay=0.1
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "timed out after ${timeout}s waiting for $what"
			return 1
		fi
		sleep "$delay"
		# back off gently: 0.1 0.2 0.4 0.5 0.5 ...
		case $delay in 0.1) delay=0.2 ;; 0.2) delay=0.4 ;; *) delay=0.5 ;; esac
	done
}

# wait_gone PID TIMEOUT: wait for a process to exit.
wait_gone() {
	local pid=$1 timeout=$2
	local deadline=$((SECONDS + timeout))
	while kill -0 "$pid" 2>/dev/null; do
		((SECONDS >= deadline)) && return 1
		sleep 0.1
	done
}

# pid_alive PIDFILE: the pid file exists and names a live process.
pid_alive() {
	local f=$1 pid
	[[ -s $f ]] || return 1
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# start_daemon NAME COMMAND...: start COMMAND in its own session, detached
# from this shell, output to $LOG_DIR/NAME.log, pid to $RUN_DIR/NAME.pid.
start_daemon() {
	local name=$1
	shift
	mkdir -p "$LOG_DIR" "$RUN_DIR"
	# setsid execs in place (a background job is no group leader), so $! is
	# the daemon's own pid.
	setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
	echo $! >"$RUN_DIR/$name.pid"
	log "started $name (pid $!, log $LOG_DIR/$name.log)"
}

# stop_daemon NAME [TIMEOUT]: TERM the pid in $RUN_DIR/NAME.pid, KILL after
# the timeout.
stop_daemon() {
	local name=$1 timeout=${2:-20} f pid
	f=$RUN_DIR/$name.pid
	if pid_alive "$f"; then
		pid=$(<"$f")
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_gone "$pid" "$timeout"; then
			log "$name (pid $pid) did not stop in ${timeout}s; killing"
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" 5 || true
		fi
		log "stopped $name"
	fi
	rm -f "$f"
}

# tcp_listening PORT: something listens on 127.0.0.1:PORT.
tcp_listening() {
	ss -Hltn "sport = :$1" | grep -q .
}

# Image label that records what an image was built from, so a changed input
# rebuilds it and an unchanged one is skipped.
IMAGE_LABEL=org.copa-test.inputs

# image_inputs VERSION: a short fingerprint of what goes into the buildkit
# image of that version (binaries, runc, rootfs, config, this recipe).
image_inputs() {
	local v=$1 d
	d=$(bk_dir "$v")
	{
		echo "recipe-3"
		stat -c '%n %s %Y' "$d/buildkitd" "$d/buildctl" /usr/sbin/runc "$ROOTFS_TAR"
		buildkitd_toml_container
	} | sha256sum | cut -c1-16
}

# buildkitd.toml shared by every buildkitd: plain HTTP to the loopback
# registry, which also mirrors docker.io so that `debian:12-slim` resolves to
# 127.0.0.1:5000/library/debian:12-slim when pushed there.
buildkitd_toml_common() {
	cat <<EOF
[registry."127.0.0.1:$PORT_REGISTRY"]
  http = true
  insecure = true

[registry."localhost:$PORT_REGISTRY"]
  http = true
  insecure = true

[registry."docker.io"]
  mirrors = ["127.0.0.1:$PORT_REGISTRY"]

[worker.containerd]
  enabled = false
EOF
}

# The config baked into the buildkit images (containers use host networking).
buildkitd_toml_container() {
	buildkitd_toml_common
	cat <<EOF

[worker.oci]
  enabled = true
  networkMode = "host"
EOF
}
