#!/usr/bin/env bash
# Install everything the integration tests need, idempotently, as root:
#   - Debian packages (docker.io, containerd, runc, podman, openssh, registry…)
#   - the wasm32-wasip2 Rust target
#   - buildkitd/buildctl (v0.12.4 and newest), buildx, nerdctl from the Go
#     module proxy into /var/cache/copa/go/<name>-<version>/
#   - a Debian bookworm minbase rootfs tarball (debootstrap)
#   - buildkit images copa-test/buildkit:<version> in Docker, Podman and
#     containerd (namespace "default", for nerdctl)
# Every step is skipped when its output already exists, so a second run takes
# seconds. Images need the daemons: this script starts containerd and dockerd
# through scripts/up.sh's helpers when they are not running.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

need_root
T0=$SECONDS

# ---------------------------------------------------------------- apt -------
APT_PACKAGES=(
	docker.io containerd runc crun podman uidmap slirp4netns fuse-overlayfs
	openssh-server openssh-client docker-registry debootstrap openssl
	iproute2 iptables hyperfine curl jq ca-certificates shellcheck
)

install_apt() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do
		if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
			missing+=("$p")
		fi
	done
	if ((${#missing[@]} == 0)); then
		log "apt: all ${#APT_PACKAGES[@]} packages installed"
		return
	fi
	log "apt: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l
	# Package services must not start on their own: up.sh starts them with
	# the flags that work here.
	local policy=/usr/sbin/policy-rc.d created_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		created_policy=1
	fi
	# Update the lists only when they are missing or a package is unknown.
	if ! apt-get install -y "${missing[@]}"; then
		apt-get update
		apt-get install -y "${missing[@]}"
	fi
	((created_policy)) && rm -f "$policy"
	return 0
}

# ---------------------------------------------------------------- rust ------
install_rust_target() {
	if ! command -v rustup >/dev/null; then
		log "rustup not found; skipping wasm32-wasip2 target"
		return
	fi
	if rustup target list --installed | grep -qx wasm32-wasip2; then
		log "rust: wasm32-wasip2 installed"
	else
		rustup target add wasm32-wasip2
	fi
}

# ---------------------------------------------------------------- go --------
# go_program DIR MODULE VERSION LDFLAGS PKG...: build each PKG (a path inside
# MODULE) at exactly VERSION into DIR, with CGO_ENABLED=0.
# `go install MODULE/PKG@VERSION` is tried first; when it refuses, the same
# version is fetched from the module proxy with `go mod download` and built
# inside its own module (with that module's go.sum). Files named in
# GO_PRUNE (paths inside the module) are left out of that build.
go_program() {
	local dir=$1 module=$2 version=$3 ldflags=$4
	shift 4
	local stamp="$dir/.complete" want
	want="$module@$version $ldflags $*"
	if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
		log "go: $(basename "$dir") built"
		return
	fi
	command -v go >/dev/null || die "go toolchain not found"
	mkdir -p "$dir"
	local pkg src work
	for pkg in "$@"; do
		log "go: building $module/$pkg@$version"
		if GOBIN=$dir CGO_ENABLED=0 GOFLAGS="" go install -ldflags "$ldflags" \
			"$module/$pkg@$version" 2>"$LOG_DIR/go-install.err"; then
			continue
		fi
		# Typical causes: replace/exclude directives in the module's go.mod
		# (buildkit since v0.2x), or the proxy refusing the module's version
		# list while serving the version itself (nerdctl/v2).
		log "go: go install refused ($(grep -m1 -o -E 'exclude directives|replace directives|403 Forbidden' "$LOG_DIR/go-install.err" || echo "see $LOG_DIR/go-install.err")); building $module@$version as the main module"
		src=$(cd / && GOFLAGS=-mod=mod go mod download -json "$module@$version" |
			jq -r .Dir)
		[[ -d $src ]] || die "go mod download $module@$version gave no source"
		# A fixed, writable copy: the same paths on a rebuild reuse Go's cache.
		work=$CACHE/src/${module//\//_}@$version
		rm -rf "$work"
		mkdir -p "$work"
		cp -r "$src/." "$work"
		chmod -R u+w "$work"
		local f
		for f in ${GO_PRUNE:-}; do
			rm -f "${work:?}/$f"
		done
		(cd "$work" && CGO_ENABLED=0 GOFLAGS="" go build -ldflags "$ldflags" -o "$dir/" "./$pkg")
	done
	echo "$want" >"$stamp"
}

install_go_programs() {
	local v
	for v in "${BK_VERSIONS[@]}"; do
		# buildx's docker-container driver reads `buildkitd --version` as four
		# fields, so the version is stamped; the revision is not known here.
		go_program "$(bk_dir "$v")" github.com/moby/buildkit "$v" \
			"-X github.com/moby/buildkit/version.Version=$v -X github.com/moby/buildkit/version.Revision=module-proxy" \
			cmd/buildkitd cmd/buildctl
	done
	go_program "$GO_PREFIX/buildx-$BUILDX_VERSION" github.com/docker/buildx "$BUILDX_VERSION" \
		"-X github.com/docker/buildx/version.Version=$BUILDX_VERSION -X github.com/docker/buildx/version.Package=github.com/docker/buildx" \
		cmd/buildx
	# nerdctl: the proxy refuses its version list, and its go.mod replaces
	# mod/tigron (a test framework, not in the module zip) with ./mod/tigron;
	# only this test-helper file of a command package imports it.
	GO_PRUNE=cmd/nerdctl/helpers/testing_linux.go \
		go_program "$GO_PREFIX/nerdctl-$NERDCTL_VERSION" github.com/containerd/nerdctl/v2 "$NERDCTL_VERSION" \
			"-X github.com/containerd/nerdctl/v2/pkg/version.Version=$NERDCTL_VERSION" \
			cmd/nerdctl
}

link_programs() {
	local link
	# sshd sessions (the ssh:// tests) need `buildctl` on the default PATH.
	ln -sfn "$(buildctl_new)" /usr/local/bin/buildctl
	ln -sfn "$(nerdctl_bin)" /usr/local/bin/nerdctl
	mkdir -p /usr/local/lib/docker/cli-plugins
	link=/usr/local/lib/docker/cli-plugins/docker-buildx
	ln -sfn "$(buildx_bin)" "$link"
}

# ---------------------------------------------------------------- rootfs ----
build_rootfs() {
	if [[ -s $ROOTFS_TAR ]]; then
		log "rootfs: $ROOTFS_TAR exists"
		return
	fi
	mkdir -p "$ROOTFS_DIR"
	local tmp=$ROOTFS_DIR/bookworm-minbase.tmp
	rm -rf "$tmp"
	log "rootfs: debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR"
	debootstrap --variant=minbase bookworm "$tmp" "$DEBIAN_MIRROR" \
		>"$LOG_DIR/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$LOG_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
	# Leave what a container image needs, not the download leftovers.
	rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_* \
		"$tmp"/var/log/* "$tmp"/debootstrap
	tar --numeric-owner --xattrs -C "$tmp" -cf "$ROOTFS_TAR.tmp" .
	mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
	rm -rf "$tmp"
	log "rootfs: wrote $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
}

# ---------------------------------------------------------------- images ----
docker_image_inputs() {
	docker image inspect -f "{{ index .Config.Labels \"$IMAGE_LABEL\" }}" "$1" 2>/dev/null || true
}
podman_image_inputs() {
	podman image inspect -f "{{ index .Labels \"$IMAGE_LABEL\" }}" "$1" 2>/dev/null || true
}
containerd_image_inputs() {
	"$(nerdctl_bin)" --namespace default image inspect \
		-f "{{ index .Config.Labels \"$IMAGE_LABEL\" }}" "$1" 2>/dev/null || true
}

# build_image VERSION: copa-test/buildkit:VERSION from the rootfs, with
# buildkitd, buildctl and Debian's runc; loaded into Docker, Podman and
# containerd. Each engine is skipped when it has the image with the same
# input fingerprint.
build_image() {
	local v=$1 image inputs d work
	image=$(bk_image "$v")
	inputs=$(image_inputs "$v")
	d=$(bk_dir "$v")

	if [[ $(docker_image_inputs "$image") != "$inputs" ]]; then
		log "image: building $image"
		work=$(mktemp -d)
		tar -C "$work" -xf "$ROOTFS_TAR"
		install -m 0755 "$d/buildkitd" "$d/buildctl" "$work/usr/bin/"
		install -m 0755 /usr/sbin/runc "$work/usr/sbin/runc"
		mkdir -p "$work/etc/buildkit" "$work/var/lib/buildkit" "$work/run/buildkit"
		buildkitd_toml_container >"$work/etc/buildkit/buildkitd.toml"
		tar --numeric-owner -C "$work" -c . |
			docker import \
				--change 'ENTRYPOINT ["buildkitd"]' \
				--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
				--change 'VOLUME /var/lib/buildkit' \
				--change "LABEL $IMAGE_LABEL=$inputs" \
				--change "LABEL org.copa-test.buildkit-version=$v" \
				- "$image" >/dev/null
		rm -rf "$work"
	else
		log "image: $image in docker"
	fi

	if [[ $(podman_image_inputs "$image") != "$inputs" ]]; then
		log "image: loading $image into podman"
		docker save "$image" | podman load -q >/dev/null
		# podman names a docker-archive image localhost/…; give it the
		# unqualified docker.io name too so both spellings resolve.
		podman tag "localhost/$image" "docker.io/$image" 2>/dev/null || true
	else
		log "image: $image in podman"
	fi

	if [[ $(containerd_image_inputs "$image") != "$inputs" ]]; then
		log "image: loading $image into containerd (namespace default)"
		docker save "$image" | "$(nerdctl_bin)" --namespace default load >/dev/null
	else
		log "image: $image in containerd"
	fi
}

# ---------------------------------------------------------------- main ------
mkdir -p "$CACHE" "$LOG_DIR"
install_apt
install_rust_target
install_go_programs
link_programs
build_rootfs
# Images are stored by the engines: make sure containerd and dockerd run.
"$HERE/up.sh" --engines-only
for v in "${BK_VERSIONS[@]}"; do
	build_image "$v"
done
log "setup done in $((SECONDS - T0))s"
