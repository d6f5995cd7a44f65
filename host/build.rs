//! Build script: compiles BuildKit's `.proto` files (written in `proto/`) into
//! tonic clients and servers, and builds the bundled connector plugins for
//! `wasm32-wasip2` so the binary can embed them.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bundled plugins, by crate name under `plugins/`; each becomes
/// `<name>.wasm` in `$OUT_DIR/plugins`.
const BUNDLED_PLUGINS: &[&str] = &[
    "docker",
    "docker-container",
    "podman-container",
    "nerdctl-container",
    "ssh",
    "kubepod",
    "buildx",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();

    compile_protos(&root);
    build_plugins(&root);
}

fn compile_protos(root: &Path) {
    let proto_dir = root.join("proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let files: Vec<PathBuf> = walk(&proto_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    if files.is_empty() {
        return;
    }

    let fds = protox::compile(&files, [&proto_dir]).expect("failed to parse proto/ files");
    tonic_prost_build::configure()
        .btree_map(".")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("failed to generate code from proto/ files");
}

fn build_plugins(root: &Path) {
    let plugins_dir = root.join("plugins");
    println!("cargo:rerun-if-changed={}", plugins_dir.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap()).join("plugins");
    std::fs::create_dir_all(&out_dir).unwrap();
    // The plugins have their own target folder: a nested cargo on the host's
    // target folder would wait forever for the lock the outer cargo holds.
    let target_dir = root.join("target").join("wasm-plugins");

    if !plugins_dir.join("Cargo.toml").exists() {
        // A checkout without plugins/ still builds; it bundles no plugin.
        for plugin in BUNDLED_PLUGINS {
            std::fs::write(out_dir.join(format!("{plugin}.wasm")), b"").unwrap();
        }
        return;
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins_dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir);
    for plugin in BUNDLED_PLUGINS {
        cmd.args(["-p", &format!("copa-plugin-{plugin}")]);
    }
    // Variables cargo sets for this build script would leak into the nested
    // build and point it at the host's target and flags.
    for (key, _) in env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");

    let status = cmd
        .status()
        .expect("failed to run cargo for the plugins (is the wasm32-wasip2 target installed?)");
    assert!(
        status.success(),
        "building the bundled plugins failed; run `rustup target add wasm32-wasip2` if the target is missing"
    );

    for plugin in BUNDLED_PLUGINS {
        let artifact = format!("copa_plugin_{}.wasm", plugin.replace('-', "_"));
        let built = target_dir.join("wasm32-wasip2/release").join(&artifact);
        std::fs::copy(&built, out_dir.join(format!("{plugin}.wasm")))
            .unwrap_or_else(|e| panic!("failed to copy {}: {e}", built.display()));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}
