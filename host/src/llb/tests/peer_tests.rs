//! Our Definitions read by real BuildKit binaries, v0.12.4 and the newest:
//! `buildctl debug dump-llb` must decode every golden graph to the ops,
//! digests and metadata we built, and `buildctl build` must solve a small
//! graph on both test daemons, give the files we expect, and report its
//! progress under our op digests (newer daemons re-encode every op and
//! re-digest it, so this proves our bytes are the canonical ones).
//!
//! The binaries and daemon sockets come from `COPA_TEST_BUILDCTL`,
//! `COPA_TEST_BUILDCTL_V12`, `COPA_TEST_UNIX_NEW` and `COPA_TEST_UNIX_V12`,
//! or from `/run/copa-test/env` as written by `scripts/up.sh`. Without them
//! these tests fail; they never start or stop a daemon.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use prost::Message;
use serde_json::{Value, json};

use super::super::*;
use super::{golden_graphs, marshal_amd64};
use crate::buildkit::proto::pb;

/// Where `scripts/up.sh` records the test binaries and daemon addresses.
const TEST_ENV_FILE: &str = "/run/copa-test/env";

fn test_env(key: &str) -> String {
    if let Ok(value) = std::env::var(key) {
        return value;
    }
    let text = std::fs::read_to_string(TEST_ENV_FILE).unwrap_or_else(|e| {
        panic!("{key} is not set and {TEST_ENV_FILE} is unreadable ({e}); run scripts/up.sh")
    });
    text.lines()
        .filter_map(|line| line.strip_prefix("export ").unwrap_or(line).split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("{TEST_ENV_FILE} has no `{key}`; rerun scripts/up.sh"))
}

/// Runs `command` with `input` on its stdin.
fn run_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

// ---- dump-llb -----------------------------------------------------------

/// What an op says, in a form both our types and buildctl's JSON give.
fn summary_of_ours(op: &pb::Op) -> Value {
    use pb::file_action::Action;
    use pb::op::Op as Body;

    let inputs: Vec<Value> = op
        .inputs
        .iter()
        .map(|i| json!([i.digest, i.index]))
        .collect();
    let platform = op
        .platform
        .as_ref()
        .map(|p| format!("{}/{}/{}", p.os, p.architecture, p.variant));
    let body = match &op.op {
        None => json!("none"),
        Some(Body::Source(s)) => json!({"source": [s.identifier, s.attrs]}),
        Some(Body::Exec(e)) => {
            let meta = e.meta.clone().unwrap_or_default();
            let mounts: Vec<Value> = e
                .mounts
                .iter()
                .map(|m| {
                    json!([
                        m.dest,
                        m.input,
                        m.output,
                        m.readonly,
                        m.mount_type,
                        m.selector
                    ])
                })
                .collect();
            json!({"exec": [meta.args, meta.env, meta.cwd, meta.user, e.network,
                meta.proxy_env.is_some(), mounts]})
        }
        Some(Body::File(f)) => {
            let actions: Vec<Value> = f
                .actions
                .iter()
                .map(|a| {
                    let (kind, path) = match &a.action {
                        Some(Action::Copy(c)) => ("copy", c.dest.clone()),
                        Some(Action::Mkfile(m)) => ("mkfile", m.path.clone()),
                        Some(Action::Mkdir(m)) => ("mkdir", m.path.clone()),
                        Some(Action::Rm(r)) => ("rm", r.path.clone()),
                        None => ("none", String::new()),
                    };
                    json!([kind, path, a.input, a.secondary_input, a.output])
                })
                .collect();
            json!({ "file": actions })
        }
        Some(Body::Merge(m)) => {
            json!({"merge": m.inputs.iter().map(|i| i.input).collect::<Vec<_>>()})
        }
        Some(Body::Diff(d)) => json!({"diff": [
            d.lower.as_ref().map_or(0, |l| l.input),
            d.upper.as_ref().map_or(0, |u| u.input),
        ]}),
    };
    json!({"inputs": inputs, "platform": platform, "body": body})
}

/// The same from one line of `dump-llb`. Old and new buildctl differ only in
/// leaving out zero values, so every missing field reads as its zero.
fn summary_of_dump(line: &Value) -> Value {
    let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let flag = |v: &Value, k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let list = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let object = |v: &Value, k: &str| v.get(k).cloned().unwrap_or_else(|| json!({}));

    let op = &line["Op"];
    let inputs: Vec<Value> = list(op, "inputs")
        .iter()
        .map(|i| json!([text(i, "digest"), int(i, "index")]))
        .collect();
    let platform = op.get("platform").map(|p| {
        format!(
            "{}/{}/{}",
            text(p, "OS"),
            text(p, "Architecture"),
            text(p, "Variant")
        )
    });

    let body = &op["Op"];
    let body = if let Some(s) = body.get("source") {
        json!({"source": [text(s, "identifier"), object(s, "attrs")]})
    } else if let Some(e) = body.get("exec") {
        let meta = &e["meta"];
        let mounts: Vec<Value> = list(e, "mounts")
            .iter()
            .map(|m| {
                json!([
                    text(m, "dest"),
                    int(m, "input"),
                    int(m, "output"),
                    flag(m, "readonly"),
                    int(m, "mountType"),
                    text(m, "selector")
                ])
            })
            .collect();
        json!({"exec": [list(meta, "args"), list(meta, "env"), text(meta, "cwd"),
            text(meta, "user"), int(e, "network"), meta.get("proxy_env").is_some(), mounts]})
    } else if let Some(f) = body.get("file") {
        let actions: Vec<Value> = list(f, "actions")
            .iter()
            .map(|a| {
                let action = &a["Action"];
                let (kind, path) = ["copy", "mkfile", "mkdir", "rm"]
                    .into_iter()
                    .find_map(|kind| {
                        let inner = action.get(kind)?;
                        let field = if kind == "copy" { "dest" } else { "path" };
                        Some((kind, text(inner, field)))
                    })
                    .unwrap_or(("none", String::new()));
                json!([
                    kind,
                    path,
                    int(a, "input"),
                    int(a, "secondaryInput"),
                    int(a, "output")
                ])
            })
            .collect();
        json!({ "file": actions })
    } else if let Some(m) = body.get("merge") {
        json!({"merge": list(m, "inputs").iter().map(|i| int(i, "input")).collect::<Vec<_>>()})
    } else if let Some(d) = body.get("diff") {
        json!({"diff": [int(&d["lower"], "input"), int(&d["upper"], "input")]})
    } else {
        json!("none")
    };
    json!({"inputs": inputs, "platform": platform, "body": body})
}

fn dump_llb_agrees_with_us(buildctl_key: &str) {
    let buildctl = test_env(buildctl_key);
    for (name, state) in golden_graphs() {
        let definition = marshal_amd64(&state);
        let output = run_with_stdin(
            Command::new(&buildctl).args(["debug", "dump-llb"]),
            &definition.encode_to_vec(),
        );

        let lines: Vec<Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), definition.def.len(), "{name}: op count");
        for (bytes, line) in definition.def.iter().zip(&lines) {
            let digest = digest_of(bytes);
            assert_eq!(line["Digest"], digest.as_str(), "{name}: digest");

            let ours = pb::Op::decode(bytes.as_slice()).unwrap();
            assert_eq!(
                summary_of_dump(line),
                summary_of_ours(&ours),
                "{name}: {digest}"
            );

            let meta = &definition.metadata[&digest];
            let theirs = &line["OpMetadata"];
            let caps: BTreeSet<&str> = theirs["caps"]
                .as_object()
                .map(|caps| caps.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let our_caps: BTreeSet<&str> = meta.caps.keys().map(String::as_str).collect();
            assert_eq!(caps, our_caps, "{name}: {digest} caps");
            assert_eq!(
                theirs["ignore_cache"].as_bool().unwrap_or(false),
                meta.ignore_cache,
                "{name}: {digest} ignore_cache"
            );
            assert_eq!(
                theirs["description"][CUSTOM_NAME_KEY].as_str(),
                meta.description.get(CUSTOM_NAME_KEY).map(String::as_str),
                "{name}: {digest} custom name"
            );
        }
    }
}

#[test]
fn newest_buildctl_dump_llb_reads_our_ops_digests_and_metadata() {
    dump_llb_agrees_with_us("COPA_TEST_BUILDCTL");
}

#[test]
fn buildctl_v0_12_dump_llb_reads_our_ops_digests_and_metadata() {
    dump_llb_agrees_with_us("COPA_TEST_BUILDCTL_V12");
}

// ---- solve --------------------------------------------------------------

/// Files from a FileOp on scratch, a file written by an exec into a scratch
/// mount, and the one file an exec adds to debian (as a diff), merged.
fn solve_graph() -> State {
    let debian = Image::new("docker.io/library/debian:bookworm")
        .unwrap()
        .platform(platform::linux_amd64())
        .state();

    let files = scratch()
        .file(FileAction::mkdir("/a", 0o755))
        .then(FileAction::mkfile("/a/hello", 0o644, "hello\n"))
        .custom_name("copa llb test: files")
        .state();
    let hi = debian
        .run(["sh", "-c", "echo hi > /out/x"])
        .mount(Mount::scratch("/out"))
        .custom_name("copa llb test: write into a scratch mount")
        .finish()
        .mount("/out")
        .unwrap();
    let changed = debian
        .run([
            "sh",
            "-c",
            "echo new > /new.txt && echo scratch > /tmp/gone",
        ])
        .mount(Mount::tmpfs("/tmp"))
        .custom_name("copa llb test: change debian")
        .root();
    let added = diff(&debian, &changed).state();

    merge([files, hi, added])
        .custom_name("copa llb test: merge")
        .state()
}

/// Every regular file under `dir`, relative, with its contents.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let relative = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn solve_on(addr_key: &str, buildctl_key: &str) {
    let buildctl = test_env(buildctl_key);
    let addr = test_env(addr_key);
    let definition = marshal_amd64(&solve_graph());
    let dest = tempfile::tempdir().unwrap();

    let output = run_with_stdin(
        Command::new(&buildctl)
            .args(["--addr", &addr, "build", "--progress", "rawjson"])
            .arg(format!(
                "--output=type=local,dest={}",
                dest.path().display()
            )),
        &definition.encode_to_vec(),
    );

    let files = files_under(dest.path());
    let want = [("a/hello", "hello\n"), ("new.txt", "new\n"), ("x", "hi\n")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    assert_eq!(files, want, "the diff must hold only what the exec added");

    // Progress names vertices by digest: after re-encoding them, a newer
    // daemon still finds the digests we computed.
    let mut reported = BTreeSet::new();
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        let Ok(status) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for vertex in status["vertexes"].as_array().into_iter().flatten() {
            if let Some(digest) = vertex["digest"].as_str() {
                reported.insert(digest.to_string());
            }
        }
    }
    let ours: BTreeSet<String> = definition.def[..definition.def.len() - 1]
        .iter()
        .map(|op| digest_of(op))
        .collect();
    let missing: Vec<&String> = ours.difference(&reported).collect();
    assert!(
        missing.is_empty(),
        "ops the daemon did not report under our digest: {missing:?}\nreported: {reported:?}"
    );
}

#[test]
fn newest_buildkitd_solves_our_graph_under_our_digests() {
    solve_on("COPA_TEST_UNIX_NEW", "COPA_TEST_BUILDCTL");
}

#[test]
fn buildkitd_v0_12_solves_our_graph_under_our_digests() {
    // buildctl v0.12 has no rawjson progress; the newest client talks to the
    // old daemon as well.
    solve_on("COPA_TEST_UNIX_V12", "COPA_TEST_BUILDCTL");
}
