//! `copa patch --progress` against the newest BuildKit of `scripts/up.sh`:
//! the hermetic image patched with `plain` and with `rawjson`, reading what
//! the daemon's progress turned into on stderr.

mod common;

use std::process::Command;

use common::{copa, env, run};

/// Patches the hermetic image to the tag `tag` with `--progress progress`,
/// removes the result, and returns stderr.
fn patch_with_progress(progress: &str, tag: &str) -> String {
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let target = format!("{}:{tag}", image.rsplit_once(':').unwrap().0);
    let remove = || {
        let _ = Command::new("docker").args(["rmi", "-f", &target]).output();
    };
    remove();

    let (output, stdout, stderr) = run(copa().args([
        "patch",
        "-i",
        &image,
        "-r",
        &env("COPA_TEST_HERMETIC_REPORT"),
        "-a",
        &env("COPA_TEST_UNIX_NEW"),
        "-t",
        tag,
        "--progress",
        progress,
    ]));
    remove();
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!("patched {image} -> {target}: 2 packages updated")),
        "the summary line stays on stdout: {stdout}"
    );
    stderr
}

#[test]
fn plain_progress_shows_the_steps_their_times_and_the_apt_output() {
    let stderr = patch_with_progress("plain", "t-progress");

    let install = stderr
        .lines()
        .find(|line| line.ends_with(" [Installing 2 security updates]"))
        .unwrap_or_else(|| panic!("no install step in:\n{stderr}"));
    let number = install.split(' ').next().unwrap();
    assert!(number.starts_with('#'), "{install}");
    let own: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with(&format!("{number} ")))
        .collect();
    assert!(
        own.iter()
            .any(|line| line.starts_with(&format!("{number} DONE ")) && line.ends_with('s')),
        "no DONE line for {number}:\n{stderr}"
    );
    assert!(
        own.iter().any(|line| {
            let mut words = line.split(' ').skip(1);
            let timed = words.next().is_some_and(|t| t.parse::<f64>().is_ok());
            timed && line.contains("Unpacking copa-hello (1.0-2)")
        }),
        "no timed apt line for {number}:\n{stderr}"
    );
}

#[test]
fn rawjson_progress_is_one_json_object_per_line() {
    let stderr = patch_with_progress("rawjson", "t-progress-json");

    let messages: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(!messages.is_empty(), "no progress at all");
    let names: Vec<&str> = messages
        .iter()
        .flat_map(|m| m["vertexes"].as_array().unwrap())
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        names.contains(&"Installing 2 security updates"),
        "{names:?}"
    );
    assert!(
        messages
            .iter()
            .flat_map(|m| m["logs"].as_array().unwrap())
            .all(|log| log["data"].is_string() && log["vertex"].is_string()),
        "{stderr}"
    );
}
