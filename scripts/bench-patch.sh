#!/usr/bin/env bash
# Benchmark (not a test): `copa patch` against Copacetic v0.14.2's own
# `copa patch` on the same daemon, image and report, in alternating runs.
# Prints medians and ratios (copa / Copacetic) and flags the aims:
# wall <= 0.8x, client CPU <= 0.25x, copa peak RSS <= 40 MB and flat as the
# image grows.
#
#   scripts/bench-patch.sh [RUNS]       (default 5 timed runs per tool and case)
#
# Environment: COPA_BENCH_COLD=N cold runs per tool after pruning the daemon's
# cache (default 3, 0 skips), COPA_BENCH_PROGRESS (default plain, both tools),
# COPA_BENCH_TIMER=wait4|time (default wait4, see below), COPA_BENCH_KEEP=1
# leaves the private buildkitd running afterwards.
#
# Needs the registry, Docker and the apt repository of scripts/up.sh (with
# its fixtures). Everything else it sets up itself, idempotently, cached:
#   - Debian's `time`. /usr/bin/time -f '%e %U %S %M' prints CPU times in
#     10 ms steps, coarse against copa's ~0.1 s, so by default the same kernel
#     numbers (wait4's rusage of the client: user and system CPU, peak RSS)
#     are taken at microsecond resolution by a small Python launcher that
#     posix_spawns the client (no forked copy of itself to inflate the
#     child's peak RSS); COPA_BENCH_TIMER=time uses /usr/bin/time instead
#   - Copacetic v0.14.2 in /var/cache/copa/go/copacetic-v0.14.2/copa (built
#     from the Go module proxy: `go install` first, else `go mod download` and
#     `go build` in a copy, as scripts/setup.sh does for buildkit)
#   - a private buildkitd v0.34.2 (host network, unix socket
#     /run/copa-bench/buildkitd.sock, state and config under /var/lib/copa-bench),
#     started here and stopped on exit; its config mirrors ghcr.io and
#     docker.io to the local registry
#   - Copacetic's dpkg tooling image, which it resolves as
#     ghcr.io/project-copacetic/copacetic/debian:<12|stable>-slim (then
#     docker.io/library/debian:...): the test base plus busybox-static, with apt
#     pointed at the local fixture repository (Copacetic runs an uncached
#     `apt-get update` in it on every patch; this keeps that step hermetic
#     and cheap), pushed to 127.0.0.1:5000/project-copacetic/copacetic/debian
#   - 127.0.0.1:5000/copa-test/hermetic-big:1: the hermetic image plus a
#     ~60 MB random-data layer (about twice the exported bytes)
#
# What is measured, per run, of the client process alone: wall time, user+sys
# CPU, peak RSS. Each tool is primed once per image (so both patch against a
# warm BuildKit cache), then RUNS alternating timed runs (ABBA order) load the
# result into Docker (both tools' default). Export throughput: the same runs
# against a stand-in Docker Engine socket that times the image-load body from
# first to last byte and throws it away, against a raw unix-socket copy of the
# same bytes. Results also go to /var/lib/copa-bench/results/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

need_root
RUNS=${1:-5}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "usage: $0 [RUNS]"
COLD=${COPA_BENCH_COLD:-3}
TIMER=${COPA_BENCH_TIMER:-wait4}
case $TIMER in wait4 | time) ;; *) die "COPA_BENCH_TIMER must be wait4 or time" ;; esac
PROGRESS=${COPA_BENCH_PROGRESS:-plain}

COPACETIC_VERSION=v0.14.2
COPACETIC_MODULE=github.com/project-copacetic/copacetic
COPACETIC_DIR=$GO_PREFIX/copacetic-$COPACETIC_VERSION
COPACETIC=$COPACETIC_DIR/copa
COPA=$REPO/target/release/copa

BENCH_STATE=/var/lib/copa-bench
BENCH_RUN=/run/copa-bench
BENCH_LOG=$LOG_DIR/bench
BK_SOCK=$BENCH_RUN/buildkitd.sock
BK_ADDR=unix://$BK_SOCK
BK_PID=$BENCH_RUN/buildkitd.pid
SINK_SOCK=$BENCH_RUN/engine.sock
SINK_PID=$BENCH_RUN/engine-sink.pid
BUILDCTL=$(buildctl_new)
BUILDKITD=$(bk_dir "$BK_NEW")/buildkitd
REGISTRY=127.0.0.1:$PORT_REGISTRY
TOOL_REPO=project-copacetic/copacetic/debian
TOOL_TAGS=(stable-slim 12-slim)
BIG_REPO=copa-test/hermetic-big
BIG_TAG=1
BIG_MB=60

mkdir -p "$BENCH_STATE/results" "$BENCH_RUN" "$BENCH_LOG"
exec 8>"$BENCH_RUN/bench.lock"
flock -n 8 || die "another scripts/bench-patch.sh is running"

[[ -f $ENV_FILE ]] || die "$ENV_FILE missing: run scripts/up.sh"
# shellcheck disable=SC1090
source "$ENV_FILE"
[[ -n ${COPA_TEST_IMAGE_HERMETIC:-} && -n ${COPA_TEST_APT_REPO:-} ]] ||
	die "no fixtures in $ENV_FILE: run scripts/up.sh"
REPORT=$COPA_TEST_HERMETIC_REPORT
IMAGE=$COPA_TEST_IMAGE_HERMETIC
IMAGE_BIG=$REGISTRY/$BIG_REPO:$BIG_TAG
curl -fsS -m 5 -o /dev/null "http://$REGISTRY/v2/" || die "registry $REGISTRY does not answer: run scripts/up.sh"
curl -fsS -m 5 -o /dev/null "$COPA_TEST_APT_REPO/Release" || die "apt repository $COPA_TEST_APT_REPO does not answer: run scripts/up.sh"
docker info >/dev/null 2>&1 || die "docker does not answer: run scripts/up.sh"
[[ -x $BUILDKITD ]] || die "$BUILDKITD missing: run scripts/setup.sh"

sha() { sha256sum | cut -c1-16; }

# ------------------------------------------------------------------ setup ----
install_time() {
	if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M true >/dev/null 2>&1; then
		return
	fi
	log "bench: installing Debian's time"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
}

# Copacetic, exactly v0.14.2, CGO_ENABLED=0. The module proxy refuses the
# module's version list (so `go install` does), while it serves the version.
install_copacetic() {
	local ldflags stamp want src work
	ldflags="-X main.version=$COPACETIC_VERSION -X $COPACETIC_MODULE/pkg/version.GitVersion=$COPACETIC_VERSION"
	stamp=$COPACETIC_DIR/.complete
	want="$COPACETIC_MODULE@$COPACETIC_VERSION $ldflags"
	if [[ -x $COPACETIC && -f $stamp && $(<"$stamp") == "$want" ]]; then
		return
	fi
	command -v go >/dev/null || die "go toolchain not found"
	mkdir -p "$COPACETIC_DIR"
	log "bench: building Copacetic $COPACETIC_VERSION"
	if GOBIN=$COPACETIC_DIR CGO_ENABLED=0 GOFLAGS="" go install -ldflags "$ldflags" \
		"$COPACETIC_MODULE@$COPACETIC_VERSION" 2>"$BENCH_LOG/go-install.err"; then
		# The module's binary is named after its path.
		mv -f "$COPACETIC_DIR/copacetic" "$COPACETIC"
	else
		log "bench: go install refused ($(grep -m1 -o -E 'exclude directives|replace directives|403 Forbidden' "$BENCH_LOG/go-install.err" || echo "see $BENCH_LOG/go-install.err")); building it as the main module"
		src=$(cd / && GOFLAGS=-mod=mod go mod download -json "$COPACETIC_MODULE@$COPACETIC_VERSION" | jq -r .Dir)
		[[ -d $src ]] || die "go mod download $COPACETIC_MODULE@$COPACETIC_VERSION gave no source"
		work=$CACHE/src/${COPACETIC_MODULE//\//_}@$COPACETIC_VERSION
		rm -rf "$work"
		mkdir -p "$work"
		cp -r "$src/." "$work"
		chmod -R u+w "$work"
		(cd "$work" && CGO_ENABLED=0 GOFLAGS="" go build -ldflags "$ldflags" -o "$COPACETIC" .) \
			>"$BENCH_LOG/go-build.log" 2>&1 || { tail -n 20 "$BENCH_LOG/go-build.log" >&2; die "building Copacetic failed"; }
	fi
	echo "$want" >"$stamp"
}

build_copa() {
	log "bench: cargo build --release -p copa"
	(cd "$REPO" && cargo build --release --quiet -p copa) || die "cargo build failed"
	[[ -x $COPA ]] || die "$COPA missing after the build"
}

# ------------------------------------------------------ private buildkitd ----
bk_ready() { "$BUILDCTL" --addr "$BK_ADDR" debug workers >/dev/null 2>&1; }

start_buildkitd() {
	cat >"$BENCH_STATE/buildkitd.toml.new" <<-EOF
		# scripts/bench-patch.sh's private buildkitd
		[registry."$REGISTRY"]
		  http = true
		  insecure = true
		[registry."docker.io"]
		  mirrors = ["$REGISTRY"]
		[registry."ghcr.io"]
		  mirrors = ["$REGISTRY"]
		[worker.containerd]
		  enabled = false
	EOF
	mv "$BENCH_STATE/buildkitd.toml.new" "$BENCH_STATE/buildkitd.toml"
	if pid_alive "$BK_PID" && bk_ready; then
		log "bench: private buildkitd already running"
		return
	fi
	stop_pidfile "$BK_PID"
	rm -f "$BK_SOCK"
	setsid "$BUILDKITD" --config "$BENCH_STATE/buildkitd.toml" --root "$BENCH_STATE/buildkit" \
		--addr "$BK_ADDR" --oci-worker-net=host --containerd-worker=false \
		</dev/null >>"$BENCH_LOG/buildkitd.log" 2>&1 8>&- &
	echo $! >"$BK_PID"
	wait_for "private buildkitd" 60 bk_ready || die "private buildkitd did not start (see $BENCH_LOG/buildkitd.log)"
	log "bench: private buildkitd $BK_NEW on $BK_ADDR (pid $(<"$BK_PID"))"
}

# stop_pidfile FILE: TERM (then KILL) the process this script started.
stop_pidfile() {
	local f=$1 pid
	if pid_alive "$f"; then
		pid=$(<"$f")
		kill -TERM "$pid" 2>/dev/null || true
		wait_gone "$pid" 20 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
	fi
	rm -f "$f"
}

cleanup() {
	stop_pidfile "$SINK_PID"
	rm -f "$SINK_SOCK"
	if [[ ${COPA_BENCH_KEEP:-} != 1 ]]; then
		stop_pidfile "$BK_PID"
		rm -f "$BK_SOCK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- images ----
registry_digest() {
	curl -fsS -m 10 -o /dev/null -D - \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REGISTRY/v2/$1/manifests/$2" 2>/dev/null |
		tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p'
}

registry_label() {
	local cfg
	cfg=$(curl -fsS -m 10 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REGISTRY/v2/$1/manifests/$2" 2>/dev/null | jq -r '.config.digest // empty' 2>/dev/null || true)
	[[ -n $cfg ]] || return 0
	curl -fsS -m 10 "http://$REGISTRY/v2/$1/blobs/$cfg" 2>/dev/null |
		jq -r --arg l "$IMAGE_LABEL" '.config.Labels[$l] // empty' 2>/dev/null || true
}

# bk_build NAME DOCKERFILE_DIR NAMES LABEL BUILD_ARG...: build with the
# private daemon and push every name in NAMES (comma-separated).
bk_build() {
	local what=$1 dir=$2 names=$3 label=$4
	shift 4
	local args=() a
	for a in "$@"; do args+=(--opt "build-arg:$a"); done
	"$BUILDCTL" --addr "$BK_ADDR" build --progress plain --frontend dockerfile.v0 \
		--local context="$dir" --local dockerfile="$dir" "${args[@]}" \
		--opt "label:$IMAGE_LABEL=$label" \
		--output "type=image,\"name=$names\",push=true,oci-mediatypes=false" \
		>"$BENCH_LOG/build-$what.log" 2>&1 ||
		{ tail -n 20 "$BENCH_LOG/build-$what.log" >&2; die "building $what failed"; }
}

up_tooling_image() {
	local base_digest want dir tag stale=0 names=()
	base_digest=$(registry_digest copa-test/debian bookworm)
	[[ -n $base_digest ]] || die "no $REGISTRY/copa-test/debian:bookworm: run scripts/up.sh"
	dir=$BENCH_STATE/tooling
	mkdir -p "$dir"
	cat >"$dir/Dockerfile" <<-'EOF'
		# Copacetic's dpkg tooling image for scripts/bench-patch.sh.
		ARG BASE
		FROM ${BASE}
		ARG APT_REPO
		RUN apt-get update \
		 && apt-get install -y --no-install-recommends busybox-static \
		 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
		 && rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* \
		 && echo "deb [trusted=yes] ${APT_REPO} ./" >/etc/apt/sources.list.d/copa-bench.list
	EOF
	want=$({
		echo "bench-tooling-1 $base_digest $COPA_TEST_APT_REPO"
		cat "$dir/Dockerfile"
	} | sha)
	for tag in "${TOOL_TAGS[@]}"; do
		names+=("$REGISTRY/$TOOL_REPO:$tag")
		[[ $(registry_label "$TOOL_REPO" "$tag") == "$want" ]] || stale=1
	done
	if ((stale == 0)); then
		log "bench: tooling image $REGISTRY/$TOOL_REPO in the registry"
		return
	fi
	log "bench: building the tooling image (apt-get install busybox-static from Debian's mirror)"
	bk_build tooling "$dir" "$(IFS=,; echo "${names[*]}")" "$want" \
		"BASE=$REGISTRY/copa-test/debian:bookworm@$base_digest" "APT_REPO=$COPA_TEST_APT_REPO"
}

up_big_image() {
	local digest want dir
	digest=$(registry_digest copa-test/hermetic 1)
	[[ -n $digest ]] || die "no $IMAGE in the registry: run scripts/up.sh"
	dir=$BENCH_STATE/big
	mkdir -p "$dir"
	cat >"$dir/Dockerfile" <<-'EOF'
		# The hermetic image plus one layer of random (incompressible) data.
		ARG BASE
		FROM ${BASE}
		ARG MB
		RUN head -c "$((MB * 1024 * 1024))" /dev/urandom >/opt/copa-bench-ballast.bin
	EOF
	want=$({
		echo "bench-big-1 $digest $BIG_MB"
		cat "$dir/Dockerfile"
	} | sha)
	if [[ $(registry_label "$BIG_REPO" "$BIG_TAG") == "$want" ]]; then
		log "bench: $IMAGE_BIG in the registry"
		return
	fi
	log "bench: building $IMAGE_BIG (+${BIG_MB} MB random layer)"
	bk_build big "$dir" "$IMAGE_BIG" "$want" "BASE=$IMAGE@$digest" "MB=$BIG_MB"
}

# ------------------------------------------------------------ measuring ----
# run_tool TOOL IMAGE TAG OUT [ENV...]: one patch by TOOL (copa|copacetic),
# timed by the launcher (or /usr/bin/time); appends "wall user sys maxrss_kb"
# to OUT.
run_tool() {
	local tool=$1 image=$2 tag=$3 out=$4
	shift 4
	local bin tfile log rc=0
	case $tool in
	copa) bin=$COPA ;;
	copacetic) bin=$COPACETIC ;;
	esac
	tfile=$(mktemp)
	log=$BENCH_LOG/last-$tool.log
	local timer=(/usr/bin/time -o "$tfile" -f '%e %U %S %M')
	[[ $TIMER == time ]] || timer=(python3 "$BENCH_STATE/rusage.py" "$tfile")
	env "$@" "${timer[@]}" "$bin" patch -i "$image" -r "$REPORT" \
		-t "$tag" -a "$BK_ADDR" --progress "$PROGRESS" >"$log" 2>&1 || rc=$?
	if ((rc != 0)); then
		tail -n 20 "$log" >&2
		rm -f "$tfile"
		die "$tool patch of $image failed (exit $rc, log $log)"
	fi
	[[ -z $out ]] || tail -n 1 "$tfile" >>"$out"
	rm -f "$tfile"
}

write_launcher() {
	cat >"$BENCH_STATE/rusage.py" <<-'PYEOF'
		"""rusage.py OUT CMD...: run CMD (posix_spawn, so no forked copy of
		this interpreter counts toward its peak RSS), wait for it with wait4,
		write "wall_s user_s sys_s maxrss_kb" to OUT, exit with its status."""
		import os, shutil, sys, time
		out, argv = sys.argv[1], sys.argv[2:]
		path = shutil.which(argv[0]) or argv[0]
		t0 = time.monotonic()
		pid = os.posix_spawn(path, argv, os.environ)
		_, status, ru = os.wait4(pid, 0)
		t1 = time.monotonic()
		with open(out, "w") as f:
		    f.write(f"{t1 - t0:.4f} {ru.ru_utime:.6f} {ru.ru_stime:.6f} {ru.ru_maxrss}\n")
		sys.exit(os.waitstatus_to_exitcode(status))
	PYEOF
}

# verify_patched REF: the loaded image has the fixed versions.
verify_patched() {
	local got
	got=$(docker run --rm --network none "$1" dpkg-query -W -f='${Package}=${Version} ' copa-hello copa-libdemo copa-tool 2>&1) ||
		die "running $1 failed: $got"
	[[ $got == "copa-hello=1.0-2 copa-libdemo=2.1-1 copa-tool=3.0-1 " ]] ||
		die "$1 does not hold the fixed versions: $got"
}

target_ref() { echo "${1%:*}:$2"; }

# timed_case NAME IMAGE [ENV...]: prime both tools once, then RUNS timed runs
# each in ABBA order. Files: $DATA/NAME-{copa,copacetic}.txt
timed_case() {
	local name=$1 image=$2
	shift 2
	local i order
	: >"$DATA/$name-copa.txt"
	: >"$DATA/$name-copacetic.txt"
	log "bench: $name: priming both tools"
	run_tool copacetic "$image" bench-copacetic "" "$@"
	run_tool copa "$image" bench-copa "" "$@"
	for ((i = 0; i < RUNS; i++)); do
		if ((i % 2 == 0)); then order=(copa copacetic); else order=(copacetic copa); fi
		for t in "${order[@]}"; do
			run_tool "$t" "$image" "bench-$t" "$DATA/$name-$t.txt" "$@"
		done
		log "bench: $name: round $((i + 1))/$RUNS done"
	done
}

# -------------------------------------------------------------- the sink ----
write_sink() {
	cat >"$BENCH_STATE/engine-sink.py" <<-'PYEOF'
		"""A stand-in Docker Engine for timing the image-load stream.

		POST .../images/load: the body (chunked or sized) is read and thrown
		away, timed from its first byte to its last; one JSON line per load is
		appended to STATS; the answer is what the engine says for a load.
		Any other request goes to the real engine, one at a time, so pings and
		inspects still work. The expected image name is read from STATS.name.
		SAVE, when given and missing, receives the first load's bytes.

		    python3 engine-sink.py SOCKET REAL_SOCKET STATS [SAVE]
		"""
		import http.client, json, os, socket, socketserver, sys, time
		from http.server import BaseHTTPRequestHandler

		SOCK, REAL, STATS = sys.argv[1], sys.argv[2], sys.argv[3]
		SAVE = sys.argv[4] if len(sys.argv) > 4 else ""
		BUF = 1 << 20
		HOP = ("transfer-encoding", "connection", "content-length")


		class UnixHTTPConnection(http.client.HTTPConnection):
		    def __init__(self, path):
		        super().__init__("docker", timeout=300)
		        self.unix_path = path

		    def connect(self):
		        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		        s.settimeout(300)
		        s.connect(self.unix_path)
		        self.sock = s


		class Handler(BaseHTTPRequestHandler):
		    protocol_version = "HTTP/1.1"

		    def log_message(self, *args):
		        pass

		    def body(self):
		        rf = self.rfile
		        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
		            while True:
		                size = int(rf.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
		                if size == 0:
		                    while rf.readline(65537) not in (b"\r\n", b"\n", b""):
		                        pass
		                    return
		                while size:
		                    data = rf.read(min(size, BUF))
		                    if not data:
		                        raise EOFError("body cut short")
		                    size -= len(data)
		                    yield data
		                rf.readline(3)
		        else:
		            left = int(self.headers.get("Content-Length", "0"))
		            while left:
		                data = rf.read1(min(left, BUF))
		                if not data:
		                    raise EOFError("body cut short")
		                left -= len(data)
		                yield data

		    def load(self):
		        t_req = time.monotonic()
		        t_first, n, save = None, 0, None
		        if SAVE and not os.path.exists(SAVE):
		            save = open(SAVE + ".part", "wb")
		        for data in self.body():
		            if t_first is None:
		                t_first = time.monotonic()
		            n += len(data)
		            if save:
		                save.write(data)
		        t_last = time.monotonic()
		        if save:
		            save.close()
		            os.rename(SAVE + ".part", SAVE)
		        try:
		            with open(STATS + ".name") as f:
		                name = f.read().strip()
		        except OSError:
		            name = "unknown:latest"
		        with open(STATS, "a") as f:
		            f.write(json.dumps({"bytes": n, "wait_s": (t_first or t_last) - t_req,
		                                "stream_s": t_last - (t_first or t_last),
		                                "agent": self.headers.get("User-Agent", "")}) + "\n")
		        reply = json.dumps({"stream": f"Loaded image: {name}\n"}).encode() + b"\n"
		        self.send_response(200)
		        self.send_header("Content-Type", "application/json")
		        self.send_header("Content-Length", str(len(reply)))
		        self.end_headers()
		        self.wfile.write(reply)

		    def forward(self):
		        data = b"".join(self.body()) if self.command in ("POST", "PUT") else None
		        conn = UnixHTTPConnection(REAL)
		        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
		        conn.request(self.command, self.path, body=data, headers=headers)
		        resp = conn.getresponse()
		        payload = resp.read()
		        self.send_response(resp.status, resp.reason)
		        for k, v in resp.getheaders():
		            if k.lower() not in HOP:
		                self.send_header(k, v)
		        self.send_header("Content-Length", str(len(payload)))
		        self.end_headers()
		        if self.command != "HEAD":
		            self.wfile.write(payload)
		        conn.close()

		    def handle_any(self):
		        if self.command == "POST" and self.path.split("?", 1)[0].endswith("/images/load"):
		            self.load()
		        else:
		            self.forward()

		    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = handle_any


		class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
		    daemon_threads = True


		if os.path.exists(SOCK):
		    os.unlink(SOCK)
		with Server(SOCK, Handler) as srv:
		    srv.serve_forever()
	PYEOF
}

start_sink() {
	local stats=$1 save=$2
	stop_pidfile "$SINK_PID"
	write_sink
	rm -f "$SINK_SOCK"
	setsid python3 "$BENCH_STATE/engine-sink.py" "$SINK_SOCK" /var/run/docker.sock "$stats" "$save" \
		</dev/null >>"$BENCH_LOG/engine-sink.log" 2>&1 8>&- &
	echo $! >"$SINK_PID"
	wait_for "engine sink" 10 test -S "$SINK_SOCK" || die "engine sink did not start (see $BENCH_LOG/engine-sink.log)"
}

# export_case: RUNS loads of the hermetic patch into the sink, per tool.
export_case() {
	local i t stats
	rm -f "$DATA"/export-*.jsonl "$DATA"/export-*.tar
	for t in copa copacetic; do
		: >"$DATA/export-$t.txt"
	done
	for ((i = 0; i < RUNS; i++)); do
		if ((i % 2 == 0)); then order=(copa copacetic); else order=(copacetic copa); fi
		for t in "${order[@]}"; do
			stats=$DATA/export-$t.jsonl
			start_sink "$stats" "$DATA/export-$t.tar"
			target_ref "$IMAGE" "bench-$t" >"$stats.name"
			run_tool "$t" "$IMAGE" "bench-$t" "$DATA/export-$t.txt" DOCKER_HOST="unix://$SINK_SOCK"
		done
		log "bench: export: round $((i + 1))/$RUNS done"
	done
	stop_pidfile "$SINK_PID"
}

# raw_copy TAR RUNS: MB/s of copying TAR through a unix socket pair
# (sendfile on one end, 1 MiB recv_into on the other), one line per run.
raw_copy() {
	python3 - "$1" "$2" <<-'PYEOF'
		import os, socket, sys, threading, time
		path, runs = sys.argv[1], int(sys.argv[2])
		for _ in range(runs):
		    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
		    def send():
		        with open(path, "rb") as f:
		            a.sendfile(f)
		        a.close()
		    buf, n = bytearray(1 << 20), 0
		    t = threading.Thread(target=send)
		    t0 = time.monotonic()
		    t.start()
		    while True:
		        k = b.recv_into(buf)
		        if not k:
		            break
		        n += k
		    t1 = time.monotonic()
		    t.join()
		    b.close()
		    print(f"{n} {t1 - t0:.6f}")
	PYEOF
}

# sink_ceiling TAR: RUNS uploads of TAR into the stand-in engine by curl
# (chunked), to show what the engine itself can take.
sink_ceiling() {
	local i
	rm -f "$DATA/sink-ceiling.jsonl"
	start_sink "$DATA/sink-ceiling.jsonl" ""
	echo ceiling:latest >"$DATA/sink-ceiling.jsonl.name"
	for ((i = 0; i < RUNS; i++)); do
		curl -fsS --unix-socket "$SINK_SOCK" -H 'Transfer-Encoding: chunked' \
			--data-binary @"$1" http://docker/images/load -o /dev/null ||
			die "curl into the stand-in engine failed"
	done
	stop_pidfile "$SINK_PID"
}

# --------------------------------------------------------------- report ----
summarize() {
	python3 - "$DATA" "$RUNS" "$COLD" <<-'PYEOF'
		import json, os, statistics as st, sys
		data, runs, cold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

		def rows(name):
		    p = os.path.join(data, name)
		    if not os.path.exists(p):
		        return []
		    out = []
		    for line in open(p):
		        f = line.split()
		        if len(f) == 4:
		            out.append((float(f[0]), float(f[1]) + float(f[2]), int(f[3]) / 1024))
		    return out

		def med(v):
		    return st.median(v) if v else float("nan")

		def triple(name):
		    r = rows(name)
		    return [med([x[i] for x in r]) for i in range(3)], len(r)

		MB40 = 40e6 / 2**20  # the aim's 40 MB, in MiB as RSS is shown

		def flag(ok):
		    return "MET" if ok else "missed"

		res = {}
		lines = []
		say = lines.append
		say(f"copa patch vs Copacetic v0.14.2 patch: medians of {runs} alternating runs per tool")
		say("(same private buildkitd v0.34.2 on a unix socket, same image and report, output loaded into Docker)")
		say("")
		say(f"{'case':<28}{'metric':<14}{'copa':>10}{'Copacetic':>12}{'ratio':>8}  aim")
		cases = [("hermetic", "hermetic, warm"), ("big", "hermetic-big, warm")]
		if cold:
		    cases.append(("cold", "hermetic, cold cache"))
		for key, label in cases:
		    (cw, cc, cr), n1 = triple(f"{key}-copa.txt")
		    (gw, gc, gr), n2 = triple(f"{key}-copacetic.txt")
		    res[key] = dict(copa=dict(wall=cw, cpu=cc, rss=cr), copacetic=dict(wall=gw, cpu=gc, rss=gr))
		    aims = {"wall": (cw / gw <= 0.8, "<= 0.80x"), "cpu": (cc / gc <= 0.25, "<= 0.25x"),
		            "rss": (cr <= MB40, "copa <= 40 MB")}
		    for m, unit, a, b in (("wall", "s", cw, gw), ("cpu", "s", cc, gc), ("rss", "MiB", cr, gr)):
		        ok, aim = aims[m]
		        say(f"{label if m == 'wall' else '':<28}{m + ' ' + unit:<14}{a:>10.2f}{b:>12.2f}{a / b:>8.2f}  {aim}: {flag(ok)}")
		if "big" in res and "hermetic" in res:
		    s, b = res["hermetic"]["copa"]["rss"], res["big"]["copa"]["rss"]
		    gs, gb = res["hermetic"]["copacetic"]["rss"], res["big"]["copacetic"]["rss"]
		    sizes = dict(l.split() for l in open(os.path.join(data, "image-bytes.txt")))
		    hs, bs = int(sizes["hermetic"]) / 2**20, int(sizes["big"]) / 2**20
		    added = bs - hs
		    flat = b - s <= 0.10 * added and b <= MB40
		    say("")
		    say(f"RSS as the image grows ({hs:.0f} -> {bs:.0f} MiB of layers, +{added:.0f}): "
		        f"copa {s:.1f} -> {b:.1f} MiB ({b - s:+.1f}, {(b - s) / added:.2f} per added MiB), "
		        f"Copacetic {gs:.1f} -> {gb:.1f} MiB ({gb - gs:+.1f}, {(gb - gs) / added:.2f} per added MiB)")
		    say(f"  flat (copa grows by <= 10% of the added bytes and stays <= 40 MB): {flag(flat)}")

		# export throughput
		say("")
		exp = {}
		for t in ("copa", "copacetic"):
		    p = os.path.join(data, f"export-{t}.jsonl")
		    if os.path.exists(p):
		        recs = [json.loads(l) for l in open(p) if l.strip()]
		        exp[t] = dict(bytes=med([r["bytes"] for r in recs]),
		                      stream=med([r["stream_s"] for r in recs]),
		                      mbps=med([r["bytes"] / r["stream_s"] / 1e6 for r in recs if r["stream_s"] > 0]))
		raw = {}
		for t in ("copa", "copacetic"):
		    p = os.path.join(data, f"raw-{t}.txt")
		    if os.path.exists(p):
		        v = [tuple(map(float, l.split())) for l in open(p) if l.strip()]
		        raw[t] = med([n / s / 1e6 for n, s in v])
		if exp:
		    say("export throughput (the image-load body from first to last byte, into a stand-in engine that discards it)")
		    for t in ("copa", "copacetic"):
		        if t in exp:
		            e = exp[t]
		            r = raw.get(t, float("nan"))
		            say(f"  {t:<10} {e['bytes'] / 1e6:7.1f} MB in {e['stream']:6.3f} s = {e['mbps']:7.1f} MB/s;"
		                f" raw unix-socket copy of the same bytes {r:7.1f} MB/s ({e['mbps'] / r:.2f} of raw)")
		    if "copa" in exp and "copacetic" in exp:
		        say(f"  copa / Copacetic stream throughput: {exp['copa']['mbps'] / exp['copacetic']['mbps']:.2f}x")
		    p = os.path.join(data, "sink-ceiling.jsonl")
		    if os.path.exists(p):
		        recs = [json.loads(l) for l in open(p) if l.strip()]
		        cap = med([r["bytes"] / r["stream_s"] / 1e6 for r in recs if r["stream_s"] > 0])
		        top = max(e["mbps"] for e in exp.values())
		        say(f"  the stand-in engine itself takes {cap:.1f} MB/s (curl uploading the same bytes): "
		            + ("not what limits the tools" if cap > 2 * top else "CLOSE TO THE TOOLS' RATE, it may limit them"))
		    (xw, xc, xr), _ = triple("export-copa.txt")
		    (yw, yc, yr), _ = triple("export-copacetic.txt")
		    say(f"  whole runs into the stand-in engine: wall {xw:.2f} s vs {yw:.2f} s ({xw / yw:.2f}x),"
		        f" CPU {xc:.2f} s vs {yc:.2f} s ({xc / yc:.2f}x), RSS {xr:.1f} vs {yr:.1f} MiB")
		print("\n".join(lines))
		with open(os.path.join(data, "summary.json"), "w") as f:
		    json.dump(dict(cases=res, export=exp, raw=raw), f, indent=1)
	PYEOF
}

# ------------------------------------------------------------------ main ----
T0=$SECONDS
install_time
write_launcher
install_copacetic
build_copa
start_buildkitd
up_tooling_image
up_big_image

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
DATA=$BENCH_STATE/results/$STAMP
mkdir -p "$DATA"
{
	echo "date $STAMP"
	echo "copa $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
	echo "copacetic $COPACETIC_VERSION"
	echo "buildkitd $BK_NEW $BK_ADDR"
	echo "runs $RUNS cold $COLD progress $PROGRESS timer $TIMER"
	echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$DATA/info.txt"

# image_bytes REPO TAG: the image's layer bytes as the registry holds them
# (compressed), close to what an export carries.
image_bytes() {
	curl -fsS -m 10 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REGISTRY/v2/$1/manifests/$2" | jq '[.layers[].size] | add'
}
{
	echo "hermetic $(image_bytes copa-test/hermetic 1)"
	echo "big $(image_bytes "$BIG_REPO" "$BIG_TAG")"
} >"$DATA/image-bytes.txt"

# Correctness first: each tool's result holds the fixed versions.
log "bench: checking that both tools patch $IMAGE"
run_tool copacetic "$IMAGE" bench-copacetic ""
verify_patched "$(target_ref "$IMAGE" bench-copacetic)"
run_tool copa "$IMAGE" bench-copa ""
verify_patched "$(target_ref "$IMAGE" bench-copa)"

timed_case hermetic "$IMAGE"
timed_case big "$IMAGE_BIG"
verify_patched "$(target_ref "$IMAGE_BIG" bench-copa)"
verify_patched "$(target_ref "$IMAGE_BIG" bench-copacetic)"

export_case
for t in copa copacetic; do
	[[ -s $DATA/export-$t.tar ]] || die "the stand-in engine saved no export of $t"
	raw_copy "$DATA/export-$t.tar" "$RUNS" >"$DATA/raw-$t.txt"
done
sink_ceiling "$DATA/export-copa.tar"
rm -f "$DATA"/export-*.tar

if ((COLD > 0)); then
	: >"$DATA/cold-copa.txt"
	: >"$DATA/cold-copacetic.txt"
	for ((i = 0; i < COLD; i++)); do
		if ((i % 2 == 0)); then order=(copacetic copa); else order=(copa copacetic); fi
		for t in "${order[@]}"; do
			log "bench: cold: pruning the private daemon's cache"
			"$BUILDCTL" --addr "$BK_ADDR" prune --all >/dev/null
			run_tool "$t" "$IMAGE" "bench-$t" "$DATA/cold-$t.txt"
		done
	done
fi

summarize | tee "$DATA/summary.txt"
echo "(raw data: $DATA; $(nproc) cores, load average at start $(sed -n 's/^loadavg //p' "$DATA/info.txt"); took $((SECONDS - T0)) s)"
for t in copa copacetic; do
	docker image rm "$(target_ref "$IMAGE" "bench-$t")" "$(target_ref "$IMAGE_BIG" "bench-$t")" >/dev/null 2>&1 || true
done
