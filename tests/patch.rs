//! `copa patch` end to end against the real daemons of `scripts/up.sh`: the
//! hermetic vulnerable image (its fixed packages served by a local apt
//! repository) patched through every address, then verified by running the
//! patched image, counting its layers and comparing the original layers; the
//! real Debian image patched from the mirror through Docker's own BuildKit;
//! and every bad input refused without leaving an image behind.

mod common;

use std::process::Command;

use common::{copa, env, run};

/// Original layers of an image in Docker (or Podman), in order.
fn layers(engine: &str, image: &str) -> Vec<String> {
    let out = Command::new(engine)
        .args(["image", "inspect", "-f", "{{json .RootFS.Layers}}", image])
        .output()
        .unwrap();
    assert!(out.status.success(), "{engine} has no image `{image}`");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn image_exists(engine: &str, image: &str) -> bool {
    Command::new(engine)
        .args(["image", "inspect", image])
        .output()
        .unwrap()
        .status
        .success()
}

fn remove(engine: &str, image: &str) {
    let _ = Command::new(engine).args(["rmi", "-f", image]).output();
}

/// `name version` of the given packages, read by running the image.
fn installed(engine: &str, image: &str, packages: &[&str]) -> String {
    let mut cmd = Command::new(engine);
    cmd.arg("run").arg("--rm");
    if engine == "podman" {
        cmd.args([
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
        ]);
    }
    cmd.arg(image)
        .args(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"]);
    cmd.args(packages);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn hermetic_target(tag: &str) -> String {
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let repo = image.rsplit_once(':').unwrap().0.to_string();
    format!("{repo}:{tag}")
}

/// Patches the hermetic image through `addr` and checks the result in `engine`.
fn patch_hermetic(addr: &str, tag: &str, engine: &str, extra: &[&str], envs: &[(&str, String)]) {
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let target = hermetic_target(tag);
    remove(engine, &target);

    let mut cmd = copa();
    cmd.args([
        "patch",
        "-i",
        &image,
        "-r",
        &env("COPA_TEST_HERMETIC_REPORT"),
        "-t",
        tag,
        "-a",
        addr,
    ]);
    cmd.args(extra);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (output, stdout, stderr) = run(&mut cmd);
    assert!(output.status.success(), "{addr}: {stderr}");
    assert!(
        stdout.starts_with(&format!("patched {image} -> {target}: 2 packages updated")),
        "{stdout}"
    );

    assert_eq!(
        installed(
            engine,
            &target,
            &["copa-hello", "copa-libdemo", "copa-tool"]
        ),
        "copa-hello 1.0-2\ncopa-libdemo 2.1-1\ncopa-tool 3.0-1\n",
        "{addr}"
    );
    let before = layers(engine, &image);
    let after = layers(engine, &target);
    assert_eq!(after.len(), before.len() + 1, "{addr}: one new layer");
    assert_eq!(
        after[..before.len()],
        before[..],
        "{addr}: original layers untouched"
    );
    remove(engine, &target);
}

#[test]
fn patches_through_a_unix_socket_on_buildkit_v0_12_4() {
    patch_hermetic(&env("COPA_TEST_UNIX_V12"), "t-unix-v12", "docker", &[], &[]);
}

#[test]
fn patches_through_a_unix_socket_on_the_newest_buildkit() {
    patch_hermetic(&env("COPA_TEST_UNIX_NEW"), "t-unix-new", "docker", &[], &[]);
}

#[test]
fn patches_through_tcp_with_mutual_tls() {
    let tls = [
        "--cacert",
        &env("COPA_TEST_TLS_CACERT"),
        "--cert",
        &env("COPA_TEST_TLS_CERT"),
        "--key",
        &env("COPA_TEST_TLS_KEY"),
    ]
    .map(String::from);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    patch_hermetic(&env("COPA_TEST_TCP_TLS"), "t-tls", "docker", &tls, &[]);
}

#[test]
fn patches_through_a_docker_container() {
    patch_hermetic(
        &env("COPA_TEST_DOCKER_CONTAINER"),
        "t-docker-container",
        "docker",
        &[],
        &[],
    );
}

#[test]
fn patches_through_a_podman_container_and_loads_into_podman() {
    patch_hermetic(
        &env("COPA_TEST_PODMAN_CONTAINER"),
        "t-podman",
        "podman",
        &[],
        &[],
    );
}

#[test]
fn patches_through_ssh() {
    patch_hermetic(&env("COPA_TEST_SSH"), "t-ssh", "docker", &[], &[]);
}

#[test]
fn patches_through_a_buildx_builder() {
    let config = env("COPA_TEST_DOCKER_CONFIG");
    patch_hermetic(
        &env("COPA_TEST_BUILDX"),
        "t-buildx",
        "docker",
        &[],
        &[("DOCKER_CONFIG", config)],
    );
}

#[test]
fn loader_podman_loads_into_podman_from_any_address() {
    patch_hermetic(
        &env("COPA_TEST_UNIX_NEW"),
        "t-loader-podman",
        "podman",
        &["--loader", "podman"],
        &[],
    );
}

/// Docker 20.10's BuildKit on the classic image store has no MergeOp/DiffOp:
/// the single-exec path, with the real Debian image patched from the mirror.
#[test]
fn patches_the_real_image_through_dockers_buildkit_without_mergeop() {
    let image = env("COPA_TEST_IMAGE_VULN");
    let report = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new("python3")
        .arg(env("COPA_TEST_TRIVY_REPORT"))
        .args(["--image", &image, "--require-some", "-o"])
        .arg(report.path())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the mirror has no newer package for the base image"
    );
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap();
    let wanted: Vec<(String, String)> = plan["Results"][0]["Vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["PkgName"].as_str().unwrap().to_string(),
                v["FixedVersion"].as_str().unwrap().to_string(),
            )
        })
        .collect();

    let target = format!("{}:t-docker-engine", image.rsplit_once(':').unwrap().0);
    remove("docker", &target);
    let mut cmd = copa();
    cmd.args(["patch", "-i", &image, "-r"]).arg(report.path());
    cmd.args(["-t", "t-docker-engine", "-a", &env("COPA_TEST_DOCKER")]);
    let (output, stdout, stderr) = run(&mut cmd);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("single exec (no MergeOp/DiffOp)"),
        "{stdout}"
    );

    let names: Vec<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
    let now = installed("docker", &target, &names);
    for (name, fixed) in &wanted {
        assert!(
            now.contains(&format!("{name} {fixed}")),
            "{name} not at {fixed}: {now}"
        );
    }
    let before = layers("docker", &image);
    let after = layers("docker", &target);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[..before.len()], before[..]);
    remove("docker", &target);
}

#[test]
fn patching_a_patched_image_replaces_its_patch_layer() {
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let addr = env("COPA_TEST_UNIX_NEW");
    let report = env("COPA_TEST_HERMETIC_REPORT");
    let pushed = hermetic_target("t-pushed");
    let (output, _, stderr) = run(copa().args([
        "patch", "-i", &image, "-r", &report, "-t", "t-pushed", "--push", "-a", &addr,
    ]));
    assert!(output.status.success(), "{stderr}");

    let target = hermetic_target("t-repatched");
    let (output, _, stderr) = run(copa().args([
        "patch",
        "-i",
        &pushed,
        "-r",
        &report,
        "-t",
        "t-repatched",
        "-a",
        &addr,
    ]));
    assert!(output.status.success(), "{stderr}");
    let before = layers("docker", &image);
    let after = layers("docker", &target);
    assert_eq!(after.len(), before.len() + 1, "still one patch layer");
    assert_eq!(after[..before.len()], before[..]);
    assert!(installed("docker", &target, &["copa-hello"]).contains("1.0-2"));
    remove("docker", &target);
}

#[test]
fn oci_dir_receives_an_oci_layout_and_vex_lists_the_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let vex = dir.path().join("vex.json");
    let (output, _, stderr) = run(copa()
        .args([
            "patch",
            "-i",
            &env("COPA_TEST_IMAGE_HERMETIC"),
            "-r",
            &env("COPA_TEST_HERMETIC_REPORT"),
        ])
        .args(["-t", "t-oci", "-a", &env("COPA_TEST_UNIX_NEW"), "--oci-dir"])
        .arg(&layout)
        .args(["-f", "openvex", "-o"])
        .arg(&vex));
    assert!(output.status.success(), "{stderr}");
    assert!(layout.join("oci-layout").is_file());
    assert!(layout.join("index.json").is_file());

    let vex: serde_json::Value = serde_json::from_slice(&std::fs::read(&vex).unwrap()).unwrap();
    let ids: Vec<&str> = vex["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["vulnerability"]["name"].as_str().unwrap())
        .collect();
    assert!(ids.len() >= 2, "{vex}");
    assert!(
        vex["statements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "fixed")
    );
}

#[test]
fn ignore_errors_keeps_going_past_a_package_that_cannot_be_fixed() {
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let report = format!(
        "{}/tests/fixtures/hermetic/report-unfixable.json",
        env!("CARGO_MANIFEST_DIR").trim_end_matches("/host")
    );
    let target = hermetic_target("t-ignore");

    let (output, _, stderr) = run(copa().args([
        "patch",
        "-i",
        &image,
        "-r",
        &report,
        "-t",
        "t-ignore",
        "-a",
        &env("COPA_TEST_UNIX_NEW"),
    ]));
    assert!(!output.status.success());
    assert!(
        stderr.contains("copa-tool (installed 3.0-1, needs 3.0-2)"),
        "{stderr}"
    );
    assert!(
        !image_exists("docker", &target),
        "nothing tagged after a refusal"
    );

    let (output, _, stderr) = run(copa().args([
        "patch",
        "-i",
        &image,
        "-r",
        &report,
        "-t",
        "t-ignore",
        "--ignore-errors",
        "-a",
        &env("COPA_TEST_UNIX_NEW"),
    ]));
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("`copa-tool` was not updated"), "{stderr}");
    assert!(installed("docker", &target, &["copa-hello"]).contains("1.0-2"));
    remove("docker", &target);
}

/// Each bad input: one `error:` line naming the cause, exit 1, nothing tagged.
#[test]
fn bad_inputs_get_one_clear_line_and_leave_nothing_behind() {
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let addr = env("COPA_TEST_UNIX_NEW");
    let fixtures = format!(
        "{}/tests/fixtures/hermetic",
        env!("CARGO_MANIFEST_DIR").trim_end_matches("/host")
    );
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let empty = write("empty.json", "");
    let garbage = write("garbage.json", "{\"Results\": [");
    let alpine = write(
        "alpine.json",
        r#"{"Metadata":{"OS":{"Family":"alpine","Name":"3.19"}},"Results":[]}"#,
    );
    let missing = format!("{fixtures}/report-missing.json");
    let good = env("COPA_TEST_HERMETIC_REPORT");
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), "x").unwrap();
    let full = full.display().to_string();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "-i",
                "127.0.0.1:5000/copa-test/no-such-image:1",
                "-r",
                &good,
            ],
            "no-such-image",
        ),
        (
            vec!["-i", &image, "-r", "/nonexistent/report.json"],
            "/nonexistent/report.json",
        ),
        (vec!["-i", &image, "-r", &empty], "is empty"),
        (vec!["-i", &image, "-r", &garbage], "not valid Trivy JSON"),
        (vec!["-i", &image, "-r", &alpine], "is for alpine"),
        (vec!["-i", &image, "-r", &missing], "copa-ghost"),
        (
            vec!["-i", &image, "-r", &good, "--scanner", "grype"],
            "scanner `grype` is not supported",
        ),
        (
            vec!["-i", &image, "-r", &good, "--oci-dir", &full],
            "is not empty",
        ),
        (
            vec!["-i", &image, "-r", &good, "--tag-suffix", "bad suffix"],
            "invalid tag `1-bad suffix`",
        ),
    ];
    for (args, cause) in cases {
        let target = hermetic_target("1-patched");
        remove("docker", &target);
        let mut cmd = copa();
        // Progress (plain when stderr is no terminal) would add lines.
        cmd.args(["patch", "--progress", "quiet", "-a", &addr])
            .args(&args);
        let (output, stdout, stderr) = run(&mut cmd);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stdout} {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        assert!(
            errors[0].contains(cause),
            "{args:?}: expected `{cause}` in {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(!image_exists("docker", &target), "{args:?} left an image");
    }
}

#[test]
fn daemon_that_is_not_there_is_named() {
    let (output, _, stderr) = run(copa().args([
        "patch",
        "-i",
        &env("COPA_TEST_IMAGE_HERMETIC"),
        "-r",
        &env("COPA_TEST_HERMETIC_REPORT"),
        "-a",
        "unix:///nonexistent/buildkitd.sock",
    ]));
    assert!(!output.status.success());
    assert!(stderr.contains("/nonexistent/buildkitd.sock"), "{stderr}");
}

#[test]
fn timeout_cancels_the_build_and_tags_nothing() {
    let target = hermetic_target("t-timeout");
    let (output, _, stderr) = run(copa().args([
        "patch",
        "-i",
        &env("COPA_TEST_IMAGE_HERMETIC"),
        "-r",
        &env("COPA_TEST_HERMETIC_REPORT"),
        "-t",
        "t-timeout",
        "--timeout",
        "1",
        "-a",
        &env("COPA_TEST_DOCKER_CONTAINER"),
    ]));
    // The build may finish within a second on a warm cache; then it must be
    // a complete success, otherwise a clean timeout.
    if output.status.success() {
        remove("docker", &target);
        return;
    }
    assert!(stderr.contains("gave up after 1 s"), "{stderr}");
    assert!(!image_exists("docker", &target));
}

#[test]
fn without_a_report_every_package_with_an_update_is_updated() {
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let target = hermetic_target("t-update-all");
    remove("docker", &target);
    let (output, stdout, stderr) = run(copa().args([
        "patch",
        "-i",
        &image,
        "-t",
        "t-update-all",
        "--progress",
        "quiet",
        "-a",
        &env("COPA_TEST_UNIX_NEW"),
    ]));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("2 packages updated"), "{stdout}");
    assert_eq!(
        installed("docker", &target, &["copa-hello", "copa-libdemo"]),
        "copa-hello 1.0-2\ncopa-libdemo 2.1-1\n"
    );
    assert_eq!(
        layers("docker", &target).len(),
        layers("docker", &image).len() + 1
    );
    remove("docker", &target);
}

#[test]
fn image_without_updates_is_left_alone_and_nothing_is_tagged() {
    // The pushed, patched image has nothing left to update.
    let addr = env("COPA_TEST_UNIX_NEW");
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let report = env("COPA_TEST_HERMETIC_REPORT");
    let (output, _, stderr) = run(copa().args([
        "patch",
        "-i",
        &image,
        "-r",
        &report,
        "-t",
        "t-uptodate-src",
        "--push",
        "--progress",
        "quiet",
        "-a",
        &addr,
    ]));
    assert!(output.status.success(), "{stderr}");

    let source = hermetic_target("t-uptodate-src");
    let target = hermetic_target("t-uptodate");
    let (output, stdout, stderr) = run(copa().args([
        "patch",
        "-i",
        &source,
        "-t",
        "t-uptodate",
        "--progress",
        "quiet",
        "-a",
        &addr,
    ]));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("has an update; the image is left as it is"),
        "{stderr}"
    );
    assert!(!image_exists("docker", &target));
}
