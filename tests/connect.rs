//! `copa connect` through every address form, against the real daemons that
//! `scripts/up.sh` starts: buildkitd v0.12.4 and the newest release on unix
//! sockets and TCP (mTLS), Docker's embedded BuildKit, buildkitd in Docker,
//! Podman and nerdctl containers, a buildx builder, and ssh to loopback.
//! kubepod goes through a stand-in `kubectl` (no cluster can run here) that
//! runs the real `buildctl dial-stdio` locally.

mod common;

use common::{copa, env, run, run_json};

/// Connects and checks what every BuildKit must report.
fn connect_json(addr: &str, extra: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = copa();
    cmd.args(["connect", "--json", "--addr", addr]);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let report = run_json(&mut cmd);

    assert_eq!(report["address"], addr);
    let workers = report["workers"].as_array().expect("workers");
    assert!(!workers.is_empty(), "no workers: {report}");
    let platforms = workers[0]["platforms"].as_array().unwrap();
    assert!(
        platforms.iter().any(|p| p == "linux/amd64"),
        "no linux/amd64 worker: {report}"
    );
    let llb = report["capabilities"]["llb"].as_array().unwrap();
    assert!(llb.iter().any(|c| c == "source.image"), "{report}");
    for step in ["resolve", "dial", "info", "workers", "probe", "total"] {
        assert!(report["timings_ms"][step].is_number(), "no {step} timing");
    }
    report
}

fn assert_full_buildkit(report: &serde_json::Value, version: &str) {
    assert_eq!(report["buildkit"]["version"], version, "{report}");
    assert_eq!(report["capabilities"]["merge_op"], true, "{report}");
    assert_eq!(report["capabilities"]["diff_op"], true, "{report}");
}

fn plugin_name(report: &serde_json::Value) -> &str {
    assert_eq!(report["served_by"]["kind"], "plugin", "{report}");
    report["served_by"]["name"].as_str().unwrap()
}

#[test]
fn unix_socket_reaches_buildkit_v0_12_4() {
    let report = connect_json(&env("COPA_TEST_UNIX_V12"), &[]);
    assert_full_buildkit(&report, "v0.12.4");
    assert_eq!(report["served_by"]["kind"], "native");
}

#[test]
fn unix_socket_reaches_the_newest_buildkit() {
    let report = connect_json(&env("COPA_TEST_UNIX_NEW"), &[]);
    assert_full_buildkit(&report, "v0.34.2");
}

#[test]
fn tcp_with_mutual_tls_reaches_buildkit() {
    let addr = env("COPA_TEST_TCP_TLS");
    let mut cmd = copa();
    cmd.args(["connect", "--json", "--addr", &addr]);
    cmd.args(["--cacert", &env("COPA_TEST_TLS_CACERT")]);
    cmd.args(["--cert", &env("COPA_TEST_TLS_CERT")]);
    cmd.args(["--key", &env("COPA_TEST_TLS_KEY")]);
    let report = run_json(&mut cmd);
    assert_full_buildkit(&report, "v0.34.2");
}

#[test]
fn tcp_with_tls_but_no_client_certificate_is_refused_by_the_daemon() {
    let addr = env("COPA_TEST_TCP_TLS");
    let mut cmd = copa();
    cmd.args(["connect", "--addr", &addr, "--timeout", "20"]);
    cmd.args(["--cacert", &env("COPA_TEST_TLS_CACERT")]);
    let (output, _, stderr) = run(&mut cmd);
    assert!(!output.status.success());
    assert!(stderr.contains(&addr), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn plain_tcp_connects_with_a_warning() {
    let addr = env("COPA_TEST_TCP_PLAIN");
    let mut cmd = copa();
    cmd.args(["connect", "--addr", &addr]);
    let (output, stdout, stderr) = run(&mut cmd);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("v0.12.4"), "{stdout}");
    assert!(stderr.contains("without TLS"), "{stderr}");
}

#[test]
fn tls_flags_with_a_non_tcp_address_are_an_error_not_ignored() {
    let mut cmd = copa();
    cmd.args(["connect", "--addr", &env("COPA_TEST_UNIX_NEW")]);
    cmd.args(["--cacert", &env("COPA_TEST_TLS_CACERT")]);
    let (output, _, stderr) = run(&mut cmd);
    assert!(!output.status.success());
    assert!(
        stderr.contains("apply to tcp:// addresses only"),
        "{stderr}"
    );
}

#[test]
fn docker_engine_embedded_buildkit_is_reached_through_grpc_upgrade() {
    let report = connect_json(&env("COPA_TEST_DOCKER"), &[]);
    assert_eq!(plugin_name(&report), "docker");
    assert_eq!(report["dial"]["kind"], "docker-grpc");
    // Docker 20.10 on its classic image store: no MergeOp/DiffOp, reported as such.
    assert_eq!(report["capabilities"]["merge_op"], false, "{report}");
}

#[test]
fn empty_docker_address_uses_docker_host() {
    let report = connect_json(
        "docker://",
        &[("DOCKER_HOST", "unix:///var/run/docker.sock")],
    );
    assert_eq!(report["dial"]["endpoint"], "unix:///var/run/docker.sock");
}

#[test]
fn docker_container_reaches_the_newest_buildkit_through_the_engine_api() {
    let report = connect_json(&env("COPA_TEST_DOCKER_CONTAINER"), &[]);
    assert_eq!(plugin_name(&report), "docker-container");
    assert_eq!(report["dial"]["kind"], "docker-exec");
    assert_full_buildkit(&report, "v0.34.2");
}

#[test]
fn docker_container_reaches_buildkit_v0_12_4() {
    let report = connect_json(&env("COPA_TEST_DOCKER_CONTAINER_V12"), &[]);
    assert_full_buildkit(&report, "v0.12.4");
}

#[test]
fn podman_container_reaches_buildkit() {
    let report = connect_json(&env("COPA_TEST_PODMAN_CONTAINER"), &[]);
    assert_eq!(plugin_name(&report), "podman-container");
    assert_eq!(report["dial"]["program"], "podman");
    assert_full_buildkit(&report, "v0.34.2");
}

#[test]
fn nerdctl_container_reaches_buildkit() {
    let report = connect_json(&env("COPA_TEST_NERDCTL_CONTAINER"), &[]);
    assert_eq!(plugin_name(&report), "nerdctl-container");
    assert_full_buildkit(&report, "v0.34.2");
}

#[test]
fn named_buildx_builder_is_reached() {
    let config = env("COPA_TEST_DOCKER_CONFIG");
    let report = connect_json(&env("COPA_TEST_BUILDX"), &[("DOCKER_CONFIG", &config)]);
    assert_eq!(plugin_name(&report), "buildx");
    assert_eq!(report["dial"]["container"], "buildx_buildkit_copa-builder0");
    assert_full_buildkit(&report, "v0.34.2");
}

#[test]
fn empty_buildx_address_uses_the_current_builder() {
    let config = env("COPA_TEST_DOCKER_CONFIG");
    let report = connect_json("buildx://", &[("DOCKER_CONFIG", &config)]);
    assert_eq!(report["dial"]["container"], "buildx_buildkit_copa-builder0");
}

#[test]
fn ssh_reaches_buildkit_on_the_remote_socket() {
    let report = connect_json(&env("COPA_TEST_SSH"), &[]);
    assert_eq!(plugin_name(&report), "ssh");
    assert_eq!(report["dial"]["program"], "ssh");
    assert_full_buildkit(&report, "v0.34.2");
}

/// No Kubernetes cluster can run here: this goes through the stand-in
/// `kubectl` in tests/support/bin, which logs its argv and runs the real
/// `buildctl dial-stdio` against a local buildkitd.
#[test]
fn kubepod_reaches_buildkit_through_a_stand_in_kubectl() {
    for scheme in ["kubepod", "kube-pod"] {
        let log = tempfile::NamedTempFile::new().unwrap();
        let path = format!(
            "{}:{}",
            env("COPA_TEST_KUBECTL_DIR"),
            std::env::var("PATH").unwrap()
        );
        let addr =
            format!("{scheme}://buildkitd-0?context=kind-ci&namespace=buildkit&container=bk");
        let log_path = log.path().display().to_string();
        let report = connect_json(
            &addr,
            &[
                ("PATH", &path),
                ("COPA_FAKE_KUBECTL_LOG", &log_path),
                ("COPA_TEST_KUBE_BUILDKIT", &env("COPA_TEST_KUBE_BUILDKIT")),
            ],
        );
        assert_eq!(plugin_name(&report), "kubepod");
        assert_full_buildkit(&report, "v0.34.2");

        let logged = std::fs::read_to_string(log.path()).unwrap();
        let argv: Vec<String> = serde_json::from_str(logged.lines().next().unwrap()).unwrap();
        let expected = [
            "--context=kind-ci",
            "--namespace=buildkit",
            "exec",
            "-i",
            "--container=bk",
            "buildkitd-0",
            "--",
            "buildctl",
            "dial-stdio",
        ];
        assert_eq!(argv, expected, "kubectl argv");
    }
}

#[test]
fn without_an_address_buildkit_host_comes_first() {
    let addr = env("COPA_TEST_UNIX_V12");
    let mut cmd = copa();
    cmd.args(["connect", "--json"]).env("BUILDKIT_HOST", &addr);
    let report = run_json(&mut cmd);
    assert_eq!(report["address"], addr.as_str());
    assert_eq!(report["attempts"].as_array().unwrap().len(), 0);
}

#[test]
fn without_an_address_the_docker_engine_is_tried_next_and_failures_are_reported() {
    let mut cmd = copa();
    cmd.args(["connect", "--json"])
        .env("BUILDKIT_HOST", "unix:///nonexistent/buildkitd.sock");
    let report = run_json(&mut cmd);
    assert_eq!(report["address"], "docker://");
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{report}");
    assert_eq!(attempts[0]["address"], "unix:///nonexistent/buildkitd.sock");
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/buildkitd.sock"),
        "{report}"
    );
}

#[test]
fn without_an_address_the_candidates_come_in_the_documented_order() {
    let mut cmd = copa();
    cmd.args(["resolve", "--json"])
        .env("BUILDKIT_HOST", "tcp://127.0.0.1:1")
        .env("DOCKER_CONFIG", env("COPA_TEST_DOCKER_CONFIG"));
    let report = run_json(&mut cmd);
    let order: Vec<&str> = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "tcp://127.0.0.1:1",
            "docker://",
            "buildx://",
            "unix:///run/buildkit/buildkitd.sock"
        ]
    );
    assert_eq!(
        report["candidates"][2]["dial"]["container"],
        "buildx_buildkit_copa-builder0"
    );
}

#[test]
fn when_nothing_answers_every_attempt_is_named_in_one_error() {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = copa();
    cmd.args(["connect", "--timeout", "20"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("DOCKER_CONFIG", empty.path())
        .env("BUILDKIT_HOST", "unix:///nonexistent/buildkitd.sock");
    let (output, _, stderr) = run(&mut cmd);
    assert!(!output.status.success());
    let last = stderr.trim().lines().last().unwrap();
    assert!(last.starts_with("error: no BuildKit found"), "{stderr}");
    for tried in [
        "unix:///nonexistent/buildkitd.sock",
        "docker://",
        "buildx://",
    ] {
        assert!(last.contains(tried), "{tried} missing: {stderr}");
    }
}

#[test]
fn failed_transport_process_shows_its_stderr() {
    let mut cmd = copa();
    cmd.args([
        "connect",
        "--addr",
        "podman-container://copa-no-such-container",
        "--timeout",
        "30",
    ]);
    let (output, _, stderr) = run(&mut cmd);
    assert!(!output.status.success());
    assert!(stderr.contains("copa-no-such-container"), "{stderr}");
    assert!(stderr.contains("transport said"), "{stderr}");
}

#[test]
fn missing_docker_container_is_named_in_the_error() {
    let mut cmd = copa();
    cmd.args([
        "connect",
        "--addr",
        "docker-container://copa-no-such-container",
    ]);
    let (output, _, stderr) = run(&mut cmd);
    assert!(!output.status.success());
    assert!(stderr.contains("copa-no-such-container"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}
