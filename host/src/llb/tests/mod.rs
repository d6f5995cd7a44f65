//! Tests of the LLB builder.
//!
//! Golden tests build the graphs of `testdata/golden.go` again in Rust and
//! compare the marshalled Definition, byte for byte, with what BuildKit's
//! own Go builder wrote for them (`testdata/*.golden`). Oracle tests decode
//! our bytes with an independent set of generated types
//! (`bollard-buildkit-proto`). `peer_tests` hands the bytes to real
//! `buildctl` and `buildkitd` binaries.

use std::time::{Duration, UNIX_EPOCH};

use prost::Message;

use super::*;
use crate::buildkit::proto::pb;

use bollard_buildkit_proto::pb as oracle;

mod peer_tests;

const DEBIAN: &str = "docker.io/library/debian:bookworm";
const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn amd64() -> pb::Platform {
    platform::linux_amd64()
}

fn image(reference: &str) -> Image {
    Image::new(reference).unwrap().platform(amd64())
}

/// The graphs of `testdata/golden.go`, by the same names.
pub(super) fn golden_graphs() -> Vec<(&'static str, State)> {
    vec![
        ("image_only", image_only()),
        (
            "image_short_name_local_arm64",
            image_short_name_local_arm64(),
        ),
        ("image_digest_force_pull", image_digest_force_pull()),
        ("exec_scratch_mount", exec_scratch_mount()),
        ("exec_everything", exec_everything()),
        ("exec_empty_proxy", exec_empty_proxy()),
        ("env_replace_order", env_replace_order()),
        ("file_chain_on_scratch", file_chain_on_scratch()),
        ("file_copy_options", file_copy_options()),
        ("copa_probe", copa_probe()),
        ("copa_install", copa_install()),
        ("merge_diff_edge_cases", merge_diff_edge_cases()),
        ("dedup_same_op_twice", dedup_same_op_twice()),
        ("image_config_applied", image_config_applied()),
    ]
}

fn image_only() -> State {
    Image::new("docker.io/library/alpine:latest")
        .unwrap()
        .state()
}

fn image_short_name_local_arm64() -> State {
    // As given, not normalised: the source op keeps the caller's spelling.
    let arm64_v8 = pb::Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        variant: "v8".into(),
        ..Default::default()
    };
    Image::new("debian:bookworm")
        .unwrap()
        .resolve_mode(ResolveMode::PreferLocal)
        .platform(arm64_v8)
        .custom_name("Resolving image debian:bookworm")
        .state()
}

fn image_digest_force_pull() -> State {
    let reference = format!("busybox@sha256:{}", "ab".repeat(32));
    Image::new(&reference)
        .unwrap()
        .resolve_mode(ResolveMode::ForcePull)
        .state()
}

fn exec_scratch_mount() -> State {
    image(DEBIAN)
        .state()
        .run(["sh", "-c", "echo hi > /out/x"])
        .mount(Mount::scratch("/out"))
        .finish()
        .mount("/out")
        .unwrap()
}

fn exec_everything() -> State {
    let base = image(DEBIAN)
        .state()
        .with_env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .with_env("LANG", "C.UTF-8")
        .with_dir("/work")
        .with_user("nobody")
        .with_network(Network::Disabled);
    let tools = image(BUSYBOX).state();
    base.run(["/bin/sh", "-c", "ls /tools > /out/list"])
        .env("EXTRA", "1")
        .dir("sub")
        .proxy_env(ProxyEnv {
            http_proxy: "http://proxy:3128".into(),
            no_proxy: "localhost".into(),
            ..Default::default()
        })
        .ignore_cache()
        .custom_name("List the tools")
        .mount(Mount::bind("/tools", &tools).readonly().source_path("/bin"))
        .mount(Mount::tmpfs("/tmp").size(64 << 20))
        .mount(Mount::tmpfs("/var/cache/apt"))
        .mount(Mount::scratch("/out"))
        .root()
}

fn exec_empty_proxy() -> State {
    image(DEBIAN)
        .state()
        .run(["apt-get", "-o", "Acquire::Retries=3", "update"])
        .proxy_env(ProxyEnv::default())
        .ignore_cache()
        .custom_name("Updating package database")
        .root()
}

fn env_replace_order() -> State {
    image(DEBIAN)
        .state()
        .with_env("A", "1")
        .with_env("B", "2")
        .with_env("A", "3")
        .with_env("C", "")
        .run(["env"])
        .root()
}

fn file_chain_on_scratch() -> State {
    scratch()
        .file(FileAction::mkdir("/a", 0o755).parents())
        .then(FileAction::mkfile("/a/hello", 0o644, "hello\n"))
        .then(FileAction::rm("/a/gone").allow_not_found().allow_wildcard())
        .custom_name("Make a file")
        .state()
}

fn file_copy_options() -> State {
    let base = image(DEBIAN).state().with_dir("/work");
    let tools = image(BUSYBOX).state().with_dir("/bin");
    let created = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
    base.file(
        FileAction::copy(&tools, "busybox", "bin/")
            .create_dest_path()
            .follow_symlinks()
            .contents_only()
            .allow_wildcard()
            .allow_empty_wildcard()
            .mode(0o755),
    )
    .then(
        FileAction::mkdir("data/.", 0o700)
            .owner(Owner::Spec("app:staff".into()))
            .created(created),
    )
    .then(
        FileAction::mkfile("/etc/motd", 0o644, "patched").owner(Owner::Ids {
            uid: 1000,
            gid: 1000,
        }),
    )
    .then(FileAction::copy(&tools, "/sh", "/bin/sh").owner(Owner::Spec("0".into())))
    .state()
}

fn copa_probe() -> State {
    let image = image(DEBIAN).resolve_mode(ResolveMode::PreferLocal).state();
    let tool = self::image("ghcr.io/project-copacetic/copacetic/debian:12-slim").state();
    let update = tool
        .run(["apt-get", "-o", "Acquire::Retries=3", "update"])
        .proxy_env(ProxyEnv::default())
        .ignore_cache()
        .custom_name("Updating package database")
        .root();
    let busybox = update
        .run([
            "apt-get",
            "-o",
            "Acquire::Retries=3",
            "install",
            "busybox-static",
        ])
        .proxy_env(ProxyEnv::default())
        .custom_name("Installing busybox")
        .root();
    let with_busybox = image
        .file(FileAction::copy(&busybox, "/bin/busybox", "/bin/busybox"))
        .state();
    let with_out = with_busybox
        .file(FileAction::mkdir("/copa-out", 0o744).parents())
        .state();
    with_out
        .with_env("DPKG_STATUS_PATH", "/var/lib/dpkg/status")
        .with_env("RESULTS_PATH", "/copa-out")
        .run([
            "/bin/busybox",
            "sh",
            "-c",
            "echo 1 > /copa-out/statusd_type",
        ])
        .mount(Mount::scratch("/copa-out"))
        .finish()
        .mount("/copa-out")
        .unwrap()
}

fn copa_install() -> State {
    let image = image(DEBIAN)
        .resolve_mode(ResolveMode::PreferLocal)
        .state()
        .with_env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    let update = image
        .run(["apt-get", "-o", "Acquire::Retries=3", "update"])
        .proxy_env(ProxyEnv::default())
        .ignore_cache()
        .custom_name("Updating package database")
        .root();
    let install = update
        .run(["sh", "-c", "apt-get install -y openssl && apt-get clean -y"])
        .proxy_env(ProxyEnv::default())
        .custom_name("Installing 1 security updates")
        .root();
    let manifest = install
        .clone()
        .with_dir("/copa-out")
        .run([
            "sh",
            "-c",
            "grep '^Package:' /var/lib/dpkg/status >> results.manifest",
        ])
        .custom_name("Generating package manifest")
        .root();
    let patch = diff(&update, &install).custom_name("Patch layer").state();
    let check = diff(&install, &manifest).state();
    merge([image, patch, check]).state()
}

fn merge_diff_edge_cases() -> State {
    let image = image(DEBIAN).state();
    let file = scratch().file(FileAction::mkfile("/x", 0o600, "x")).state();
    let single = merge([scratch(), file.clone()]).state();
    let upper_scratch = diff(&image, &scratch()).state();
    let lower_scratch = diff(&scratch(), &file).state();
    merge([image.clone(), single, upper_scratch, lower_scratch, image]).state()
}

fn dedup_same_op_twice() -> State {
    let a = image(DEBIAN).custom_name("first").state();
    let b = image(DEBIAN).custom_name("second").state();
    a.run(["true"])
        .mount(Mount::bind("/a", &a).readonly())
        .mount(Mount::bind("/b", &b).readonly())
        .root()
}

fn image_config_applied() -> State {
    let config = concat!(
        r#"{"architecture":"arm","os":"linux","variant":"v7","#,
        r#""config":{"Env":["PATH=/usr/bin:/bin","EMPTY=","NOVALUE","=ignored"],"#,
        r#""WorkingDir":"/srv"}}"#
    );
    Image::new(DEBIAN)
        .unwrap()
        .state()
        .with_image_config(config.as_bytes())
        .unwrap()
        .run(["pwd"])
        .root()
}

/// A golden file: the op digests in `def` order and the whole Definition.
struct Golden {
    digests: Vec<String>,
    definition: Vec<u8>,
}

fn golden(name: &str) -> Golden {
    let path = format!(
        "{}/src/llb/testdata/{name}.golden",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut digests = Vec::new();
    let mut definition = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.split_once(' ') {
            Some(("op", digest)) => digests.push(digest.to_string()),
            Some(("definition", bytes)) => definition = Some(hex::decode(bytes).unwrap()),
            _ => panic!("{path}: unexpected line {line:?}"),
        }
    }
    Golden {
        digests,
        definition: definition.unwrap_or_else(|| panic!("{path}: no definition line")),
    }
}

pub(super) fn marshal_amd64(state: &State) -> pb::Definition {
    state.marshal_for(&amd64()).unwrap()
}

// ---- golden: byte for byte what Go's builder writes ---------------------

#[test]
fn every_golden_graph_marshals_to_the_bytes_go_wrote() {
    let mut failures = Vec::new();
    for (name, state) in golden_graphs() {
        let want = golden(name);
        let definition = marshal_amd64(&state);
        let digests: Vec<String> = definition.def.iter().map(|op| digest_of(op)).collect();

        if digests != want.digests {
            failures.push(format!(
                "{name}: op digests differ\n  ours: {digests:#?}\n  go:   {:#?}",
                want.digests
            ));
            continue;
        }
        let bytes = definition.encode_to_vec();
        if bytes != want.definition {
            let go = pb::Definition::decode(want.definition.as_slice()).unwrap();
            failures.push(format!(
                "{name}: same ops, different Definition\n  ours: {:?}\n  go:   {:?}",
                definition.metadata, go.metadata
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn golden_files_cover_every_graph_and_nothing_else() {
    let dir = format!("{}/src/llb/testdata", env!("CARGO_MANIFEST_DIR"));
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".golden").map(str::to_string)
        })
        .collect();
    on_disk.sort();
    let mut ours: Vec<String> = golden_graphs()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    ours.sort();
    assert_eq!(on_disk, ours);
}

#[test]
fn source_op_bytes_put_platform_and_constraints_before_the_op_body() {
    let definition = marshal_amd64(&image_only());

    // Platform (10), constraints (11), then source (3): protobuf-go's order.
    let identifier = b"docker-image://docker.io/library/alpine:latest";
    let mut want = vec![0x52, 0x0e, 0x0a, 0x05];
    want.extend(b"amd64");
    want.extend([0x12, 0x05]);
    want.extend(b"linux");
    want.extend([0x5a, 0x00, 0x1a, identifier.len() as u8 + 2, 0x0a]);
    want.push(identifier.len() as u8);
    want.extend(identifier);
    assert_eq!(definition.def[0], want);
}

#[test]
fn terminal_op_is_one_input_and_nothing_else() {
    let definition = marshal_amd64(&exec_scratch_mount());

    let terminal = definition.def.last().unwrap();
    let exec_digest = digest_of(&definition.def[1]);
    // Field 1 { digest = 1, index = 2 }: the /out mount is output 1.
    let mut want = vec![0x0a, 0x4b, 0x0a, 0x47];
    want.extend(exec_digest.as_bytes());
    want.extend([0x10, 0x01]);
    assert_eq!(*terminal, want);

    let caps = &definition.metadata[&digest_of(terminal)].caps;
    assert_eq!(caps.keys().collect::<Vec<_>>(), ["constraints", "platform"]);
}

// ---- oracle: decoded by independently generated types -------------------

fn oracle_ops(definition: &pb::Definition) -> Vec<oracle::Op> {
    let bytes = definition.encode_to_vec();
    let decoded = oracle::Definition::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.def.len(), definition.def.len());
    for op in &decoded.def {
        assert!(
            decoded.metadata.contains_key(&digest_of(op)),
            "an op has no metadata entry under its digest"
        );
    }
    decoded
        .def
        .iter()
        .map(|op| oracle::Op::decode(op.as_slice()).unwrap())
        .collect()
}

#[test]
fn every_golden_graph_decodes_with_the_oracle_and_ends_in_a_terminal_op() {
    for (name, state) in golden_graphs() {
        let ops = oracle_ops(&marshal_amd64(&state));
        let terminal = ops.last().unwrap();
        assert_eq!(terminal.inputs.len(), 1, "{name}");
        assert!(
            terminal.op.is_none() && terminal.platform.is_none(),
            "{name}"
        );
        assert!(terminal.constraints.is_none(), "{name}");
        for op in &ops[..ops.len() - 1] {
            assert!(op.constraints.is_some(), "{name}: every op has constraints");
        }
    }
}

#[test]
fn copa_probe_decodes_to_copas_wiring() {
    use oracle::file_action::Action;
    use oracle::op::Op as Body;

    let definition = marshal_amd64(&copa_probe());
    let ops = oracle_ops(&definition);
    let digests: Vec<String> = definition.def.iter().map(|op| digest_of(op)).collect();

    // image, tool, update, install busybox, copy, mkdir, probe, terminal.
    assert_eq!(ops.len(), 8);
    let Some(Body::File(copy)) = &ops[4].op else {
        panic!("op 4 is not the copy: {:?}", ops[4]);
    };
    assert_eq!(ops[4].inputs[0].digest, digests[0]);
    assert_eq!(ops[4].inputs[1].digest, digests[3]);
    let action = &copy.actions[0];
    assert_eq!(
        (action.input, action.secondary_input, action.output),
        (0, 1, 0)
    );
    let Some(Action::Copy(copy)) = &action.action else {
        panic!("not a copy: {action:?}");
    };
    assert_eq!((copy.mode, copy.timestamp), (-1, -1));
    assert!(ops[4].platform.is_none());

    let Some(Body::Exec(probe)) = &ops[6].op else {
        panic!("op 6 is not the probe: {:?}", ops[6]);
    };
    let mounts: Vec<(&str, i64, i64)> = probe
        .mounts
        .iter()
        .map(|m| (m.dest.as_str(), m.input, m.output))
        .collect();
    assert_eq!(mounts, [("/", 0, 0), ("/copa-out", -1, 1)]);
    let meta = probe.meta.as_ref().unwrap();
    assert_eq!(
        meta.env,
        [
            "DPKG_STATUS_PATH=/var/lib/dpkg/status",
            "RESULTS_PATH=/copa-out"
        ]
    );
    assert!(meta.remove_mount_stubs_recursive);
    assert_eq!(ops[7].inputs[0].index, 1);

    let update = &definition.metadata[&digests[2]];
    assert!(update.ignore_cache);
    assert_eq!(
        update.description[CUSTOM_NAME_KEY],
        "Updating package database"
    );
    assert!(update.caps.contains_key("exec.meta.proxyenv"));
}

#[test]
fn merge_and_diff_decode_with_inputs_in_order() {
    use oracle::op::Op as Body;

    let definition = marshal_amd64(&copa_install());
    let ops = oracle_ops(&definition);
    let n = ops.len();

    let Some(Body::Merge(merge)) = &ops[n - 2].op else {
        panic!("the result is not a merge: {:?}", ops[n - 2]);
    };
    let indexes: Vec<i64> = merge.inputs.iter().map(|i| i.input).collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert_eq!(ops[n - 2].inputs[0].digest, digest_of(&definition.def[0]));

    let diffs: Vec<&oracle::DiffOp> = ops
        .iter()
        .filter_map(|op| match &op.op {
            Some(Body::Diff(d)) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(diffs.len(), 2);
    for diff in diffs {
        assert_eq!(diff.lower.as_ref().unwrap().input, 0);
        assert_eq!(diff.upper.as_ref().unwrap().input, 1);
    }
}

// ---- behaviour ----------------------------------------------------------

#[test]
fn digest_is_sha256_of_the_bytes_with_its_prefix() {
    assert_eq!(
        digest_of(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn scratch_marshals_to_an_empty_definition() {
    assert_eq!(marshal_amd64(&scratch()), pb::Definition::default());
}

#[test]
fn exec_without_arguments_fails_to_marshal_naming_its_directory() {
    let state = image(DEBIAN)
        .state()
        .with_dir("/srv")
        .run(Vec::<String>::new())
        .root();
    let err = state.marshal_for(&amd64()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to marshal exec in `/srv`: it has no arguments"
    );
}

#[test]
fn invalid_image_reference_is_refused_when_the_image_is_made() {
    let err = Image::new("Debian:12").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to parse image reference `Debian:12`")
    );
}

#[test]
fn ops_without_a_platform_take_the_marshal_default() {
    let arm64 = platform::new("linux", "arm64", "");
    let state = Image::new("debian").unwrap().state().run(["true"]).root();

    let definition = state.marshal_for(&arm64).unwrap();
    let ops = oracle_ops(&definition);
    for op in &ops[..2] {
        assert_eq!(op.platform.as_ref().unwrap().architecture, "arm64");
    }

    let host = state.marshal().unwrap();
    let ops = oracle_ops(&host);
    let host_platform = platform::host();
    assert_eq!(
        ops[0].platform.as_ref().unwrap().architecture,
        host_platform.architecture
    );
}

#[test]
fn merge_of_one_real_input_is_that_input_and_of_none_is_scratch() {
    let file = scratch().file(FileAction::mkfile("/x", 0o644, "x")).state();
    let merged = merge([scratch(), file.clone(), scratch()])
        .custom_name("ignored")
        .state();
    assert_eq!(marshal_amd64(&merged), marshal_amd64(&file));
    assert!(merge([scratch(), scratch()]).state().is_scratch());
    assert!(diff(&scratch(), &scratch()).state().is_scratch());
}

#[test]
fn exec_mounts_give_outputs_only_for_writable_non_tmpfs_mounts() {
    let base = image(DEBIAN).state();
    let other = image(BUSYBOX).state();
    let run = base
        .run(["true"])
        .mount(Mount::scratch("/z"))
        .mount(Mount::bind("/ro", &other).readonly())
        .mount(Mount::tmpfs("/tmp"))
        .mount(Mount::bind("/rw", &other))
        .finish();

    assert!(run.mount("/tmp").is_none());
    assert!(run.mount("/nowhere").is_none());
    let readonly = run.mount("/ro").unwrap();
    assert_eq!(marshal_amd64(&readonly), marshal_amd64(&other));

    // Sorted: / (0), /ro (-), /rw (1), /tmp (-), /z (2).
    let index_of = |state: &State| {
        let definition = marshal_amd64(state);
        let ops = oracle_ops(&definition);
        ops.last().unwrap().inputs[0].index
    };
    assert_eq!(index_of(&run.root()), 0);
    assert_eq!(index_of(&run.mount("/rw").unwrap()), 1);
    assert_eq!(index_of(&run.mount("/z").unwrap()), 2);
}

#[test]
fn exec_root_keeps_the_states_settings_and_a_mount_output_starts_fresh() {
    let base = image(DEBIAN).state().with_env("A", "1").with_dir("/srv");
    let run = base
        .run(["true"])
        .env("ONLY_HERE", "1")
        .mount(Mount::scratch("/out"))
        .finish();

    let root = run.root();
    assert_eq!(root.env_vars(), [("A".to_string(), "1".to_string())]);
    assert_eq!(root.dir(), "/srv");
    assert_eq!(root.platform(), Some(&amd64()));

    let out = run.mount("/out").unwrap();
    assert!(out.env_vars().is_empty());
    assert_eq!(out.dir(), "/");
    assert_eq!(out.platform(), None);
}

#[test]
fn file_action_chain_reads_earlier_results_after_the_real_inputs() {
    use oracle::op::Op as Body;

    let base = image(DEBIAN).state();
    let other = image(BUSYBOX).state();
    let state = base
        .file(FileAction::mkdir("/a", 0o755))
        .then(FileAction::copy(&other, "/bin/sh", "/a/sh"))
        .then(FileAction::rm("/a/x"))
        .state();

    let ops = oracle_ops(&marshal_amd64(&state));
    let Some(Body::File(file)) = &ops[2].op else {
        panic!("not a file op: {:?}", ops[2]);
    };
    let wiring: Vec<(i64, i64, i64)> = file
        .actions
        .iter()
        .map(|a| (a.input, a.secondary_input, a.output))
        .collect();
    // Inputs: debian (0), busybox (1); action k's result is 2 + k.
    assert_eq!(wiring, [(0, -1, -1), (2, 1, -1), (3, -1, 0)]);
}

#[test]
fn same_op_built_twice_is_sent_once_with_merged_metadata() {
    let definition = marshal_amd64(&dedup_same_op_twice());

    assert_eq!(definition.def.len(), 3);
    let source = &definition.metadata[&digest_of(&definition.def[0])];
    assert_eq!(source.description[CUSTOM_NAME_KEY], "second");
    let ops = oracle_ops(&definition);
    assert_eq!(ops[1].inputs.len(), 1, "one input for all three mounts");
}

#[test]
fn terminal_metadata_claims_the_meta_caps_any_op_uses() {
    let definition = marshal_amd64(&exec_everything());
    let terminal = digest_of(definition.def.last().unwrap());
    let caps: Vec<&String> = definition.metadata[&terminal].caps.keys().collect();
    assert_eq!(
        caps,
        [
            "constraints",
            "meta.description",
            "meta.ignorecache",
            "platform"
        ]
    );

    let plain = marshal_amd64(&exec_scratch_mount());
    let terminal = digest_of(plain.def.last().unwrap());
    assert_eq!(plain.metadata[&terminal].caps.len(), 2);
}

#[test]
fn progress_group_and_descriptions_reach_the_metadata() {
    let state = image(DEBIAN)
        .progress_group("g1", "Group", true)
        .description("com.example.note", "kept")
        .state();
    let definition = marshal_amd64(&state);
    let source = &definition.metadata[&digest_of(&definition.def[0])];
    let group = source.progress_group.as_ref().unwrap();
    assert_eq!(
        (group.id.as_str(), group.name.as_str(), group.weak),
        ("g1", "Group", true)
    );
    assert_eq!(source.description["com.example.note"], "kept");
}

#[test]
fn valid_exit_codes_are_sent_packed_with_their_cap() {
    let state = image(DEBIAN)
        .state()
        .run(["false"])
        .valid_exit_codes([0, 1])
        .root();
    let definition = marshal_amd64(&state);
    let ops = oracle_ops(&definition);
    let Some(oracle::op::Op::Exec(exec)) = &ops[1].op else {
        panic!("not an exec");
    };
    assert_eq!(exec.meta.as_ref().unwrap().valid_exit_codes, [0, 1]);
    let caps = &definition.metadata[&digest_of(&definition.def[1])].caps;
    assert!(caps.contains_key("exec.validexitcode"));
}
