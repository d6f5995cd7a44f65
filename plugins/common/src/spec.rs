//! Plain Rust mirrors of the WIT types in `wit/connector.wit`.
//!
//! Plugin logic works on these so that it builds and is tested natively; the
//! [`export_connector!`](crate::export_connector) glue converts them to and
//! from the generated bindings, field for field.

use std::fmt;

/// An `--addr` value, parsed and percent-decoded once by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    /// The address exactly as the user typed it.
    pub raw: String,
    /// The scheme, lower case, without `://`.
    pub scheme: String,
    /// The user name before `@`, if any.
    pub username: Option<String>,
    /// The host or name after `//`, if any.
    pub host: Option<String>,
    /// The port after `:`, if any.
    pub port: Option<u16>,
    /// The path, with its leading `/`; empty when there is none.
    pub path: String,
    /// The query parameters in the order given.
    pub query: Vec<(String, String)>,
}

impl Address {
    /// An address as the host would pass it, for tests: `raw` is
    /// `scheme://host`, with the given query parameters.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_test(scheme: &str, host: Option<&str>, query: &[(&str, &str)]) -> Address {
        Address {
            raw: format!("{scheme}://{}", host.unwrap_or_default()),
            scheme: scheme.into(),
            host: host.map(String::from),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Address::default()
        }
    }

    /// The host part, treating an empty one as absent.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref().filter(|h| !h.is_empty())
    }

    /// The user name, treating an empty one as absent.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref().filter(|u| !u.is_empty())
    }
}

/// What a plugin needs from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Environment variables the plugin reads, by exact name.
    pub env: &'static [&'static str],
    /// Folders the plugin reads, in the WIT's `~/` and `${NAME:-fallback}` syntax.
    pub folders: &'static [&'static str],
    /// Programs the plugin asks the host to spawn, by bare name.
    pub programs: &'static [&'static str],
    /// Whether the plugin returns `docker-grpc` or `docker-exec` specs.
    pub docker_engine: bool,
}

/// What a plugin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// A short name, e.g. `ssh`.
    pub name: &'static str,
    /// The plugin's own version.
    pub version: &'static str,
    /// The schemes it serves, lower case.
    pub schemes: &'static [&'static str],
    /// One line saying what it connects to.
    pub summary: &'static str,
    /// What it needs to resolve an address.
    pub capabilities: Capabilities,
}

/// A TCP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTarget {
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

/// A program whose stdin and stdout carry BuildKit's gRPC stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnTarget {
    /// The program, by bare name.
    pub program: String,
    /// Its arguments, passed as argv without a shell.
    pub args: Vec<String>,
    /// Extra environment variables for it.
    pub env: Vec<(String, String)>,
}

/// A process in a container, reached through the Docker Engine API's exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerExecTarget {
    /// The Engine endpoint: `unix:///path` or `tcp://host:port`.
    pub endpoint: String,
    /// The container name or ID.
    pub container: String,
    /// The command to run in the container.
    pub command: Vec<String>,
}

/// How to reach BuildKit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialSpec {
    /// A unix socket at this absolute path.
    Unix(String),
    /// A plain TCP connection.
    Tcp(TcpTarget),
    /// A spawned program's stdin and stdout.
    Spawn(SpawnTarget),
    /// The BuildKit inside a Docker Engine, at this Engine endpoint.
    DockerGrpc(String),
    /// A process in a container, through the Docker Engine API.
    DockerExec(DockerExecTarget),
}

impl DialSpec {
    /// A spawn spec with no extra environment.
    pub fn spawn(program: &str, args: Vec<String>) -> Self {
        DialSpec::Spawn(SpawnTarget {
            program: program.to_owned(),
            args,
            env: Vec::new(),
        })
    }
}

/// Why an address could not be resolved; each message is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The address is malformed or hostile.
    InvalidAddress(String),
    /// The address names something that does not exist.
    NotFound(String),
    /// The address asks for something the plugin cannot do.
    Unsupported(String),
    /// The state the plugin reads (a file, a variable) is unusable.
    Environment(String),
}

impl ResolveError {
    /// The kind, as the WIT names it: `invalid-address`, `not-found`,
    /// `unsupported` or `environment`.
    pub fn kind(&self) -> &'static str {
        match self {
            ResolveError::InvalidAddress(_) => "invalid-address",
            ResolveError::NotFound(_) => "not-found",
            ResolveError::Unsupported(_) => "unsupported",
            ResolveError::Environment(_) => "environment",
        }
    }

    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            ResolveError::InvalidAddress(m)
            | ResolveError::NotFound(m)
            | ResolveError::Unsupported(m)
            | ResolveError::Environment(m) => m,
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ResolveError {}

/// Shorthand for an [`ResolveError::InvalidAddress`].
pub fn invalid(message: impl Into<String>) -> ResolveError {
    ResolveError::InvalidAddress(message.into())
}

/// Where a value came from, which decides the kind of error a bad value makes
/// and where the message says it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// The address the user typed: a bad value is an `invalid-address`.
    Address,
    /// An environment variable: a bad value is an `environment` error.
    Variable(&'a str),
    /// A file the plugin read: a bad value is an `environment` error.
    File(&'a std::path::Path),
}

impl Origin<'_> {
    /// The error for a bad value from here, with `message` saying what is wrong.
    pub fn invalid(self, message: impl Into<String>) -> ResolveError {
        let message = message.into();
        match self {
            Origin::Address => ResolveError::InvalidAddress(message),
            Origin::Variable(name) => {
                ResolveError::Environment(format!("{message} (from `{name}`)"))
            }
            Origin::File(path) => {
                ResolveError::Environment(format!("{message} (in `{}`)", path.display()))
            }
        }
    }
}
