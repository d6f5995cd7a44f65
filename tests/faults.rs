//! Faults in the middle of `copa patch`, with real components: a private
//! buildkitd killed mid-solve, the transport process killed, a registry that
//! refuses the push, Ctrl-C, and apt failing inside the build. Each must end
//! in one `error:` line naming the cause, a non-zero exit, nothing tagged,
//! loaded or pushed, and no copa files left in $TMPDIR, the working folder or
//! beside an `--oci-dir`.
//!
//! "Mid-solve" is made deterministic without sleeps: the image is pulled by a
//! private buildkitd (fresh root, so nothing is cached) through a loopback
//! proxy of the test registry that holds every request for one of the
//! image's layer blobs. While a layer request is held the gateway build is
//! running (the image config is resolved, the update graph is being solved);
//! that is when each fault is injected. The proxy also shows whether the
//! daemon gave up the held request afterwards (the build was cancelled).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{copa, env};

/// How long a fault may take to turn into copa's exit.
const EXIT_WITHIN: Duration = Duration::from_secs(90);
/// How long the build may take to reach the held layer request.
const STALL_WITHIN: Duration = Duration::from_secs(60);

// ------------------------------------------------------------ polling --

/// Polls `check` until it holds or `timeout` passes; never a fixed sleep.
fn poll(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(10);
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

fn signal(target: &str, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, "--", target])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {name} {target} failed");
}

/// A process seen in /proc.
struct Process {
    pid: u32,
    ppid: u32,
    comm: String,
    cmdline: String,
}

fn processes() -> Vec<Process> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let Some(ppid) = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        found.push(Process {
            pid,
            ppid,
            comm: stat[open + 1..close].to_string(),
            cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " "),
        });
    }
    found
}

/// The pids whose parent is `parent`, with their command names.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == parent)
        .map(|p| (p.pid, p.comm))
        .collect()
}

/// The names in a directory.
fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A loopback port that nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_status(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn image_exists(engine: &str, image: &str) -> bool {
    Command::new(engine)
        .args(["image", "inspect", image])
        .output()
        .unwrap()
        .status
        .success()
}

fn remove_image(engine: &str, image: &str) {
    let _ = Command::new(engine).args(["rmi", "-f", image]).output();
}

// ----------------------------------------------------- private buildkitd --

/// A buildkitd of our own, in its own process group, with a fresh root and
/// socket in a temporary directory: killing it hurts no other test.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    socket: PathBuf,
}

impl Daemon {
    /// Starts the newest buildkitd with plain HTTP to the test registry and
    /// to the extra loopback `http_ports`.
    fn start(http_ports: &[u16]) -> Daemon {
        let buildctl = PathBuf::from(env("COPA_TEST_BUILDCTL"));
        let buildkitd = buildctl.with_file_name("buildkitd");
        assert!(buildkitd.is_file(), "no buildkitd beside {buildctl:?}");
        let dir = tempfile::Builder::new()
            .prefix("copa-faults-bk.")
            .tempdir_in("/tmp")
            .unwrap();
        let mut config = String::new();
        let registry = env("COPA_TEST_REGISTRY");
        for host in
            std::iter::once(registry).chain(http_ports.iter().map(|p| format!("127.0.0.1:{p}")))
        {
            config.push_str(&format!(
                "[registry.\"{host}\"]\n  http = true\n  insecure = true\n\n"
            ));
        }
        config.push_str("[worker.containerd]\n  enabled = false\n");
        std::fs::write(dir.path().join("buildkitd.toml"), config).unwrap();
        let socket = dir.path().join("buildkitd.sock");
        let addr = format!("unix://{}", socket.display());
        let log = std::fs::File::create(dir.path().join("buildkitd.log")).unwrap();
        let child = Command::new(&buildkitd)
            .arg("--config")
            .arg(dir.path().join("buildkitd.toml"))
            .arg("--root")
            .arg(dir.path().join("root"))
            .args(["--addr", &addr])
            .args(["--oci-worker-net=host", "--containerd-worker=false"])
            // Its own, not the default /run/buildkit/otel-grpc.sock that the
            // host's buildkitd and every other private one would share.
            .arg("--otel-socket-path")
            .arg(dir.path().join("otel-grpc.sock"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            child,
            dir,
            addr,
            socket,
        };
        let ready = poll(Duration::from_secs(60), || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("buildkitd exited ({status}): {}", daemon.log());
            }
            daemon.buildctl(&["debug", "workers"]).is_some()
        });
        assert!(ready, "buildkitd did not answer: {}", daemon.log());
        daemon
    }

    fn buildctl(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(env("COPA_TEST_BUILDCTL"))
            .args(["--addr", &self.addr])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The daemon's socket through the test sshd (`buildctl dial-stdio` on
    /// the other side).
    fn ssh_addr(&self) -> String {
        format!(
            "ssh://root@copa-ssh-test:{}{}",
            env("COPA_TEST_SSH_PORT"),
            self.socket.display()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("buildkitd.log")).unwrap_or_default()
    }

    /// `kill -9` of the daemon and anything it started.
    fn kill(&mut self) {
        signal(&format!("-{}", self.child.id()), "KILL");
        self.child.wait().unwrap();
    }

    /// The daemon's build records, as `buildctl debug histories` has them.
    fn histories(&self) -> Vec<serde_json::Value> {
        self.buildctl(&["debug", "histories", "--format", "{{json .}}"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
        // Mounts the killed daemon left under its root, deepest first, so
        // that the directory can go.
        let root = self.dir.path().display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
    }
}

// ------------------------------------------------ the holding registry --

#[derive(Default)]
struct Counts {
    /// Layer requests held so far.
    held: usize,
    /// Held requests whose client (the daemon) hung up.
    abandoned: usize,
}

struct Shared {
    markers: Vec<String>,
    counts: Mutex<Counts>,
    changed: Condvar,
}

/// A loopback proxy of the test registry that passes everything through but
/// holds, unanswered, every request naming one of `markers` (layer digests).
struct HoldingRegistry {
    port: u16,
    shared: Arc<Shared>,
}

impl HoldingRegistry {
    fn start(markers: Vec<String>) -> HoldingRegistry {
        assert!(!markers.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            markers,
            counts: Mutex::default(),
            changed: Condvar::new(),
        });
        let upstream = env("COPA_TEST_REGISTRY");
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = accepting.clone();
                let upstream = upstream.clone();
                std::thread::spawn(move || relay(client, &upstream, &shared));
            }
        });
        HoldingRegistry { port, shared }
    }

    /// Proxies the hermetic image, holding its layers.
    fn for_hermetic_image() -> (HoldingRegistry, String) {
        let image = env("COPA_TEST_IMAGE_HERMETIC");
        let registry = env("COPA_TEST_REGISTRY");
        let path = image.strip_prefix(&format!("{registry}/")).unwrap();
        let (repo, tag) = path.rsplit_once(':').unwrap();
        let out = Command::new("curl")
            .args(["-fsS", "-m", "10"])
            .args([
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
            ])
            .arg(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "no manifest for {image}");
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let layers: Vec<String> = manifest["layers"]
            .as_array()
            .expect("a single-platform manifest")
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        let proxy = HoldingRegistry::start(layers);
        let proxied = format!("127.0.0.1:{}/{path}", proxy.port);
        (proxy, proxied)
    }

    fn wait(&self, timeout: Duration, done: impl Fn(&Counts) -> bool) -> bool {
        let counts = self.shared.counts.lock().unwrap();
        let (_counts, result) = self
            .shared
            .changed
            .wait_timeout_while(counts, timeout, |c| !done(c))
            .unwrap();
        !result.timed_out()
    }

    /// Waits until the build is pulling a layer (and is held there).
    fn wait_held(&self) -> bool {
        self.wait(STALL_WITHIN, |c| c.held > 0)
    }

    /// Waits until the daemon hung up every held request.
    fn wait_abandoned(&self, timeout: Duration) -> bool {
        self.wait(timeout, |c| c.held > 0 && c.abandoned == c.held)
    }

    fn counts(&self) -> (usize, usize) {
        let c = self.shared.counts.lock().unwrap();
        (c.held, c.abandoned)
    }
}

fn relay(client: TcpStream, upstream: &str, shared: &Shared) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let holding = Arc::new(AtomicBool::new(false));
    // Answers go back untouched; a held connection is never closed from
    // this side.
    {
        let mut from = server.try_clone().unwrap();
        let mut to = client.try_clone().unwrap();
        let holding = holding.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            if !holding.load(Ordering::SeqCst) {
                let _ = to.shutdown(Shutdown::Write);
            }
        });
    }
    let (mut client, mut server) = (client, server);
    let mut seen: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Requests are scanned with a little of what came before, so that a
        // digest split across two reads is still seen.
        let keep = seen.len().saturating_sub(256);
        seen.drain(..keep);
        seen.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&seen);
        if shared.markers.iter().any(|m| text.contains(m.as_str())) {
            holding.store(true, Ordering::SeqCst);
            bump(shared, |c| c.held += 1);
            while matches!(client.read(&mut chunk), Ok(n) if n > 0) {}
            bump(shared, |c| c.abandoned += 1);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if server.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

fn bump(shared: &Shared, change: impl FnOnce(&mut Counts)) {
    change(&mut shared.counts.lock().unwrap());
    shared.changed.notify_all();
}

// ------------------------------------------------------------ copa runs --

/// A `copa patch` running in the background, with a fresh $TMPDIR and
/// working folder to check for leftovers.
struct Run {
    child: Child,
    tmp: tempfile::TempDir,
    work: tempfile::TempDir,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Starts `copa patch ARGS -w WORK` in its own process group.
    fn start(args: &[String]) -> Run {
        let tmp = tempfile::Builder::new()
            .prefix("copa-faults-tmp.")
            .tempdir()
            .unwrap();
        let work = tempfile::Builder::new()
            .prefix("copa-faults-work.")
            .tempdir()
            .unwrap();
        let mut cmd = copa();
        // Progress (plain when stderr is no terminal) would add lines.
        cmd.args(["patch", "--progress", "quiet"])
            .args(args)
            .arg("-w")
            .arg(work.path())
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().unwrap();
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        Run {
            child,
            tmp,
            work,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits, bounded, for copa to exit.
    fn finish(mut self) -> Finished {
        let mut status = None;
        let exited = poll(EXIT_WITHIN, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let stdout = self.stdout.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        assert!(
            exited,
            "copa did not exit within {EXIT_WITHIN:?} of the fault: {stderr}"
        );
        let finished = Finished {
            status: status.unwrap(),
            stdout,
            stderr,
        };
        // Nothing of copa's left where it may write temporary files.
        for (what, dir) in [("$TMPDIR", self.tmp.path()), ("-w", self.work.path())] {
            let left = entries(dir);
            assert!(
                left.is_empty(),
                "{what} {} holds {left:?} after copa exited; stderr: {}",
                dir.display(),
                finished.stderr
            );
        }
        finished
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Finished {
    /// Exit status 1 and exactly one line on stderr, an `error:` line
    /// holding every one of `needles`; nothing on stdout.
    fn assert_one_line_error(&self, needles: &[&str]) -> &str {
        let stderr = &self.stderr;
        assert_eq!(
            self.status.code(),
            Some(1),
            "exit status {:?}; stderr: {stderr}",
            self.status
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "`{needle}` not named in: {stderr}");
        }
        assert!(self.stdout.is_empty(), "stdout: {}", self.stdout);
        stderr.trim_end()
    }
}

fn hermetic_args(image: &str, tag: &str, addr: &str) -> Vec<String> {
    let report = env("COPA_TEST_HERMETIC_REPORT");
    ["-i", image, "-r", &report, "-t", tag, "-a", addr]
        .map(String::from)
        .to_vec()
}

fn target(image: &str, tag: &str) -> String {
    format!("{}:{tag}", image.rsplit_once(':').unwrap().0)
}

// ---------------------------------------------------------------- tests --

/// The daemon is `kill -9`ed while it pulls the image's layers: copa names
/// the address it lost, loads nothing into Docker and leaves no files.
#[test]
fn daemon_killed_mid_solve_is_named_and_nothing_is_loaded() {
    let (proxy, image) = HoldingRegistry::for_hermetic_image();
    let mut daemon = Daemon::start(&[proxy.port]);
    let tag = "t-fault-daemon-gone";
    let target = target(&image, tag);
    remove_image("docker", &target);

    let run = Run::start(&hermetic_args(&image, tag, &daemon.addr));
    assert!(proxy.wait_held(), "the build never pulled a layer");
    daemon.kill();
    let done = run.finish();

    assert!(!image_exists("docker", &target), "{target} was loaded");
    done.assert_one_line_error(&["lost the connection", &daemon.addr]);
}

/// The daemon dies while an `--oci-dir` is being staged: no layout, and no
/// staging folder beside it.
#[test]
fn daemon_killed_mid_solve_leaves_no_oci_layout_behind() {
    let (proxy, image) = HoldingRegistry::for_hermetic_image();
    let mut daemon = Daemon::start(&[proxy.port]);
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout").display().to_string();
    let mut args = hermetic_args(&image, "t-fault-daemon-gone-oci", &daemon.addr);
    args.extend(["--oci-dir".into(), layout]);

    let run = Run::start(&args);
    assert!(proxy.wait_held(), "the build never pulled a layer");
    let during = entries(out.path());
    daemon.kill();
    let done = run.finish();

    assert!(
        entries(out.path()).is_empty(),
        "left beside the --oci-dir: {:?} (during the build: {during:?})",
        entries(out.path())
    );
    done.assert_one_line_error(&["lost the connection", &daemon.addr]);
}

/// The same through ssh://: the error names the ssh address (the far end,
/// `buildctl dial-stdio`, exits quietly when its daemon goes away).
#[test]
fn daemon_killed_behind_an_ssh_transport_is_named() {
    let (proxy, image) = HoldingRegistry::for_hermetic_image();
    let mut daemon = Daemon::start(&[proxy.port]);
    let addr = daemon.ssh_addr();
    let tag = "t-fault-ssh-daemon-gone";
    let target = target(&image, tag);
    remove_image("docker", &target);

    let run = Run::start(&hermetic_args(&image, tag, &addr));
    assert!(proxy.wait_held(), "the build never pulled a layer");
    daemon.kill();
    let done = run.finish();

    assert!(!image_exists("docker", &target), "{target} was loaded");
    done.assert_one_line_error(&["lost the connection", &addr]);
}

/// The transport process (`ssh`, copa's own child) is killed mid-solve.
#[test]
fn transport_process_killed_mid_solve_is_named() {
    let (proxy, image) = HoldingRegistry::for_hermetic_image();
    let daemon = Daemon::start(&[proxy.port]);
    let addr = daemon.ssh_addr();
    let tag = "t-fault-transport-killed";
    let target = target(&image, tag);
    remove_image("docker", &target);

    let run = Run::start(&hermetic_args(&image, tag, &addr));
    assert!(proxy.wait_held(), "the build never pulled a layer");
    let ssh: Vec<u32> = children_of(run.pid())
        .into_iter()
        .filter(|(_, comm)| comm == "ssh")
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(
        ssh.len(),
        1,
        "copa's ssh child: {:?}",
        children_of(run.pid())
    );
    signal(&ssh[0].to_string(), "KILL");
    let done = run.finish();

    assert!(!image_exists("docker", &target), "{target} was loaded");
    done.assert_one_line_error(&["lost the connection", &addr]);
    // The daemon is still there; the build it was running was given up.
    assert!(
        proxy.wait_abandoned(Duration::from_secs(60)),
        "the daemon still pulls for a build nobody waits for: {:?}",
        proxy.counts()
    );
}

/// The far end of the transport (`buildctl dial-stdio`, run by sshd) dies
/// mid-solve printing something (a Go runtime dump on SIGQUIT, relayed by
/// ssh): the error names the address and carries what the transport said.
#[test]
fn transport_that_dies_printing_mid_solve_is_named_with_what_it_said() {
    let (proxy, image) = HoldingRegistry::for_hermetic_image();
    let daemon = Daemon::start(&[proxy.port]);
    let addr = daemon.ssh_addr();
    let tag = "t-fault-transport-said";
    let target = target(&image, tag);
    remove_image("docker", &target);

    let run = Run::start(&hermetic_args(&image, tag, &addr));
    assert!(proxy.wait_held(), "the build never pulled a layer");
    // Found by our own daemon's socket path, a fresh random directory.
    let socket = daemon.socket.display().to_string();
    let far: Vec<u32> = processes()
        .into_iter()
        .filter(|p| {
            p.comm == "buildctl" && p.cmdline.contains(&socket) && p.cmdline.contains("dial-stdio")
        })
        .map(|p| p.pid)
        .collect();
    assert_eq!(far.len(), 1, "buildctl dial-stdio for {socket}: {far:?}");
    signal(&far[0].to_string(), "QUIT");
    let done = run.finish();

    assert!(!image_exists("docker", &target), "{target} was loaded");
    let line = done.assert_one_line_error(&["lost the connection", &addr, "the transport said: "]);
    let said = &line[line.find("the transport said: ").unwrap()..];
    assert!(said.contains("goroutine "), "not Go's dump: {said}");
}

/// Ctrl-C while the daemon pulls: "interrupted", the build cancelled in the
/// daemon, and the half-written `--oci-dir` staging folder removed.
#[test]
fn ctrl_c_cancels_the_build_and_removes_the_oci_staging_folder() {
    let (proxy, image) = HoldingRegistry::for_hermetic_image();
    let daemon = Daemon::start(&[proxy.port]);
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let layout_arg = layout.display().to_string();
    let mut args = hermetic_args(&image, "t-fault-ctrl-c-oci", &daemon.addr);
    args.extend(["--oci-dir".into(), layout_arg]);

    let run = Run::start(&args);
    assert!(proxy.wait_held(), "the build never pulled a layer");
    let during = entries(out.path());
    signal(&run.pid().to_string(), "INT");
    let done = run.finish();

    assert!(
        entries(out.path()).is_empty(),
        "left beside the --oci-dir: {:?} (during the build: {during:?})",
        entries(out.path())
    );
    done.assert_one_line_error(&["interrupted"]);
    assert_daemon_cancelled(&proxy, &daemon);
}

/// Ctrl-C with the default Docker loader: nothing loaded.
#[test]
fn ctrl_c_cancels_the_build_and_loads_nothing() {
    let (proxy, image) = HoldingRegistry::for_hermetic_image();
    let daemon = Daemon::start(&[proxy.port]);
    let tag = "t-fault-ctrl-c";
    let target = target(&image, tag);
    remove_image("docker", &target);

    let run = Run::start(&hermetic_args(&image, tag, &daemon.addr));
    assert!(proxy.wait_held(), "the build never pulled a layer");
    signal(&run.pid().to_string(), "INT");
    let done = run.finish();

    assert!(!image_exists("docker", &target), "{target} was loaded");
    done.assert_one_line_error(&["interrupted"]);
    assert_daemon_cancelled(&proxy, &daemon);
}

/// Ctrl-C at a terminal signals the whole foreground process group, so the
/// transport (`ssh`) dies at the same time as copa sees SIGINT: still the
/// "interrupted" line, not a transport failure.
#[test]
fn ctrl_c_to_the_process_group_through_ssh_says_interrupted() {
    let (proxy, image) = HoldingRegistry::for_hermetic_image();
    let daemon = Daemon::start(&[proxy.port]);
    let addr = daemon.ssh_addr();
    let tag = "t-fault-ctrl-c-ssh";
    let target = target(&image, tag);
    remove_image("docker", &target);

    let run = Run::start(&hermetic_args(&image, tag, &addr));
    assert!(proxy.wait_held(), "the build never pulled a layer");
    signal(&format!("-{}", run.pid()), "INT");
    let done = run.finish();

    assert!(!image_exists("docker", &target), "{target} was loaded");
    done.assert_one_line_error(&["interrupted"]);
    assert_daemon_cancelled(&proxy, &daemon);
}

/// The daemon let go of the held layer request and recorded the build as
/// ended with an error: it stopped working for the interrupted build.
fn assert_daemon_cancelled(proxy: &HoldingRegistry, daemon: &Daemon) {
    assert!(
        proxy.wait_abandoned(Duration::from_secs(60)),
        "the daemon still pulls for the cancelled build: {:?}",
        proxy.counts()
    );
    let mut records = Vec::new();
    let ended = poll(Duration::from_secs(30), || {
        records = daemon.histories();
        !records.is_empty()
            && records
                .iter()
                .all(|r| r["record"].get("CompletedAt").is_some())
    });
    assert!(ended, "build records still open: {records:?}");
    assert!(
        records.iter().all(|r| r["record"].get("error").is_some()),
        "a build ended without an error: {records:?}"
    );
}

/// A registry in read-only mode refuses the push: the error names the
/// target and the registry has no such manifest.
#[test]
fn push_refused_by_a_read_only_registry_names_the_target() {
    let registry = ReadOnlyRegistry::start();
    let daemon = Daemon::start(&[registry.port]);
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let target = format!("127.0.0.1:{}/copa-test/hermetic:t-fault-ro", registry.port);

    let mut args = hermetic_args(&image, &target, &daemon.addr);
    args.push("--push".into());
    let done = Run::start(&args).finish();

    assert_eq!(
        http_status(&format!(
            "http://127.0.0.1:{}/v2/copa-test/hermetic/manifests/t-fault-ro",
            registry.port
        )),
        "404",
        "a manifest reached the read-only registry"
    );
    done.assert_one_line_error(&[&target]);
}

/// Nothing listens where the push should go: the error names the target.
#[test]
fn push_to_a_port_with_nothing_listening_names_the_target() {
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let target = format!(
        "127.0.0.1:{}/copa-test/hermetic:t-fault-closed",
        closed_port()
    );
    let addr = env("COPA_TEST_UNIX_NEW");
    let mut args = hermetic_args(&image, &target, &addr);
    args.push("--push".into());
    let done = Run::start(&args).finish();

    assert!(!image_exists("docker", &target));
    done.assert_one_line_error(&[&target]);
}

/// apt cannot reach the image's repository: Docker Engine's BuildKit runs
/// execs on Docker's bridge network, where the hermetic image's source
/// (http://127.0.0.1:28090, the host's loopback) is not there. The error
/// must name apt's failure rather than blame the packages.
#[test]
fn apt_that_cannot_reach_its_repository_is_named() {
    let image = env("COPA_TEST_IMAGE_HERMETIC");
    let tag = "t-fault-apt";
    let target = target(&image, tag);
    remove_image("docker", &target);
    let addr = env("COPA_TEST_DOCKER");

    let done = Run::start(&hermetic_args(&image, tag, &addr)).finish();

    assert!(!image_exists("docker", &target), "{target} was loaded");
    done.assert_one_line_error(&["apt-get", "exit code: 100"]);
}

/// `docker-registry` in maintenance read-only mode, on a free loopback port.
struct ReadOnlyRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ReadOnlyRegistry {
    fn start() -> ReadOnlyRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = closed_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    readonly:\n      enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut registry = ReadOnlyRegistry {
            child,
            port,
            _dir: dir,
        };
        let up = poll(Duration::from_secs(30), || {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited: {status}");
            }
            http_status(&format!("http://127.0.0.1:{port}/v2/")) == "200"
        });
        assert!(up, "docker-registry did not answer on {port}");
        registry
    }
}

impl Drop for ReadOnlyRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
