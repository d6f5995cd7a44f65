#!/usr/bin/env bash
# Start, idempotently and as root, every real component the integration tests
# talk to, then write /run/copa-test/env (lines of `export K=V`).
# Whatever already runs and answers is left alone, so a second run takes
# seconds. Needs scripts/setup.sh to have run. Logs: /var/log/copa-test/.
#
#   scripts/up.sh                 everything
#   scripts/up.sh --engines-only  only containerd and dockerd (used by setup.sh)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

need_root
T0=$SECONDS
ENGINES_ONLY=0
[[ ${1:-} == --engines-only ]] && ENGINES_ONLY=1

mkdir -p "$RUN_DIR" "$STATE" "$LOG_DIR"
chmod 0755 "$STATE"

BUILDCTL=$(buildctl_new)
NERDCTL=$(nerdctl_bin)

bk_ready() { "$BUILDCTL" --addr "$1" debug workers; }

# --------------------------------------------------------------- containerd --
containerd_ready() {
	[[ -S /run/containerd/containerd.sock ]] &&
		ctr --address /run/containerd/containerd.sock --connect-timeout 2s --timeout 10s version
}

up_containerd() {
	if containerd_ready >/dev/null 2>&1; then
		log "containerd: running"
		return
	fi
	# Debian's default config, less the CRI plugin (no Kubernetes here).
	cat >"$STATE/containerd.toml" <<-'EOF'
		version = 2
		disabled_plugins = ["io.containerd.grpc.v1.cri"]
	EOF
	stop_daemon containerd 5
	start_daemon containerd containerd --config "$STATE/containerd.toml"
	wait_for containerd 60 containerd_ready || die "containerd did not start (see $LOG_DIR/containerd.log)"
}

# ------------------------------------------------------------------- dockerd --
docker_ready() { docker info; }

up_dockerd() {
	if docker_ready >/dev/null 2>&1; then
		log "dockerd: running"
		return
	fi
	stop_daemon dockerd 5
	rm -f /var/run/docker.pid
	# The default bridge and iptables are kept: dockerd's own BuildKit runs
	# RUN/exec steps on the "bridge" network (--bridge=none makes every exec
	# fail with "network bridge not found") and reaches Debian's mirror
	# through its NAT. Test containers themselves use --network host.
	start_daemon dockerd dockerd \
		--host unix:///var/run/docker.sock \
		--containerd /run/containerd/containerd.sock \
		--insecure-registry "127.0.0.1:$PORT_REGISTRY"
	wait_for dockerd 90 docker_ready || die "dockerd did not start (see $LOG_DIR/dockerd.log)"
}

# ------------------------------------------------------------------ registry --
registry_ready() { curl -fsS -o /dev/null "http://127.0.0.1:$PORT_REGISTRY/v2/"; }

up_registry() {
	if registry_ready >/dev/null 2>&1; then
		log "registry: running on 127.0.0.1:$PORT_REGISTRY"
		return
	fi
	mkdir -p "$STATE/registry/data"
	cat >"$STATE/registry/config.yml" <<-EOF
		version: 0.1
		log:
		  level: info
		  accesslog:
		    disabled: false
		storage:
		  filesystem:
		    rootdirectory: $STATE/registry/data
		  delete:
		    enabled: true
		  cache:
		    blobdescriptor: inmemory
		http:
		  addr: 127.0.0.1:$PORT_REGISTRY
		  headers:
		    X-Content-Type-Options: [nosniff]
	EOF
	stop_daemon registry 5
	start_daemon registry docker-registry serve "$STATE/registry/config.yml"
	wait_for registry 30 registry_ready || die "registry did not start (see $LOG_DIR/registry.log)"
}

# ----------------------------------------------------------------------- TLS --
up_tls() {
	local d=$STATE/tls
	if [[ -s $d/ca.pem && -s $d/server-cert.pem && -s $d/server-key.pem &&
		-s $d/client-cert.pem && -s $d/client-key.pem ]]; then
		return
	fi
	log "tls: generating CA, server and client certificates in $d"
	rm -rf "$d"
	mkdir -p "$d"
	chmod 0700 "$d"
	local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
	openssl req -x509 "${ec[@]}" -days 3650 -subj "/CN=copa-test CA" \
		-keyout "$d/ca-key.pem" -out "$d/ca.pem" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	local who
	for who in server client; do
		openssl req -new "${ec[@]}" -subj "/CN=copa-test-$who" \
			-keyout "$d/$who-key.pem" -out "$d/$who.csr" 2>/dev/null
	done
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" \
		-CAcreateserial -days 3650 -out "$d/server-cert.pem" -extfile /dev/stdin 2>/dev/null <<-'EOF'
		basicConstraints=critical,CA:FALSE
		keyUsage=critical,digitalSignature,keyEncipherment
		extendedKeyUsage=serverAuth
		subjectAltName=IP:127.0.0.1,DNS:localhost
		subjectKeyIdentifier=hash
		authorityKeyIdentifier=keyid,issuer
	EOF
	openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" \
		-CAcreateserial -days 3650 -out "$d/client-cert.pem" -extfile /dev/stdin 2>/dev/null <<-'EOF'
		basicConstraints=critical,CA:FALSE
		keyUsage=critical,digitalSignature,keyEncipherment
		extendedKeyUsage=clientAuth
		subjectKeyIdentifier=hash
		authorityKeyIdentifier=keyid,issuer
	EOF
	rm -f "$d"/*.csr "$d/ca.srl"
	chmod 0600 "$d"/*-key.pem
}

# --------------------------------------------------------- host buildkitds --
up_host_buildkitd() {
	local v=$1
	shift
	local sock name
	sock=$(bk_sock "$v")
	name=buildkitd-$v
	if bk_ready "unix://$sock" >/dev/null 2>&1; then
		log "$name: running on unix://$sock"
		return
	fi
	stop_daemon "$name" 10
	rm -f "$sock"
	buildkitd_toml_common >"$STATE/buildkitd.toml"
	mkdir -p "$STATE/buildkit-$v"
	start_daemon "$name" "$(bk_dir "$v")/buildkitd" \
		--config "$STATE/buildkitd.toml" \
		--root "$STATE/buildkit-$v" \
		--addr "unix://$sock" \
		--oci-worker-net=host \
		--containerd-worker=false \
		"$@"
	wait_for "$name" 60 bk_ready "unix://$sock" || die "$name did not start (see $LOG_DIR/$name.log)"
}

up_buildkitds() {
	local tls=$STATE/tls
	# v0.12.4: unix socket plus a plain TCP listener.
	up_host_buildkitd "$BK_OLD" --addr "tcp://127.0.0.1:$PORT_TCP_PLAIN"
	# newest: unix socket plus TCP with mutual TLS.
	up_host_buildkitd "$BK_NEW" --addr "tcp://127.0.0.1:$PORT_TCP_TLS" \
		--tlscacert "$tls/ca.pem" --tlscert "$tls/server-cert.pem" --tlskey "$tls/server-key.pem"
	wait_for "TLS listener" 30 "$BUILDCTL" --addr "tcp://127.0.0.1:$PORT_TCP_TLS" \
		--tlscacert "$tls/ca.pem" --tlscert "$tls/client-cert.pem" --tlskey "$tls/client-key.pem" \
		debug workers || die "TLS listener on :$PORT_TCP_TLS does not answer"
	wait_for "plain TCP listener" 30 bk_ready "tcp://127.0.0.1:$PORT_TCP_PLAIN" ||
		die "plain TCP listener on :$PORT_TCP_PLAIN does not answer"
}

# ----------------------------------------------------------------------- ssh --
up_sshd() {
	local d=$STATE/ssh
	mkdir -p "$d" /run/sshd
	chmod 0700 "$d"
	[[ -s $d/ssh_host_ed25519_key ]] ||
		ssh-keygen -q -t ed25519 -N '' -C copa-test-host -f "$d/ssh_host_ed25519_key"
	[[ -s $d/client_ed25519 ]] ||
		ssh-keygen -q -t ed25519 -N '' -C copa-test-client -f "$d/client_ed25519"
	install -m 0600 "$d/client_ed25519.pub" "$d/authorized_keys"
	cat >"$d/sshd_config.new" <<-EOF
		# copa test sshd: loopback only, root by key only.
		ListenAddress 127.0.0.1:$PORT_SSH
		HostKey $d/ssh_host_ed25519_key
		PidFile $RUN_DIR/sshd.pid
		AuthorizedKeysFile $d/authorized_keys
		PermitRootLogin prohibit-password
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes yes
		X11Forwarding no
		AllowTcpForwarding no
		PrintMotd no
		MaxStartups 50:30:100
		MaxSessions 50
		LogLevel VERBOSE
	EOF
	local changed=0
	if ! cmp -s "$d/sshd_config.new" "$d/sshd_config"; then
		mv "$d/sshd_config.new" "$d/sshd_config"
		changed=1
	else
		rm -f "$d/sshd_config.new"
	fi
	/usr/sbin/sshd -t -f "$d/sshd_config" || die "sshd config invalid"

	# Managed block in /root/.ssh/config, at the top so no earlier `Host *`
	# overrides it.
	mkdir -p /root/.ssh
	chmod 0700 /root/.ssh
	local cfg=/root/.ssh/config block rest
	block=$(
		cat <<-EOF
			# BEGIN copa-test (managed by scripts/up.sh)
			Host copa-ssh-test
			  HostName 127.0.0.1
			  Port $PORT_SSH
			  User root
			  IdentityFile $d/client_ed25519
			  IdentitiesOnly yes
			  StrictHostKeyChecking accept-new
			  UserKnownHostsFile $d/known_hosts
			  BatchMode yes
			  LogLevel ERROR
			# END copa-test
		EOF
	)
	rest=""
	if [[ -f $cfg ]]; then
		rest=$(sed '/^# BEGIN copa-test/,/^# END copa-test/d' "$cfg")
	fi
	if [[ -n $rest ]]; then
		printf '%s\n\n%s\n' "$block" "$rest" >"$cfg.new"
	else
		printf '%s\n' "$block" >"$cfg.new"
	fi
	if cmp -s "$cfg.new" "$cfg"; then rm -f "$cfg.new"; else mv "$cfg.new" "$cfg"; fi
	chmod 0600 "$cfg"

	if ((changed == 0)) && pid_alive "$RUN_DIR/sshd.pid" && tcp_listening "$PORT_SSH"; then
		log "sshd: running on 127.0.0.1:$PORT_SSH"
	else
		stop_daemon sshd 5
		# -D: stay in the foreground of its own session; -e: log to stderr.
		start_daemon sshd /usr/sbin/sshd -D -e -f "$d/sshd_config"
		wait_for sshd 30 tcp_listening "$PORT_SSH" || die "sshd did not start (see $LOG_DIR/sshd.log)"
	fi
	wait_for "ssh login" 30 ssh copa-ssh-test true || die "ssh copa-ssh-test does not log in"
}

# ------------------------------------------------ buildkitd in containers ----
# Flags that work here. --privileged, and --cap-add=ALL without dropping
# SYS_RESOURCE, both fail with "unable to apply caps" (root here lacks
# CAP_SYS_RESOURCE).
CONTAINER_FLAGS=(
	--cap-add=ALL --cap-drop=SYS_RESOURCE
	--security-opt seccomp=unconfined --security-opt apparmor=unconfined
	--cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
	--network host
)

# container_current NAME VERSION ENGINE...: NAME runs and was made from the
# image inputs of VERSION (label set at `run`), so a rebuilt image replaces it.
container_current() {
	local name=$1 v=$2
	shift 2
	local state
	state=$("$@" inspect -f "{{.State.Running}} {{ index .Config.Labels \"$IMAGE_LABEL\" }}" "$name" 2>/dev/null) ||
		return 1
	[[ $state == "true $(image_inputs "$v")" ]]
}

up_docker_container() {
	local name=$1 v=$2 image
	image=$(bk_image "$v")
	if container_current "$name" "$v" docker &&
		bk_ready "docker-container://$name" >/dev/null 2>&1; then
		log "docker container $name: running"
		return
	fi
	docker rm -f "$name" >/dev/null 2>&1 || true
	docker run -d --name "$name" --restart no \
		--label "$IMAGE_LABEL=$(image_inputs "$v")" \
		"${CONTAINER_FLAGS[@]}" --security-opt systempaths=unconfined \
		-v "${name}_state:/var/lib/buildkit" \
		"$image" >/dev/null
	log "docker container $name: started ($image)"
	wait_for "docker container $name" 60 bk_ready "docker-container://$name" ||
		{ docker logs --tail 20 "$name" >&2 || true; die "$name did not become ready"; }
}

up_podman_container() {
	local name=copa-bk-podman image
	image=docker.io/$(bk_image "$BK_NEW")
	if container_current "$name" "$BK_NEW" podman &&
		bk_ready "podman-container://$name" >/dev/null 2>&1; then
		log "podman container $name: running"
		return
	fi
	podman rm -f "$name" >/dev/null 2>&1 || true
	# Podman's default rlimits are refused here ("error setting rlimit type
	# 7"); give explicit ones.
	# crun refuses this hybrid cgroup layout ("cgroups in hybrid mode not
	# supported"); runc copes.
	podman run -d --name "$name" --runtime runc \
		--label "$IMAGE_LABEL=$(image_inputs "$BK_NEW")" \
		"${CONTAINER_FLAGS[@]}" --security-opt unmask=ALL \
		--ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
		-v "${name}_state:/var/lib/buildkit" \
		"$image" >/dev/null
	log "podman container $name: started ($image)"
	wait_for "podman container $name" 60 bk_ready "podman-container://$name" ||
		{ podman logs --tail 20 "$name" >&2 || true; die "$name did not become ready"; }
}

up_nerdctl_container() {
	local name=copa-bk-nerdctl image
	image=docker.io/$(bk_image "$BK_NEW")
	local nctl=("$NERDCTL" --namespace default)
	if container_current "$name" "$BK_NEW" "${nctl[@]}" &&
		bk_ready "nerdctl-container://$name" >/dev/null 2>&1; then
		log "nerdctl container $name: running"
		return
	fi
	"${nctl[@]}" rm -f "$name" >/dev/null 2>&1 || true
	# --network host: no CNI network needed.
	"${nctl[@]}" run -d --name "$name" \
		--label "$IMAGE_LABEL=$(image_inputs "$BK_NEW")" \
		"${CONTAINER_FLAGS[@]}" --security-opt systempaths=unconfined \
		-v "${name}_state:/var/lib/buildkit" \
		"$image" >/dev/null 2>>"$LOG_DIR/nerdctl.log" ||
		{ tail -n 5 "$LOG_DIR/nerdctl.log" >&2; die "nerdctl run $name failed"; }
	log "nerdctl container $name: started ($image)"
	wait_for "nerdctl container $name" 60 bk_ready "nerdctl-container://$name" ||
		{ "${nctl[@]}" logs "$name" 2>&1 | tail -n 20 >&2 || true; die "$name did not become ready"; }
}

# -------------------------------------------------------------------- buildx --
# buildx's docker-container driver creates its container --privileged, which
# fails here, so the builder is written the way `docker buildx create` would
# store it (buildx store/nodegroup.go: NodeGroup{Name, Driver, Nodes,
# Dynamic}, Node{Name, Endpoint, Platforms, DriverOpts, Flags, Files}) and its
# container buildx_buildkit_<node> is started with the flags that work.
up_buildx() {
	local dir=$DOCKER_CONFIG_DIR/buildx image
	image=$(bk_image "$BK_NEW")
	mkdir -p "$dir/instances" "$dir/defaults" "$dir/activity"
	chmod 0700 "$DOCKER_CONFIG_DIR" "$dir" "$dir/instances" "$dir/defaults" "$dir/activity"
	[[ -f $DOCKER_CONFIG_DIR/config.json ]] || echo '{}' >"$DOCKER_CONFIG_DIR/config.json"
	jq -cn --arg name "$BUILDX_BUILDER" --arg node "$BUILDX_NODE" --arg image "$image" '{
		Name: $name,
		Driver: "docker-container",
		Nodes: [{
			Name: $node,
			Endpoint: "unix:///var/run/docker.sock",
			Platforms: null,
			DriverOpts: {image: $image, network: "host"},
			Flags: ["--allow-insecure-entitlement=network.host"],
			Files: null
		}],
		Dynamic: false
	}' >"$dir/instances/.tmp-$BUILDX_BUILDER"
	chmod 0600 "$dir/instances/.tmp-$BUILDX_BUILDER"
	mv "$dir/instances/.tmp-$BUILDX_BUILDER" "$dir/instances/$BUILDX_BUILDER"

	local name=$BUILDX_CONTAINER
	if container_current "$name" "$BK_NEW" docker &&
		bk_ready "docker-container://$name" >/dev/null 2>&1; then
		log "buildx container $name: running"
	else
		docker rm -f "$name" >/dev/null 2>&1 || true
		# buildx's own labels, so `buildx rm`/`prune` recognise it.
		docker run -d --name "$name" --restart unless-stopped \
			--label "$IMAGE_LABEL=$(image_inputs "$BK_NEW")" \
			--label "com.docker.buildx.driver=docker-container" \
			--label "com.docker.buildx.builder=$BUILDX_BUILDER" \
			"${CONTAINER_FLAGS[@]}" --security-opt systempaths=unconfined \
			-v "${name}_state:/var/lib/buildkit" \
			"$image" --allow-insecure-entitlement=network.host >/dev/null
		log "buildx container $name: started"
		wait_for "buildx container $name" 60 bk_ready "docker-container://$name" ||
			{ docker logs --tail 20 "$name" >&2 || true; die "$name did not become ready"; }
	fi
	# Let buildx itself record the current builder (buildx/current).
	DOCKER_CONFIG=$DOCKER_CONFIG_DIR docker buildx use "$BUILDX_BUILDER"
	wait_for "docker buildx inspect $BUILDX_BUILDER" 60 \
		env DOCKER_CONFIG="$DOCKER_CONFIG_DIR" docker buildx inspect "$BUILDX_BUILDER" ||
		die "docker buildx inspect $BUILDX_BUILDER fails"
}

# ------------------------------------------------------------------ env file --
write_env() {
	local tls=$STATE/tls tmp k v
	local -a entries=(
		COPA_TEST_UNIX_V12 "unix://$(bk_sock "$BK_OLD")"
		COPA_TEST_UNIX_NEW "unix://$(bk_sock "$BK_NEW")"
		COPA_TEST_TCP_TLS "tcp://127.0.0.1:$PORT_TCP_TLS"
		COPA_TEST_TLS_CACERT "$tls/ca.pem"
		COPA_TEST_TLS_CERT "$tls/client-cert.pem"
		COPA_TEST_TLS_KEY "$tls/client-key.pem"
		COPA_TEST_TCP_PLAIN "tcp://127.0.0.1:$PORT_TCP_PLAIN"
		COPA_TEST_DOCKER "docker://unix:///var/run/docker.sock"
		COPA_TEST_DOCKER_CONTAINER "docker-container://copa-bk-docker"
		COPA_TEST_DOCKER_CONTAINER_V12 "docker-container://copa-bk-docker-v12"
		COPA_TEST_PODMAN_CONTAINER "podman-container://copa-bk-podman"
		COPA_TEST_NERDCTL_CONTAINER "nerdctl-container://copa-bk-nerdctl"
		COPA_TEST_DOCKER_CONFIG "$DOCKER_CONFIG_DIR"
		COPA_TEST_BUILDX "buildx://$BUILDX_BUILDER"
		COPA_TEST_SSH "ssh://root@copa-ssh-test:$PORT_SSH$(bk_sock "$BK_NEW")"
		COPA_TEST_SSH_PORT "$PORT_SSH"
		COPA_TEST_REGISTRY "127.0.0.1:$PORT_REGISTRY"
		COPA_TEST_KUBECTL_DIR "$REPO/tests/support/bin"
		COPA_TEST_KUBE_BUILDKIT "unix://$(bk_sock "$BK_NEW")"
		# extras
		COPA_TEST_BUILDCTL "$BUILDCTL"
		COPA_TEST_BUILDCTL_V12 "$(bk_dir "$BK_OLD")/buildctl"
		COPA_TEST_BUILDKIT_IMAGE "$(bk_image "$BK_NEW")"
		COPA_TEST_BUILDKIT_IMAGE_V12 "$(bk_image "$BK_OLD")"
		COPA_TEST_ROOTFS_TAR "$ROOTFS_TAR"
	)
	tmp=$ENV_FILE.tmp
	{
		echo "# written by scripts/up.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ); values need no quoting"
		local i
		for ((i = 0; i < ${#entries[@]}; i += 2)); do
			k=${entries[i]} v=${entries[i + 1]}
			[[ $v =~ ^[A-Za-z0-9_:/.@+=-]+$ ]] || die "env value for $k needs quoting: $v"
			printf 'export %s=%s\n' "$k" "$v"
		done
	} >"$tmp"
	chmod 0644 "$tmp"
	mv "$tmp" "$ENV_FILE"
	log "wrote $ENV_FILE"
}

# ---------------------------------------------------------------------- main --
up_containerd
up_dockerd
if ((ENGINES_ONLY)); then
	exit 0
fi
[[ -x $BUILDCTL ]] || die "buildctl not found at $BUILDCTL: run scripts/setup.sh first"
for v in "${BK_VERSIONS[@]}"; do
	docker image inspect "$(bk_image "$v")" >/dev/null 2>&1 ||
		die "image $(bk_image "$v") missing: run scripts/setup.sh first"
done
rm -f "$ENV_FILE"
up_registry
up_tls
up_buildkitds
up_sshd
up_docker_container copa-bk-docker "$BK_NEW"
up_docker_container copa-bk-docker-v12 "$BK_OLD"
up_podman_container
up_nerdctl_container
up_buildx
write_env
if [[ -x $HERE/fixtures.sh && -z ${COPA_TEST_SKIP_FIXTURES:-} ]]; then "$HERE/fixtures.sh"; fi
log "up done in $((SECONDS - T0))s"
