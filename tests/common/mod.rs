//! Helpers shared by the integration tests that talk to the real daemons
//! started by `scripts/up.sh`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Command, Output};

/// Where `scripts/up.sh` writes the addresses of what it started.
pub const ENV_FILE: &str = "/run/copa-test/env";

/// The entries of the test environment file. Fails the test, rather than
/// skipping it, when the environment is not up: CI always starts it.
pub fn test_env() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(ENV_FILE).unwrap_or_else(|e| {
        panic!("cannot read {ENV_FILE} ({e}); start the test daemons with `scripts/up.sh`")
    });
    text.lines()
        .filter_map(|line| line.strip_prefix("export ").or(Some(line)))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}

/// One entry of the test environment.
pub fn env(key: &str) -> String {
    test_env()
        .remove(key)
        .unwrap_or_else(|| panic!("{ENV_FILE} has no `{key}`; rerun `scripts/up.sh`"))
}

/// A `copa` command with a private plugin cache and no stray configuration.
pub fn copa() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_copa"));
    let cache = std::env::temp_dir().join("copa-integration-cache");
    cmd.env("COPA_CACHE_DIR", cache)
        .env_remove("BUILDKIT_HOST")
        .env_remove("COPA_PLUGIN_PATH")
        .env_remove("COPA_PLUGIN_POLICY")
        .env_remove("COPA_PLUGIN_OVERRIDE")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("BUILDX_BUILDER");
    cmd
}

/// Runs a command and returns its output, with stdout and stderr as text.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let output = cmd.output().expect("failed to run copa");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// Runs a command that must succeed and print JSON.
pub fn run_json(cmd: &mut Command) -> serde_json::Value {
    let (output, stdout, stderr) = run(cmd);
    assert!(
        output.status.success(),
        "{cmd:?} failed: {stderr}\nstdout: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}
