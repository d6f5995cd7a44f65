#!/usr/bin/env bash
# Build, idempotently and as root, the images and inputs that copa's
# end-to-end tests patch, start the local apt repository, and add their names
# to /run/copa-test/env. Called at the end of scripts/up.sh; needs the
# registry, dockerd, Podman and the newest host buildkitd that up.sh starts.
#
#   scripts/fixtures.sh            build what is missing or stale (seconds when
#                                  nothing changed), start the apt repository
#   scripts/fixtures.sh --verify   then prove the fixtures work: old versions
#                                  installed, apt upgrades them from the local
#                                  repository (docker and BuildKit), the real
#                                  image has updates in bookworm-security that
#                                  apt in a BuildKit exec installs (needs
#                                  Debian's mirror)
#   scripts/fixtures.sh --stop     stop the local apt repository server
#
# What it makes (every step is keyed on a hash of its inputs, recorded as the
# image label org.copa-test.inputs or a stamp file, so a change rebuilds it):
#   127.0.0.1:5000/copa-test/debian:bookworm   the debootstrap rootfs
#       (setup.sh) as one layer, with apt sources as Debian's own image has
#       them (bookworm, bookworm-updates, bookworm-security) and Env/Cmd set;
#       also pushed as library/debian:bookworm, which `debian:bookworm`
#       resolves to through buildkitd's docker.io mirror. Its packages are
#       bookworm main's, so bookworm-security's newer ones make it the "real"
#       vulnerable image: scripts/trivy-report.py computes its report.
#   /var/cache/copa/fixtures/apt-repo   a flat apt repository with the .debs
#       built from tests/fixtures/hermetic/packages, served by
#       `python3 -m http.server` on 127.0.0.1:$PORT_APT_REPO.
#   127.0.0.1:5000/copa-test/hermetic:1   the base plus the OLD fixture
#       packages, apt pointed only at the local repository (hermetic).
# Images go to the local registry, Docker and Podman under the same names.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

need_root
T0=$SECONDS
MODE=${1:-}
case $MODE in "" | --verify | --stop) ;; *) die "usage: $0 [--verify|--stop]" ;; esac

RECIPE=fixtures-1 # bump to rebuild everything
HERMETIC_SRC=$REPO/tests/fixtures/hermetic
FX_CACHE=$CACHE/fixtures
APT_REPO_DIR=$FX_CACHE/apt-repo
PORT_APT_REPO=28090
APT_REPO_URL=http://127.0.0.1:$PORT_APT_REPO
REGISTRY=127.0.0.1:$PORT_REGISTRY
IMAGE_BASE=$REGISTRY/copa-test/debian:bookworm
IMAGE_BASE_ALIAS=$REGISTRY/library/debian:bookworm
IMAGE_HERMETIC=$REGISTRY/copa-test/hermetic:1
# The hermetic image has these installed; the repository has every package
# directory under tests/fixtures/hermetic/packages (old and new versions).
HERMETIC_INSTALLED=(copa-libdemo_2.0-1 copa-hello_1.0-1 copa-tool_3.0-1)
# Timestamp of everything made here (debs, repository index), so that the
# same inputs give the same bytes.
EPOCH=1700000000
SECURITY_MIRROR=${COPA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
BUILDCTL=$(buildctl_new)
BK_ADDR=unix://$(bk_sock "$BK_NEW")

sha() { sha256sum | cut -c1-16; }

# ------------------------------------------------------------ fingerprints --
# tree_hash DIR: names, kinds, executable bits and contents of a tree.
tree_hash() {
	local d=$1
	(
		cd "$d"
		find . -printf '%P %y\n' | LC_ALL=C sort
		find . -type f -perm /111 -printf 'x %P\n' | LC_ALL=C sort
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
		find . -type l -printf '%P -> %l\n' | LC_ALL=C sort
	) | sha
}

# rootfs_hash: the rootfs tarball's content hash, remembered per size, mtime
# and inode so that it is computed once.
rootfs_hash() {
	[[ -s $ROOTFS_TAR ]] || die "$ROOTFS_TAR missing: run scripts/setup.sh first"
	local memo=$FX_CACHE/rootfs.sha256 key
	key=$(stat -c '%s %Y %i' "$ROOTFS_TAR")
	if [[ -f $memo && $(head -n1 "$memo") == "$key" ]]; then
		sed -n 2p "$memo"
		return
	fi
	local h
	h=$(sha <"$ROOTFS_TAR")
	printf '%s\n%s\n' "$key" "$h" >"$memo.tmp"
	mv "$memo.tmp" "$memo"
	echo "$h"
}

# The apt sources of the base, as Debian's own bookworm image has them.
base_sources() {
	cat <<-EOF
		Types: deb
		URIs: $DEBIAN_MIRROR
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: $SECURITY_MIRROR
		Suites: bookworm-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
}
BASE_CHANGES=(
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	--change 'CMD ["bash"]'
)

base_inputs() {
	{
		echo "$RECIPE base-2"
		rootfs_hash
		base_sources
		printf '%s\n' "${BASE_CHANGES[@]}"
	} | sha
}

repo_inputs() {
	{
		echo "$RECIPE repo-1 $EPOCH"
		tree_hash "$HERMETIC_SRC/packages"
	} | sha
}

hermetic_inputs() {
	{
		echo "$RECIPE hermetic-1 $APT_REPO_URL ${HERMETIC_INSTALLED[*]}"
		base_inputs
		repo_inputs
		cat "$HERMETIC_SRC/Dockerfile"
	} | sha
}

# ---------------------------------------------------------- image lookups --
# registry_manifest REPO TAG: the single-platform manifest, or nothing.
registry_manifest() {
	curl -fsS -m 10 \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REGISTRY/v2/$1/manifests/$2" 2>/dev/null || true
}

# registry_label REPO TAG: the inputs label of REPO:TAG in the registry.
registry_label() {
	local cfg
	cfg=$(registry_manifest "$1" "$2" | jq -r '.config.digest // empty' 2>/dev/null || true)
	[[ -n $cfg ]] || return 0
	curl -fsS -m 10 "http://$REGISTRY/v2/$1/blobs/$cfg" 2>/dev/null |
		jq -r --arg l "$IMAGE_LABEL" '.config.Labels[$l] // empty' 2>/dev/null || true
}

# registry_digest REPO TAG: the manifest digest.
registry_digest() {
	curl -fsS -m 10 -o /dev/null -D - \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REGISTRY/v2/$1/manifests/$2" 2>/dev/null |
		tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p'
}

docker_label() {
	docker image inspect -f "{{ index .Config.Labels \"$IMAGE_LABEL\" }}" "$1" 2>/dev/null || true
}
podman_label() {
	podman image inspect -f "{{ index .Labels \"$IMAGE_LABEL\" }}" "$1" 2>/dev/null || true
}

# drop_superseded ENGINE IMAGE OLD_ID: remove the image that IMAGE named
# before it was replaced, unless something still uses or names it.
drop_superseded() {
	local engine=$1 image=$2 old=$3 now
	[[ -n $old ]] || return 0
	now=$("$engine" image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
	if [[ $now != "$old" ]]; then
		"$engine" image rm "$old" >/dev/null 2>&1 || true
	fi
}

# podman_sync IMAGE WANT: pull IMAGE from the local registry into Podman
# unless it has the one with these inputs.
podman_sync() {
	local image=$1 want=$2
	if [[ $(podman_label "$image") == "$want" ]]; then
		log "fixtures: $image in podman"
		return
	fi
	log "fixtures: pulling $image into podman"
	local old
	old=$(podman image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
	podman pull -q --tls-verify=false "$image" >/dev/null
	[[ $(podman_label "$image") == "$want" ]] || die "podman has a different $image after pulling it"
	drop_superseded podman "$image" "$old"
}

# docker_sync IMAGE WANT: the same for Docker.
docker_sync() {
	local image=$1 want=$2
	if [[ $(docker_label "$image") == "$want" ]]; then
		log "fixtures: $image in docker"
		return
	fi
	log "fixtures: pulling $image into docker"
	local old
	old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
	docker pull -q "$image" >/dev/null
	[[ $(docker_label "$image") == "$want" ]] || die "docker has a different $image after pulling it"
	drop_superseded docker "$image" "$old"
}

# ------------------------------------------------------------- base image --
build_base() {
	local want=$1 work members=() m
	log "fixtures: building $IMAGE_BASE from $ROOTFS_TAR"
	work=$(mktemp -d "$FX_CACHE/base.XXXXXX") # left over by a failed run: removed by the next
	cp "$ROOTFS_TAR" "$work/rootfs.tar"
	# Drop the build host's leftovers and the main-only sources.list.
	for m in ./etc/apt/sources.list ./etc/resolv.conf ./etc/hostname; do
		if tar -tf "$work/rootfs.tar" "$m" >/dev/null 2>&1; then members+=("$m"); fi
	done
	((${#members[@]} == 0)) || tar --delete -f "$work/rootfs.tar" "${members[@]}"
	mkdir -p "$work/add/etc/apt/sources.list.d"
	base_sources >"$work/add/etc/apt/sources.list.d/debian.sources"
	: >"$work/add/etc/resolv.conf"
	chmod 0644 "$work/add/etc/apt/sources.list.d/debian.sources" "$work/add/etc/resolv.conf"
	tar --numeric-owner --owner=0 --group=0 --mtime="@$EPOCH" -C "$work/add" \
		-rf "$work/rootfs.tar" ./etc/apt/sources.list.d/debian.sources ./etc/resolv.conf
	local old
	old=$(docker image inspect -f '{{.Id}}' "$IMAGE_BASE" 2>/dev/null || true)
	# Untag the alias too, so that the replaced image can go.
	docker image rm "$IMAGE_BASE_ALIAS" >/dev/null 2>&1 || true
	docker import "${BASE_CHANGES[@]}" \
		--change "LABEL $IMAGE_LABEL=$want" \
		--message "copa test base: debootstrap --variant=minbase bookworm" \
		"$work/rootfs.tar" "$IMAGE_BASE" >/dev/null
	rm -rf "$work"
	drop_superseded docker "$IMAGE_BASE" "$old"
}

up_base() {
	local want
	want=$(base_inputs)
	if [[ $(docker_label "$IMAGE_BASE") != "$want" ]]; then
		if [[ $(registry_label copa-test/debian bookworm) == "$want" ]]; then
			docker_sync "$IMAGE_BASE" "$want"
		else
			build_base "$want"
		fi
	else
		log "fixtures: $IMAGE_BASE in docker"
	fi
	local ref
	for ref in "$IMAGE_BASE" "$IMAGE_BASE_ALIAS"; do
		local path=${ref#"$REGISTRY"/}
		if [[ $(registry_label "${path%:*}" "${path##*:}") == "$want" ]]; then
			log "fixtures: $ref in the registry"
			continue
		fi
		log "fixtures: pushing $ref"
		[[ $ref == "$IMAGE_BASE" ]] || docker tag "$IMAGE_BASE" "$ref"
		docker push "$ref" >"$LOG_DIR/fixtures-push.log" 2>&1 ||
			{ tail -n 5 "$LOG_DIR/fixtures-push.log" >&2; die "docker push $ref failed"; }
	done
	podman_sync "$IMAGE_BASE" "$want"
}

# ------------------------------------------------------ hermetic apt repo --
# build_deb SRC OUTDIR: a reproducible .deb from a package tree (DEBIAN/ plus
# files); prints its path.
build_deb() {
	local src=$1 out=$2 stage name
	stage=$(mktemp -d "$FX_CACHE/deb.XXXXXX")
	cp -a "$src/." "$stage/"
	find "$stage" -type d -exec chmod 0755 {} +
	find "$stage" -type f -perm /111 -exec chmod 0755 {} +
	find "$stage" -type f ! -perm /111 -exec chmod 0644 {} +
	find "$stage" -exec touch -h -d "@$EPOCH" {} +
	# NAME_VERSION_ARCH.deb, as Debian names them.
	name=$(awk -F': *' '$1 == "Package" { p = $2 } $1 == "Version" { v = $2 }
		$1 == "Architecture" { a = $2 } END { print p "_" v "_" a ".deb" }' "$stage/DEBIAN/control")
	SOURCE_DATE_EPOCH=$EPOCH dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/$name" >/dev/null
	rm -rf "$stage"
	echo "$out/$name"
}

# The Packages index of a flat repository: every .deb's control fields plus
# where it is and its hashes (what dpkg-scanpackages writes).
packages_index() {
	local deb
	for deb in pool/*.deb; do
		dpkg-deb -f "$deb"
		printf 'Filename: %s\nSize: %s\nMD5sum: %s\nSHA256: %s\n\n' "$deb" \
			"$(stat -c %s "$deb")" "$(md5sum <"$deb" | cut -d' ' -f1)" "$(sha256sum <"$deb" | cut -d' ' -f1)"
	done
}

release_file() {
	local f
	cat <<-EOF
		Origin: copa-test
		Label: copa-test
		Suite: copa-test
		Codename: copa-test
		Date: $(LC_ALL=C date -u -R -d "@$EPOCH")
		Architectures: all
		Description: copa's hermetic test packages (tests/fixtures/hermetic)
	EOF
	echo "MD5Sum:"
	for f in Packages Packages.gz Packages.xz; do
		printf ' %s %16s %s\n' "$(md5sum <"$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
	done
	echo "SHA256:"
	for f in Packages Packages.gz Packages.xz; do
		printf ' %s %16s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
	done
}

build_repo() {
	local want tmp p
	want=$(repo_inputs)
	if [[ -f $APT_REPO_DIR/.inputs && $(<"$APT_REPO_DIR/.inputs") == "$want" ]]; then
		log "fixtures: apt repository $APT_REPO_DIR up to date"
		return
	fi
	log "fixtures: building the apt repository in $APT_REPO_DIR"
	tmp=$FX_CACHE/apt-repo.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp/pool" "$tmp/install"
	for p in "$HERMETIC_SRC"/packages/*/; do
		build_deb "${p%/}" "$tmp/pool" >/dev/null
	done
	for p in "${HERMETIC_INSTALLED[@]}"; do
		compgen -G "$tmp/pool/${p}_*.deb" >/dev/null || die "no package $p under $HERMETIC_SRC/packages"
		cp "$tmp/pool/${p}"_*.deb "$tmp/install/"
	done
	(
		cd "$tmp"
		packages_index >Packages
		gzip -9n <Packages >Packages.gz
		xz -9 <Packages >Packages.xz
		release_file >Release
	)
	echo "$want" >"$tmp/.inputs"
	rm -rf "$APT_REPO_DIR.old"
	if [[ -d $APT_REPO_DIR ]]; then mv "$APT_REPO_DIR" "$APT_REPO_DIR.old"; fi
	mv "$tmp" "$APT_REPO_DIR"
	rm -rf "$APT_REPO_DIR.old"
}

apt_repo_current() {
	curl -fsS -m 5 "$APT_REPO_URL/Release" 2>/dev/null | cmp -s - "$APT_REPO_DIR/Release"
}

up_apt_repo() {
	if pid_alive "$RUN_DIR/apt-repo.pid" && apt_repo_current; then
		log "fixtures: apt repository served on $APT_REPO_URL"
		return
	fi
	stop_daemon apt-repo 5
	! tcp_listening "$PORT_APT_REPO" || die "127.0.0.1:$PORT_APT_REPO is taken by another process"
	# 9>&-: the server must not inherit (and so hold) this script's lock.
	start_daemon apt-repo python3 -m http.server --bind 127.0.0.1 --directory "$APT_REPO_DIR" "$PORT_APT_REPO" 9>&-
	wait_for "apt repository on $APT_REPO_URL" 30 apt_repo_current ||
		die "apt repository did not start (see $LOG_DIR/apt-repo.log)"
}

# ---------------------------------------------------------- hermetic image --
up_hermetic() {
	local want base_digest
	want=$(hermetic_inputs)
	if [[ $(registry_label copa-test/hermetic 1) == "$want" ]]; then
		log "fixtures: $IMAGE_HERMETIC in the registry"
	else
		base_digest=$(registry_digest copa-test/debian bookworm)
		[[ -n $base_digest ]] || die "no digest for $IMAGE_BASE in the registry"
		log "fixtures: building $IMAGE_HERMETIC with $BK_ADDR"
		"$BUILDCTL" --addr "$BK_ADDR" build --progress plain \
			--frontend dockerfile.v0 \
			--local context="$APT_REPO_DIR/install" \
			--local dockerfile="$HERMETIC_SRC" \
			--opt "build-arg:BASE=$IMAGE_BASE@$base_digest" \
			--opt "build-arg:APT_REPO=$APT_REPO_URL" \
			--opt "label:$IMAGE_LABEL=$want" \
			--output "type=image,name=$IMAGE_HERMETIC,push=true,oci-mediatypes=false" \
			>"$LOG_DIR/fixtures-hermetic.log" 2>&1 ||
			{ tail -n 20 "$LOG_DIR/fixtures-hermetic.log" >&2; die "building $IMAGE_HERMETIC failed"; }
		[[ $(registry_label copa-test/hermetic 1) == "$want" ]] || die "$IMAGE_HERMETIC was not pushed"
	fi
	docker_sync "$IMAGE_HERMETIC" "$want"
	podman_sync "$IMAGE_HERMETIC" "$want"
}

# ---------------------------------------------------------------- env file --
write_fixture_env() {
	[[ -f $ENV_FILE ]] || die "$ENV_FILE missing: run scripts/up.sh"
	local -a entries=(
		COPA_TEST_IMAGE_BASE "$IMAGE_BASE"
		COPA_TEST_IMAGE_VULN "$IMAGE_BASE"
		COPA_TEST_IMAGE_HERMETIC "$IMAGE_HERMETIC"
		COPA_TEST_APT_REPO "$APT_REPO_URL"
		COPA_TEST_HERMETIC_REPORT "$HERMETIC_SRC/report.json"
		COPA_TEST_HERMETIC_REPORT_NOFIX "$HERMETIC_SRC/report-nofix.json"
		COPA_TEST_HERMETIC_REPORT_MISSING "$HERMETIC_SRC/report-missing.json"
		COPA_TEST_HERMETIC_REPORT_UNFIXABLE "$HERMETIC_SRC/report-unfixable.json"
		COPA_TEST_TRIVY_REPORT "$HERE/trivy-report.py"
	)
	local tmp=$ENV_FILE.fixtures.tmp k v i keys=()
	for ((i = 0; i < ${#entries[@]}; i += 2)); do keys+=("${entries[i]}"); done
	{
		# Everything up.sh wrote, less earlier values of these keys.
		grep -v -E "^export ($(
			IFS='|'
			echo "${keys[*]}"
		))=" "$ENV_FILE" || true
		for ((i = 0; i < ${#entries[@]}; i += 2)); do
			k=${entries[i]} v=${entries[i + 1]}
			[[ $v =~ ^[A-Za-z0-9_:/.@+=-]+$ ]] || die "env value for $k needs quoting: $v"
			printf 'export %s=%s\n' "$k" "$v"
		done
	} >"$tmp"
	chmod 0644 "$tmp"
	mv "$tmp" "$ENV_FILE"
	log "fixtures: recorded the fixtures in $ENV_FILE"
}

# ------------------------------------------------------------------ verify --
VERIFY_OK=0 VERIFY_FAIL=0
vcheck() {
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "ok   $what"
		VERIFY_OK=$((VERIFY_OK + 1))
	else
		echo "FAIL $what"
		printf '%s\n' "$out" | tail -n 15 | sed 's/^/     /'
		VERIFY_FAIL=$((VERIFY_FAIL + 1))
	fi
}

# bk_run ADDR IMAGE SCRIPT: one uncached RUN step through a buildkitd.
bk_run() {
	local addr=$1 image=$2 script=$3 ctx rc=0
	ctx=$(mktemp -d)
	printf 'FROM %s\nRUN %s\n' "$image" "$script" >"$ctx/Dockerfile"
	"$BUILDCTL" --addr "$addr" build --progress plain --no-cache --frontend dockerfile.v0 \
		--local context="$ctx" --local dockerfile="$ctx" || rc=$?
	rm -rf "$ctx"
	return "$rc"
}

# shellcheck disable=SC2016  # single-quoted scripts run in bash -c or in the containers
verify() {
	local upgrade='apt-get update && apt-get install -y --only-upgrade copa-hello copa-libdemo && test "$(dpkg-query -W -f=\${Version} copa-hello)" = 1.0-2 && test "$(dpkg-query -W -f=\${Version} copa-libdemo)" = 2.1-1 && copa-hello'
	vcheck "docker: $IMAGE_HERMETIC has copa-hello 1.0-1, copa-libdemo 2.0-1, copa-tool 3.0-1" \
		bash -c '[[ $(docker run --rm --network none "$1" dpkg-query -W -f="\${Package}=\${Version} " copa-hello copa-libdemo copa-tool) == "copa-hello=1.0-1 copa-libdemo=2.0-1 copa-tool=3.0-1 " ]]' _ "$IMAGE_HERMETIC"
	vcheck "docker: $IMAGE_HERMETIC runs copa-hello 1.0-1" \
		bash -c '[[ $(docker run --rm --network none "$1" copa-hello) == "copa-hello 1.0-1 (copa-libdemo 2.0-1)" ]]' _ "$IMAGE_HERMETIC"
	vcheck "docker: $IMAGE_HERMETIC lists only $APT_REPO_URL as apt source" \
		bash -c '[[ $(docker run --rm --network none "$1" sh -c "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null") == "deb [trusted=yes] $2 ./" ]]' _ "$IMAGE_HERMETIC" "$APT_REPO_URL"
	vcheck "docker --network host: apt upgrades copa-hello to 1.0-2 from $APT_REPO_URL" \
		docker run --rm --network host "$IMAGE_HERMETIC" sh -c "$upgrade"
	# Podman's default rlimits and crun are refused here (DESIGN.md).
	vcheck "podman: $IMAGE_HERMETIC runs copa-hello 1.0-1" \
		bash -c '[[ $(podman run --rm --pull never --network none --runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 "$1" copa-hello) == "copa-hello 1.0-1 (copa-libdemo 2.0-1)" ]]' _ "$IMAGE_HERMETIC"
	vcheck "podman: $IMAGE_BASE present" podman image exists "$IMAGE_BASE"
	local v addr
	for v in "${BK_VERSIONS[@]}"; do
		addr=unix://$(bk_sock "$v")
		vcheck "buildkit $v: RUN apt-get install --only-upgrade copa-hello copa-libdemo" \
			bk_run "$addr" "$IMAGE_HERMETIC" "$upgrade"
	done
	vcheck "docker: $IMAGE_BASE has Env and Cmd" \
		bash -c '[[ $(docker image inspect -f "{{json .Config.Cmd}} {{index .Config.Env 0}}" "$1") == "[\"bash\"] PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" ]]' _ "$IMAGE_BASE"

	# The real vulnerable image: its report comes from the mirror.
	local report pkg fixed
	report=$(mktemp --suffix=.json)
	vcheck "trivy-report.py: $IMAGE_BASE has packages with a bookworm-security update" \
		python3 "$HERE/trivy-report.py" --image "$IMAGE_BASE" --require-some -o "$report"
	pkg=$(jq -r '[.Results[].Vulnerabilities[]?.PkgName] | map(select(. == "zlib1g")) + [.[0]] | map(select(. != null)) | .[0] // empty' "$report" 2>/dev/null || true)
	fixed=$(jq -r --arg p "$pkg" '[.Results[].Vulnerabilities[]? | select(.PkgName == $p) | .FixedVersion][0] // empty' "$report" 2>/dev/null || true)
	if [[ -n $pkg ]]; then
		vcheck "buildkit $BK_NEW: RUN apt-get install --only-upgrade $pkg reaches $fixed from the mirror" \
			bk_run "$BK_ADDR" "$IMAGE_BASE" "apt-get update && apt-get install -y --only-upgrade $pkg && dpkg --compare-versions \"\$(dpkg-query -W -f='\${Version}' $pkg)\" ge '$fixed'"
	fi
	rm -f "$report"
	log "fixtures verify: $VERIFY_OK checks ok, $VERIFY_FAIL failing"
	((VERIFY_FAIL == 0))
}

# -------------------------------------------------------------------- main --
if [[ $MODE == --stop ]]; then
	stop_daemon apt-repo 5
	exit 0
fi
mkdir -p "$FX_CACHE" "$RUN_DIR" "$LOG_DIR"
exec 9>"$RUN_DIR/fixtures.lock"
flock -w 600 9 || die "another scripts/fixtures.sh holds $RUN_DIR/fixtures.lock"
rm -rf "$FX_CACHE"/base.* "$FX_CACHE"/deb.* "$FX_CACHE/apt-repo.tmp" # a failed run's leftovers
curl -fsS -m 5 -o /dev/null "http://$REGISTRY/v2/" || die "registry $REGISTRY does not answer: run scripts/up.sh"
[[ -x $BUILDCTL ]] || die "buildctl not found at $BUILDCTL: run scripts/setup.sh"

up_base
build_repo
up_apt_repo
up_hermetic
write_fixture_env
log "fixtures done in $((SECONDS - T0))s"
if [[ $MODE == --verify ]]; then
	verify
fi
