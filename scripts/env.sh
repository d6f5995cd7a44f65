# shellcheck shell=bash
# Source me: exports the test addresses that scripts/up.sh wrote to
# /run/copa-test/env (COPA_TEST_* variables).
#
#   source scripts/env.sh && buildctl --addr "$COPA_TEST_UNIX_NEW" debug workers
#
# Only `export COPA_TEST_NAME=value` lines are taken; nothing in the file is
# executed. Returns 1 when the file is missing. Leaves the caller's shell
# options alone.

copa_test_env_load() {
	local file=${COPA_TEST_ENV_FILE:-/run/copa-test/env} line name value
	if [[ ! -r $file ]]; then
		echo "copa test env: $file not found; run scripts/up.sh as root" >&2
		return 1
	fi
	while IFS= read -r line || [[ -n $line ]]; do
		if [[ $line =~ ^export\ (COPA_TEST_[A-Z0-9_]+)=(.*)$ ]]; then
			name=${BASH_REMATCH[1]}
			value=${BASH_REMATCH[2]}
			export "$name=$value"
		fi
	done <"$file"
}

copa_test_env_load
