//! Dial: turn a [`DialSpec`] into a byte stream that carries BuildKit's gRPC.
//!
//! This is the only place in copa that opens sockets or spawns transport
//! processes. It never decides *what* to dial: that is the connector's job.

use std::fmt;

use serde::Serialize;

/// How to reach BuildKit, as decided by the host for `unix://` and `tcp://`, or
/// by a connector plugin for every other scheme (mirrors `dial-spec` in
/// `wit/connector.wit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DialSpec {
    /// A unix socket at an absolute path.
    Unix { path: String },
    /// A TCP connection; TLS is added from [`DialOptions::tls`].
    Tcp { host: String, port: u16 },
    /// A spawned program whose stdin/stdout carry the stream.
    Spawn {
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// Docker Engine's embedded BuildKit through `POST /grpc` upgraded to h2c.
    DockerGrpc { endpoint: String },
    /// `buildctl dial-stdio` (or another command) run in a container through
    /// the Docker Engine API's exec.
    DockerExec {
        endpoint: String,
        container: String,
        command: Vec<String>,
    },
}

impl fmt::Display for DialSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialSpec::Unix { path } => write!(f, "unix socket {path}"),
            DialSpec::Tcp { host, port } if host.contains(':') => write!(f, "tcp [{host}]:{port}"),
            DialSpec::Tcp { host, port } => write!(f, "tcp {host}:{port}"),
            DialSpec::Spawn { program, args, .. } => {
                write!(f, "process `{program}")?;
                for arg in args {
                    write!(f, " {arg}")?;
                }
                write!(f, "`")
            }
            DialSpec::DockerGrpc { endpoint } => write!(f, "docker engine {endpoint} (/grpc)"),
            DialSpec::DockerExec {
                endpoint,
                container,
                command,
            } => write!(
                f,
                "docker exec in `{container}` via {endpoint}: {}",
                command.join(" ")
            ),
        }
    }
}
