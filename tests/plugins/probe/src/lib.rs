//! `probe`: a connector plugin that pokes at its own sandbox, so that
//! `tests/sandbox.rs` can check each of copa's limits from outside the host.
//!
//! `probe://NAME?KEY=VALUE&…` runs the query's steps in order:
//!
//! - `alloc=MIB` allocates and touches that many MiB, then goes on;
//! - `spin=MS` busy-loops for that many milliseconds (`forever` never stops),
//!   then goes on;
//! - `log=KIB` writes that many KiB to stderr, then goes on;
//! - `env=NAME`, `read=PATH`, `write=PATH` and `connect=HOST:PORT` try what
//!   they say and stop with an `environment` error whose message reports the
//!   outcome, so the test reads it on copa's stderr; `climb=PATH` reads
//!   `$COPA_PROBE_DIR/../PATH`, a path copa would refuse in an address;
//! - `unix=PATH`, `tcp=HOST:PORT`, `spawn=PROGRAM` and `setenv=NAME` stop with
//!   that dial spec (`setenv` spawns `buildctl` with `NAME=1`).
//!
//! With no stopping step the answer is the socket `/run/probe/NAME.sock`.
//!
//! It declares what a real plugin might (two variables, one folder, one
//! program) so that the tests can tell what is granted from what is not. It
//! must never be bundled with copa or installed outside a test.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use std::hint::black_box;
use std::io::BufRead;
use std::time::{Duration, Instant};

use copa::connector::types::{
    Address, Capabilities, DialSpec, PluginInfo, ResolveError, SpawnTarget, TcpTarget,
};
use exports::copa::connector::connector::Guest;

/// The variable a test sets to see it granted.
const ALLOWED_VAR: &str = "COPA_PROBE_ALLOWED";

/// The variable naming the one folder the probe may read.
const DIR_VAR: &str = "COPA_PROBE_DIR";

/// The one program the probe may ask the host to spawn.
const PROGRAM: &str = "buildctl";

struct Probe;

impl Guest for Probe {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "probe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schemes: vec!["probe".into()],
            summary: "Test plugin that pokes at its own sandbox".into(),
            capabilities: Capabilities {
                env: vec![ALLOWED_VAR.into(), DIR_VAR.into()],
                folders: vec![format!("${{{DIR_VAR}}}")],
                programs: vec![PROGRAM.into()],
                docker_engine: false,
            },
        }
    }

    fn resolve(address: Address) -> Result<DialSpec, ResolveError> {
        for (key, value) in &address.query {
            match key.as_str() {
                "alloc" => alloc(number(key, value)?),
                "spin" => spin(value)?,
                "log" => log(number(key, value)?),
                "env" => return Err(report(env(value))),
                "read" => return Err(report(read(value))),
                "climb" => return Err(report(climb(value))),
                "write" => return Err(report(write(value))),
                "connect" => return Err(report(connect(value))),
                "unix" => return Ok(DialSpec::Unix(value.clone())),
                "tcp" => return tcp(value),
                "spawn" => return Ok(spawn(value, Vec::new())),
                "setenv" => return Ok(spawn(PROGRAM, vec![(value.clone(), "1".into())])),
                other => {
                    let message = format!("`probe://` has no step `{other}`");
                    return Err(ResolveError::InvalidAddress(message));
                }
            }
        }

        let name = address.host.as_deref().unwrap_or("probe");
        Ok(DialSpec::Unix(format!("/run/probe/{name}.sock")))
    }
}

export!(Probe);

fn report(message: String) -> ResolveError {
    ResolveError::Environment(message)
}

fn number(key: &str, value: &str) -> Result<u64, ResolveError> {
    value.parse().map_err(|_| {
        let message = format!("`{key}` takes a whole number, not `{value}`");
        ResolveError::InvalidAddress(message)
    })
}

/// Allocates `mib` MiB and writes to every page of it.
fn alloc(mib: u64) {
    let mut block = vec![0u8; (mib as usize) << 20];
    for page in block.chunks_mut(4096) {
        page[0] = 1;
    }
    black_box(&block);
}

/// Burns CPU for `value` milliseconds, or forever.
fn spin(value: &str) -> Result<(), ResolveError> {
    if value == "forever" {
        loop {
            black_box(());
        }
    }

    let until = Duration::from_millis(number("spin", value)?);
    let start = Instant::now();
    while start.elapsed() < until {
        black_box(());
    }
    Ok(())
}

/// Writes `kib` KiB of text to stderr, a line at a time.
fn log(kib: u64) {
    let line = format!("{:63}\n", "probe is chatty");
    for _ in 0..kib * 16 {
        eprint!("{line}");
    }
}

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) => format!("`{name}` is `{value}`"),
        Err(_) => format!("`{name}` is unset"),
    }
}

fn read(path: &str) -> String {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => return format!("cannot read `{path}`: {error}"),
    };
    let mut line = String::new();
    match std::io::BufReader::new(file).read_line(&mut line) {
        Ok(_) => format!("read `{path}`: `{}`", line.trim_end()),
        Err(error) => format!("cannot read `{path}`: {error}"),
    }
}

/// Reads `path` relative to the parent of the granted folder.
fn climb(path: &str) -> String {
    match std::env::var(DIR_VAR) {
        Ok(dir) => read(&format!("{dir}/../{path}")),
        Err(_) => format!("`{DIR_VAR}` is unset"),
    }
}

fn write(path: &str) -> String {
    match std::fs::write(path, "written by probe\n") {
        Ok(()) => format!("wrote `{path}`"),
        Err(error) => format!("cannot write `{path}`: {error}"),
    }
}

fn connect(target: &str) -> String {
    match std::net::TcpStream::connect(target) {
        Ok(_) => format!("connected to `{target}`"),
        Err(error) => format!("cannot connect to `{target}`: {error}"),
    }
}

fn tcp(target: &str) -> Result<DialSpec, ResolveError> {
    let parsed = target
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse().ok()?)));
    let Some((host, port)) = parsed else {
        let message = format!("`tcp` takes HOST:PORT, not `{target}`");
        return Err(ResolveError::InvalidAddress(message));
    };
    Ok(DialSpec::Tcp(TcpTarget {
        host: host.into(),
        port,
    }))
}

fn spawn(program: &str, env: Vec<(String, String)>) -> DialSpec {
    DialSpec::Spawn(SpawnTarget {
        program: program.into(),
        args: vec!["dial-stdio".into()],
        env,
    })
}
