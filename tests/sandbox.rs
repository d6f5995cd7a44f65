//! The plugin sandbox, tested from outside: the real `copa` binary, with test
//! plugins from `tests/plugins/` dropped into a plugin folder the way a user
//! would install them.
//!
//! Each limit has a pair of tests, one that stays inside it and one that
//! breaks it. The `probe` plugin does what its address query says (see
//! `tests/plugins/probe/src/lib.rs`) and reports the outcome in its error
//! message, which copa prints on stderr.
//!
//! Every run gets its own plugin folder, cache folder, home folder and policy
//! file, and an environment holding only `PATH` and what the test sets, so
//! nothing on the machine running the tests takes part.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// A run of copa taking longer than this is taken as hung, killed and failed.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// The memory limit copa documents as its default (`DEFAULT_MEMORY_LIMIT_MIB`).
const DEFAULT_MEMORY_LIMIT: &str = "64 MiB";

/// The call deadline copa documents as its default (`DEFAULT_CALL_DEADLINE`).
const DEFAULT_DEADLINE: &str = "2000 ms";

/// A test plugin, by its crate name under `tests/plugins/`.
#[derive(Clone, Copy)]
struct Plugin(&'static str);

/// Serves `probe://`; pokes at its sandbox as the query says.
const PROBE: Plugin = Plugin("probe");

/// Serves `hello://`, a scheme copa has not built in.
const HELLO: Plugin = Plugin("hello");

/// Claims `ssh://`, which copa has built in.
const SHADOW: Plugin = Plugin("shadow");

impl Plugin {
    /// The component cargo built for this plugin.
    fn built(self) -> PathBuf {
        built_plugins().join(format!("copa_test_{}.wasm", self.0))
    }
}

/// Builds the test plugins once per test run and returns the folder holding
/// the components.
fn built_plugins() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_test_plugins)
}

fn build_test_plugins() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Not the host's target folder: the cargo running these tests may hold
    // its lock, and a nested cargo would wait for it forever.
    let target_dir = root.join("target/test-plugins");
    let manifest = root.join("tests/plugins/Cargo.toml");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    // Cargo describes the host crate to its tests through these variables;
    // the nested build must not take them as its own.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let keep = ["CARGO_HOME", "CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTR"]
            .iter()
            .any(|prefix| name.starts_with(prefix));
        let described = name.starts_with("CARGO_") && !keep;
        let flags = ["RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"].contains(&&*name);
        if described || flags {
            command.env_remove(&*name);
        }
    }

    let output = command
        .output()
        .expect("failed to run cargo to build the test plugins");
    assert!(
        output.status.success(),
        "failed to build the test plugins in `{}` (is the wasm32-wasip2 target installed?):\n{}",
        manifest.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir.join("wasm32-wasip2/release")
}

/// A private world for copa runs: plugin, cache and home folders, a policy
/// file, and the variables a test sets.
struct Sandbox {
    root: TempDir,
    vars: Vec<(String, String)>,
    path_prefix: Option<PathBuf>,
}

impl Sandbox {
    /// A sandbox whose plugin folder holds `plugins` and whose policy is empty.
    fn with(plugins: &[Plugin]) -> Sandbox {
        let root = tempfile::tempdir().unwrap();
        for dir in ["plugins", "cache", "home"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("policy.toml"), "").unwrap();

        let sandbox = Sandbox {
            root,
            vars: Vec::new(),
            path_prefix: None,
        };
        for plugin in plugins {
            std::fs::copy(plugin.built(), sandbox.installed(*plugin)).unwrap();
        }
        sandbox
    }

    /// Where `plugin` lies in the plugin folder.
    fn installed(&self, plugin: Plugin) -> PathBuf {
        self.root.path().join(format!("plugins/{}.wasm", plugin.0))
    }

    fn policy_file(&self) -> PathBuf {
        self.root.path().join("policy.toml")
    }

    fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// Replaces the policy file's text.
    fn policy(&self, text: &str) -> &Sandbox {
        std::fs::write(self.policy_file(), text).unwrap();
        self
    }

    /// Sets a variable in copa's environment.
    fn set(&mut self, name: &str, value: impl AsRef<Path>) -> &mut Sandbox {
        let value = value.as_ref().to_string_lossy().into_owned();
        self.vars.push((name.to_string(), value));
        self
    }

    /// Puts `dir` first in copa's `PATH`.
    fn path_first(&mut self, dir: &Path) -> &mut Sandbox {
        self.path_prefix = Some(dir.to_path_buf());
        self
    }

    /// Runs copa with `args`.
    fn copa(&self, args: &[&str]) -> Run {
        let mut path = self.path_prefix.clone().into_iter().collect::<Vec<_>>();
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));

        let mut command = Command::new(env!("CARGO_BIN_EXE_copa"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::join_paths(path).unwrap())
            .env("HOME", self.root.path().join("home"))
            .env("COPA_PLUGIN_PATH", self.root.path().join("plugins"))
            .env("COPA_CACHE_DIR", self.cache_dir())
            .env("COPA_PLUGIN_POLICY", self.policy_file())
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        Run::of(command, args)
    }

    /// `copa resolve --addr ADDR --json`.
    fn resolve(&self, addr: &str) -> Run {
        self.copa(&["resolve", "--addr", addr, "--json"])
    }

    /// The compiled plugins in the cache folder.
    fn cached(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut dirs = vec![self.cache_dir()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "cwasm") {
                    found.push(path);
                }
            }
        }
        found
    }
}

/// What one run of copa did.
struct Run {
    command: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn of(mut command: Command, args: &[&str]) -> Run {
        let shown = format!("copa {}", args.join(" "));
        let start = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start copa");
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());

        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > HANG_GUARD {
                child.kill().unwrap();
                panic!("`{shown}` still runs after {HANG_GUARD:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };

        Run {
            command: shown,
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
            elapsed: start.elapsed(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// Asserts that copa succeeded without a word on stderr.
    fn succeeds(&self) -> &Run {
        assert!(self.status.success(), "{}", self.describe());
        assert_eq!(self.stderr, "", "{}", self.describe());
        self
    }

    /// Asserts that copa failed with an `error:` line containing `message`.
    fn fails_with(&self, message: &str) -> &Run {
        assert_eq!(self.status.code(), Some(1), "{}", self.describe());
        assert_eq!(self.stdout, "", "{}", self.describe());
        let error = self.stderr.lines().find(|l| l.starts_with("error: "));
        assert!(
            error.is_some_and(|line| line.contains(message)),
            "expected an error containing `{message}`\n{}",
            self.describe()
        );
        self
    }

    /// stdout, parsed as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.describe()))
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).unwrap();
        text
    })
}

/// The message copa prints when `probe` fails to resolve `addr`.
fn probe_failed(addr: &str, reason: &str) -> String {
    format!("failed to resolve `{addr}` with plugin `probe`: {reason}")
}

// Memory.

#[test]
fn plugin_can_use_memory_within_the_limit() {
    let sandbox = Sandbox::with(&[PROBE]);

    let run = sandbox.resolve("probe://x?alloc=8");

    run.succeeds();
    assert_eq!(
        run.json()["dial"],
        json!({ "kind": "unix", "path": "/run/probe/x.sock" })
    );
}

#[test]
fn plugin_cannot_grow_memory_past_the_limit() {
    let sandbox = Sandbox::with(&[PROBE]);
    let addr = "probe://x?alloc=200";

    let run = sandbox.resolve(addr);

    let reason = format!(
        "plugin `probe` tried to grow its memory past the limit of {DEFAULT_MEMORY_LIMIT} in `resolve`"
    );
    run.fails_with(&probe_failed(addr, &reason));
}

#[test]
fn policy_memory_limit_still_lets_a_small_plugin_run() {
    let sandbox = Sandbox::with(&[PROBE]);
    sandbox.policy("[limits]\nmemory_mib = 4\n");

    sandbox.resolve("probe://x?alloc=1").succeeds();
}

#[test]
fn policy_can_lower_the_memory_limit() {
    let sandbox = Sandbox::with(&[PROBE]);
    sandbox.policy("[limits]\nmemory_mib = 4\n");
    let addr = "probe://x?alloc=8";

    let run = sandbox.resolve(addr);

    let reason = "plugin `probe` tried to grow its memory past the limit of 4 MiB in `resolve`";
    run.fails_with(&probe_failed(addr, reason));
}

// Deadline.

#[test]
fn plugin_can_compute_within_the_deadline() {
    let sandbox = Sandbox::with(&[PROBE]);

    let run = sandbox.resolve("probe://x?spin=50");

    run.succeeds();
    assert_eq!(run.json()["dial"]["path"], "/run/probe/x.sock");
}

#[test]
fn plugin_that_never_returns_is_stopped_at_the_deadline() {
    let sandbox = Sandbox::with(&[PROBE]);
    let addr = "probe://x?spin=forever";

    let run = sandbox.resolve(addr);

    let reason = format!("plugin `probe` ran past its deadline of {DEFAULT_DEADLINE} in `resolve`");
    run.fails_with(&probe_failed(addr, &reason));
    // Only a guard against hanging: the deadline is 2 s, and a loaded machine
    // may take a while to start copa and compile the plugin.
    assert!(run.elapsed < HANG_GUARD, "took {:?}", run.elapsed);
}

#[test]
fn policy_deadline_still_lets_a_quick_plugin_run() {
    let sandbox = Sandbox::with(&[PROBE]);
    sandbox.policy("[limits]\ndeadline_ms = 1000\n");

    sandbox.resolve("probe://x?spin=10").succeeds();
}

#[test]
fn policy_can_lower_the_deadline() {
    let sandbox = Sandbox::with(&[PROBE]);
    let addr = "probe://x?spin=500";
    sandbox.resolve(addr).succeeds();

    sandbox.policy("[limits]\ndeadline_ms = 100\n");
    let run = sandbox.resolve(addr);

    let reason = "plugin `probe` ran past its deadline of 100 ms in `resolve`";
    run.fails_with(&probe_failed(addr, reason));
}

// Stderr.

#[test]
fn plugin_may_write_a_little_to_stderr_which_copa_does_not_show() {
    let sandbox = Sandbox::with(&[PROBE]);

    let run = sandbox.resolve("probe://x?log=8");

    run.succeeds();
}

/// Without `--debug` a plugin's stderr is discarded, so no amount of it
/// stops the plugin or reaches the user.
#[test]
fn plugin_writing_a_lot_to_stderr_is_not_stopped() {
    let sandbox = Sandbox::with(&[PROBE]);

    sandbox.resolve("probe://x?log=256").succeeds();
}

// Environment.

#[test]
fn plugin_sees_a_declared_variable() {
    let mut sandbox = Sandbox::with(&[PROBE]);
    sandbox.set("COPA_PROBE_ALLOWED", "granted");
    let addr = "probe://x?env=COPA_PROBE_ALLOWED";

    let run = sandbox.resolve(addr);

    run.fails_with(&probe_failed(addr, "`COPA_PROBE_ALLOWED` is `granted`"));
}

#[test]
fn plugin_cannot_see_an_undeclared_variable() {
    let mut sandbox = Sandbox::with(&[PROBE]);
    sandbox.set("SECRET", "hunter2");

    for name in ["SECRET", "HOME", "PATH", "COPA_PLUGIN_POLICY"] {
        let addr = format!("probe://x?env={name}");
        let run = sandbox.resolve(&addr);
        run.fails_with(&probe_failed(&addr, &format!("`{name}` is unset")));
    }
}

// Folders.

/// A folder holding `greeting.txt`, for `COPA_PROBE_DIR`.
fn folder_with_greeting() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("greeting.txt");
    std::fs::write(&file, "hello from the granted folder\nsecond line\n").unwrap();
    (dir, file)
}

#[test]
fn plugin_reads_a_file_in_its_declared_folder() {
    let (dir, file) = folder_with_greeting();
    let mut sandbox = Sandbox::with(&[PROBE]);
    sandbox.set("COPA_PROBE_DIR", dir.path());
    let addr = format!("probe://x?read={}", file.display());

    let run = sandbox.resolve(&addr);

    let reason = format!("read `{}`: `hello from the granted folder`", file.display());
    run.fails_with(&probe_failed(&addr, &reason));
}

#[test]
fn plugin_cannot_read_a_file_outside_its_declared_folder() {
    let (granted, _) = folder_with_greeting();
    let (_other, secret) = folder_with_greeting();
    let mut sandbox = Sandbox::with(&[PROBE]);
    sandbox.set("COPA_PROBE_DIR", granted.path());

    for path in [secret.as_path(), Path::new("/etc/passwd")] {
        let addr = format!("probe://x?read={}", path.display());
        let run = sandbox.resolve(&addr);
        let reason = format!("cannot read `{}`: ", path.display());
        run.fails_with(&probe_failed(&addr, &reason));
    }
}

#[test]
fn plugin_cannot_climb_out_of_its_declared_folder() {
    let (granted, _) = folder_with_greeting();
    let (other, _) = folder_with_greeting();
    let mut sandbox = Sandbox::with(&[PROBE]);
    sandbox.set("COPA_PROBE_DIR", granted.path());
    // copa refuses `..` in an address, so the probe adds it itself.
    let other_name = other.path().file_name().unwrap().to_string_lossy();
    let addr = format!("probe://x?climb={other_name}/greeting.txt");

    let run = sandbox.resolve(&addr);

    let climbing = format!("{}/../{other_name}/greeting.txt", granted.path().display());
    run.fails_with(&probe_failed(&addr, &format!("cannot read `{climbing}`: ")));
}

#[test]
fn plugin_follows_a_symlink_that_stays_in_its_declared_folder() {
    let (granted, _) = folder_with_greeting();
    let link = granted.path().join("link");
    // Relative: WASI resolves an absolute target from the sandbox's root, so
    // copa's sandbox refuses every absolute symlink, even one pointing inside.
    std::os::unix::fs::symlink("greeting.txt", &link).unwrap();
    let mut sandbox = Sandbox::with(&[PROBE]);
    sandbox.set("COPA_PROBE_DIR", granted.path());
    let addr = format!("probe://x?read={}", link.display());

    let run = sandbox.resolve(&addr);

    let reason = format!("read `{}`: `hello from the granted folder`", link.display());
    run.fails_with(&probe_failed(&addr, &reason));
}

#[test]
fn plugin_cannot_follow_a_symlink_out_of_its_declared_folder() {
    let (granted, _) = folder_with_greeting();
    let (other, _) = folder_with_greeting();
    let other_name = other.path().file_name().unwrap().to_string_lossy();
    let link = granted.path().join("link");
    std::os::unix::fs::symlink(format!("../{other_name}/greeting.txt"), &link).unwrap();
    let mut sandbox = Sandbox::with(&[PROBE]);
    sandbox.set("COPA_PROBE_DIR", granted.path());
    let addr = format!("probe://x?read={}", link.display());

    let run = sandbox.resolve(&addr);

    let reason = format!("cannot read `{}`: ", link.display());
    run.fails_with(&probe_failed(&addr, &reason));
}

#[test]
fn plugin_gets_no_folder_when_the_variable_naming_it_is_unset() {
    let (_dir, file) = folder_with_greeting();
    let sandbox = Sandbox::with(&[PROBE]);
    let addr = format!("probe://x?read={}", file.display());

    let run = sandbox.resolve(&addr);

    let reason = format!("cannot read `{}`: ", file.display());
    run.fails_with(&probe_failed(&addr, &reason));
}

#[test]
fn plugin_cannot_write_in_its_declared_folder() {
    let (dir, _) = folder_with_greeting();
    let mut sandbox = Sandbox::with(&[PROBE]);
    sandbox.set("COPA_PROBE_DIR", dir.path());
    let target = dir.path().join("written.txt");
    let addr = format!("probe://x?write={}", target.display());

    let run = sandbox.resolve(&addr);

    let reason = format!(
        "cannot write `{}`: Operation not permitted",
        target.display()
    );
    run.fails_with(&probe_failed(&addr, &reason));
    assert!(!target.exists(), "the plugin wrote {}", target.display());
}

// Network.

/// Whether anyone connected to `listener` since it was bound.
fn was_dialed(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("failed to poll the listener: {e}"),
    }
}

#[test]
fn plugin_may_ask_the_host_to_dial_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sandbox = Sandbox::with(&[PROBE]);

    let run = sandbox.resolve(&format!("probe://x?tcp=127.0.0.1:{port}"));

    run.succeeds();
    assert_eq!(
        run.json()["dial"],
        json!({ "kind": "tcp", "host": "127.0.0.1", "port": port })
    );
    assert!(!was_dialed(&listener), "`copa resolve` dialed the spec");
}

#[test]
fn plugin_cannot_open_a_tcp_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let sandbox = Sandbox::with(&[PROBE]);
    let addr = format!("probe://x?connect={target}");

    let run = sandbox.resolve(&addr);

    let reason = format!("cannot connect to `{target}`: Permission denied");
    run.fails_with(&probe_failed(&addr, &reason));
    assert!(!was_dialed(&listener), "the plugin reached the listener");
}

#[test]
fn plugin_cannot_look_up_a_host_name() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("localhost:{}", listener.local_addr().unwrap().port());
    let sandbox = Sandbox::with(&[PROBE]);
    let addr = format!("probe://x?connect={target}");

    let run = sandbox.resolve(&addr);

    let reason = format!("cannot connect to `{target}`: failed to lookup address information");
    run.fails_with(&probe_failed(&addr, &reason));
    assert!(!was_dialed(&listener), "the plugin reached the listener");
}

// Programs.

/// A `buildctl` that leaves a mark if anything runs it.
fn fake_buildctl() -> (TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("buildctl-ran");
    let script = dir.path().join("buildctl");
    std::fs::write(&script, format!("#!/bin/sh\n: > '{}'\n", mark.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, mark)
}

#[test]
fn declared_program_is_accepted_as_a_spawn_spec_and_not_run() {
    let (bin, mark) = fake_buildctl();
    let mut sandbox = Sandbox::with(&[PROBE]);
    sandbox.path_first(bin.path());

    let run = sandbox.resolve("probe://x?spawn=buildctl");

    run.succeeds();
    assert_eq!(
        run.json()["dial"],
        json!({ "kind": "spawn", "program": "buildctl", "args": ["dial-stdio"], "env": [] })
    );
    assert!(!mark.exists(), "`copa resolve` ran buildctl");
}

#[test]
fn undeclared_program_is_refused_naming_the_plugin_and_program() {
    let sandbox = Sandbox::with(&[PROBE]);
    let addr = "probe://x?spawn=sh";

    let run = sandbox.resolve(addr);

    run.fails_with(&format!(
        "refused the dial spec for `{addr}`: plugin `probe` asked to spawn `sh`, which it did not declare"
    ));
}

#[test]
fn program_given_by_path_is_refused_even_when_its_name_is_declared() {
    let (bin, mark) = fake_buildctl();
    let sandbox = Sandbox::with(&[PROBE]);
    let program = bin.path().join("buildctl");
    let addr = format!("probe://x?spawn={}", program.display());

    let run = sandbox.resolve(&addr);

    run.fails_with(&format!(
        "plugin `probe` asked to spawn `{}`; programs are bare names looked up in PATH",
        program.display()
    ));
    assert!(!mark.exists());
}

#[test]
fn policy_can_deny_a_declared_program_naming_the_rule() {
    let sandbox = Sandbox::with(&[PROBE]);
    sandbox.policy("[programs]\ndeny = [\"buildctl\"]\n");
    let addr = "probe://x?spawn=buildctl";

    let run = sandbox.resolve(addr);

    run.fails_with(&format!(
        "refused the dial spec for `{addr}`: refused by policy `{}`: [programs] deny lists `buildctl`",
        sandbox.policy_file().display()
    ));
}

#[test]
fn spawned_program_may_get_a_declared_variable() {
    let sandbox = Sandbox::with(&[PROBE]);

    let run = sandbox.resolve("probe://x?setenv=COPA_PROBE_ALLOWED");

    run.succeeds();
    assert_eq!(
        run.json()["dial"]["env"],
        json!([["COPA_PROBE_ALLOWED", "1"]])
    );
}

#[test]
fn spawned_program_cannot_get_an_undeclared_variable() {
    let sandbox = Sandbox::with(&[PROBE]);
    let addr = "probe://x?setenv=LD_PRELOAD";

    let run = sandbox.resolve(addr);

    run.fails_with(&format!(
        "refused the dial spec for `{addr}`: plugin `probe` set the variable `LD_PRELOAD` for a spawned program, which it did not declare"
    ));
}

// Policy on plugins and schemes.

#[test]
fn external_plugins_switched_off_by_policy_serve_nothing() {
    let sandbox = Sandbox::with(&[PROBE]);
    sandbox.policy("[plugins]\nexternal = false\n");

    let run = sandbox.resolve("probe://x");

    run.fails_with("unknown scheme `probe` in `probe://x`");
    run.fails_with(&format!(
        "plugins not loaded: {} (refused by policy `{}`: [plugins] external = false)",
        sandbox.installed(PROBE).display(),
        sandbox.policy_file().display()
    ));
}

#[test]
fn plugin_list_shows_a_plugin_refused_by_policy_as_not_loaded() {
    let sandbox = Sandbox::with(&[PROBE]);
    sandbox.policy("[plugins]\nexternal = false\n");

    let run = sandbox.copa(&["plugin", "list", "--json"]);

    run.succeeds();
    let listed = run.json();
    let schemes = listed["schemes"].as_array().unwrap();
    assert!(
        !schemes.iter().any(|s| s["scheme"] == "probe"),
        "{listed:#}"
    );
    let probe = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["origin"] == sandbox.installed(PROBE).to_str().unwrap())
        .unwrap_or_else(|| panic!("probe is not listed: {listed:#}"));
    assert_eq!(probe["state"], "denied");
    assert_eq!(
        probe["reason"],
        format!(
            "refused by policy `{}`: [plugins] external = false",
            sandbox.policy_file().display()
        )
    );
}

/// `sha256:<hex>` of a file, the way a policy names a plugin.
fn digest_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn plugin_pinned_by_its_own_digest_loads() {
    let sandbox = Sandbox::with(&[PROBE]);
    let file = sandbox.installed(PROBE);
    let inspected = sandbox.copa(&["plugin", "inspect", file.to_str().unwrap(), "--json"]);
    let digest = inspected.succeeds().json()["digest"].clone();
    assert_eq!(digest, digest_of(&file));

    let pinned = digest.as_str().unwrap();
    sandbox.policy(&format!("[plugins]\nallow = [\"{pinned}\"]\n"));
    let run = sandbox.resolve("probe://x");

    run.succeeds();
    assert_eq!(run.json()["served_by"]["digest"], digest);
}

#[test]
fn plugin_pinned_by_another_digest_is_refused() {
    let sandbox = Sandbox::with(&[PROBE]);
    let other = digest_of(&HELLO.built());
    sandbox.policy(&format!("[plugins]\nallow = [\"{other}\"]\n"));

    let run = sandbox.resolve("probe://x");

    run.fails_with(&format!(
        "refused by policy `{}`: [plugins] allow does not list `{}`",
        sandbox.policy_file().display(),
        digest_of(&sandbox.installed(PROBE))
    ));
}

#[test]
fn policy_can_deny_a_scheme_naming_the_rule() {
    let sandbox = Sandbox::with(&[PROBE]);
    sandbox.resolve("probe://x").succeeds();

    sandbox.policy("[schemes]\ndeny = [\"probe\"]\n");
    let run = sandbox.resolve("probe://x");

    run.fails_with(&format!(
        "scheme `probe` may not be used: refused by policy `{}`: [schemes] deny lists `probe`",
        sandbox.policy_file().display()
    ));
}

// A new scheme, without rebuilding copa.

#[test]
fn dropped_in_plugin_serves_a_new_scheme() {
    let sandbox = Sandbox::with(&[HELLO]);

    let run = sandbox.resolve("hello://demo");

    run.succeeds();
    let resolved = run.json();
    assert_eq!(
        resolved["dial"],
        json!({ "kind": "unix", "path": "/run/hello/demo.sock" })
    );
    assert_eq!(resolved["served_by"]["name"], "hello");
    assert_eq!(
        resolved["served_by"]["origin"],
        json!({ "kind": "file", "path": sandbox.installed(HELLO) })
    );
}

#[test]
fn new_scheme_is_unknown_without_its_plugin() {
    let sandbox = Sandbox::with(&[]);

    sandbox
        .resolve("hello://demo")
        .fails_with("unknown scheme `hello` in `hello://demo`");
}

#[test]
fn plugin_list_shows_a_dropped_in_plugin_with_its_path() {
    let sandbox = Sandbox::with(&[HELLO]);

    let run = sandbox.copa(&["plugin", "list", "--json"]);

    run.succeeds();
    let listed = run.json();
    let path = sandbox.installed(HELLO);
    let row = json!({ "scheme": "hello", "plugin": "hello", "origin": path });
    assert!(
        listed["schemes"].as_array().unwrap().contains(&row),
        "{listed:#}"
    );
}

#[test]
fn plugin_inspect_shows_a_dropped_in_plugins_capabilities_and_digest() {
    let sandbox = Sandbox::with(&[HELLO, PROBE]);

    let hello = sandbox.copa(&["plugin", "inspect", "hello", "--json"]);
    let probe = sandbox.copa(&["plugin", "inspect", "probe", "--json"]);

    let hello = hello.succeeds().json();
    assert_eq!(hello["name"], "hello");
    assert_eq!(hello["state"], "loaded");
    assert_eq!(hello["origin"], sandbox.installed(HELLO).to_str().unwrap());
    assert_eq!(hello["digest"], digest_of(&sandbox.installed(HELLO)));
    assert_eq!(
        hello["capabilities"],
        json!({ "env": [], "folders": [], "programs": [], "docker_engine": false })
    );
    assert_eq!(
        probe.succeeds().json()["capabilities"],
        json!({
            "env": ["COPA_PROBE_ALLOWED", "COPA_PROBE_DIR"],
            "folders": ["${COPA_PROBE_DIR}"],
            "programs": ["buildctl"],
            "docker_engine": false,
        })
    );
}

// A built-in scheme claimed by a dropped-in plugin.

#[test]
fn dropped_in_plugin_cannot_silently_replace_a_built_in_scheme() {
    let sandbox = Sandbox::with(&[SHADOW]);

    let run = sandbox.resolve("ssh://box");

    assert!(run.status.success(), "{}", run.describe());
    assert_eq!(
        run.stderr,
        format!(
            "warning: plugin `{}` serves `ssh`, which copa has built in; the built-in one is used (allow the replacement with --plugin-override ssh)\n",
            sandbox.installed(SHADOW).display()
        )
    );
    let resolved = run.json();
    assert_eq!(resolved["served_by"]["name"], "ssh", "{resolved:#}");
    assert_eq!(
        resolved["served_by"]["origin"],
        json!({ "kind": "built-in" })
    );
}

#[test]
fn plugin_override_lets_a_dropped_in_plugin_replace_a_built_in_scheme() {
    let sandbox = Sandbox::with(&[SHADOW]);

    let run = sandbox.copa(&[
        "--plugin-override",
        "ssh",
        "resolve",
        "--addr",
        "ssh://box",
        "--json",
    ]);

    run.succeeds();
    let resolved = run.json();
    assert_eq!(resolved["served_by"]["name"], "shadow");
    assert_eq!(
        resolved["dial"],
        json!({ "kind": "unix", "path": "/run/shadow/box.sock" })
    );
}

// The compile cache.

#[test]
fn compiled_plugin_is_cached_and_reused_by_the_next_run() {
    let sandbox = Sandbox::with(&[PROBE]);
    assert_eq!(sandbox.cached(), Vec::<PathBuf>::new());

    sandbox.resolve("probe://x").succeeds();
    let cached = sandbox.cached();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let hex = digest_of(&sandbox.installed(PROBE)).replace("sha256:", "");
    let name = cached[0].file_name().unwrap().to_string_lossy();
    assert!(name.starts_with(&hex), "{name} is not keyed by the digest");
    let written = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();

    sandbox.resolve("probe://x").succeeds();
    assert_eq!(sandbox.cached(), cached);
    let rewritten = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();
    assert_eq!(
        written, rewritten,
        "the second run compiled the plugin again"
    );
}
