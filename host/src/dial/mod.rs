//! Dial: turn a [`DialSpec`] into a byte stream that carries BuildKit's gRPC.
//!
//! This is the only place in copa that opens sockets or spawns transport
//! processes. It never decides *what* to dial: that is the connector's job.
//! It never runs a shell: a spawned program gets its argv exactly as given.

mod docker;
mod process;
mod tls;

/// The Engine API client, for the engine calls that are not dials.
pub(crate) use docker::{engine_http1, error_message as engine_error_message};

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpStream, UnixStream};
use tracing::debug;

/// How long one dial may take, from the first connect to a usable stream
/// (TCP and TLS handshakes and the Docker Engine's HTTP upgrade included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a transport's stderr is kept for the error message.
pub const STDERR_TAIL_BYTES: usize = 8 * 1024;

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

/// A bidirectional byte stream that carries BuildKit's HTTP/2 gRPC.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

impl<T> Stream for T where T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// TLS files for a `tcp://` address (`--cacert`, `--cert`, `--key`).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// PEM file with the CA certificates that sign the server's certificate.
    pub ca_cert: Option<PathBuf>,
    /// PEM file with the client certificate chain, for mutual TLS.
    pub cert: Option<PathBuf>,
    /// PEM file with the client's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// The name to verify the server's certificate against; the host of the
    /// address when absent.
    pub server_name: Option<String>,
}

/// What a dial needs besides the spec.
#[derive(Clone, Debug, Default)]
pub struct DialOptions {
    /// Wrap a [`DialSpec::Tcp`] connection in TLS. Ignored for other specs.
    pub tls: Option<TlsFiles>,
}

/// A dialed stream, and the stderr of the process behind it when there is one.
pub struct Connection {
    pub stream: BoxStream,
    /// The tail of a spawned program's or a Docker exec's stderr.
    pub stderr: Option<StderrTail>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("stderr", &self.stderr)
            .finish_non_exhaustive()
    }
}

/// The last [`STDERR_TAIL_BYTES`] of a transport process's stderr, collected
/// while the stream is in use. Once a read on the stream has returned end of
/// stream, the tail is complete.
#[derive(Clone)]
pub struct StderrTail {
    bytes: Arc<Mutex<VecDeque<u8>>>,
}

impl StderrTail {
    /// A tail and the writer that fills it.
    fn new() -> (StderrTail, StderrWriter) {
        let bytes = Arc::new(Mutex::new(VecDeque::new()));
        let tail = StderrTail {
            bytes: Arc::clone(&bytes),
        };
        (tail, StderrWriter { bytes })
    }

    /// What was kept so far, decoded lossily as UTF-8.
    pub fn text(&self) -> String {
        let bytes = self
            .bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (front, back) = bytes.as_slices();
        let mut all = Vec::with_capacity(bytes.len());
        all.extend_from_slice(front);
        all.extend_from_slice(back);
        String::from_utf8_lossy(&all).into_owned()
    }
}

impl fmt::Debug for StderrTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StderrTail").field(&self.text()).finish()
    }
}

/// The writing side of a [`StderrTail`].
struct StderrWriter {
    bytes: Arc<Mutex<VecDeque<u8>>>,
}

impl StderrWriter {
    fn push(&self, chunk: &[u8]) {
        let mut bytes = self
            .bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bytes.extend(chunk);
        let excess = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
        bytes.drain(..excess);
    }
}

/// Why a dial failed. Each variant names what was being dialed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("failed to connect to unix socket `{path}`")]
    Unix {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to connect to `{addr}`")]
    Tcp {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("timed out after {after:?} dialing {target}")]
    Timeout { target: String, after: Duration },
    #[error("--cacert is required for TLS to `{addr}`")]
    TlsCaRequired { addr: String },
    #[error("TLS client certificate `{}` was given without a key (--key)", .cert.display())]
    TlsCertWithoutKey { cert: PathBuf },
    #[error("TLS client key `{}` was given without a certificate (--cert)", .key.display())]
    TlsKeyWithoutCert { key: PathBuf },
    #[error("failed to read {what} `{}`", .path.display())]
    TlsPem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("failed to load CA certificate from `{}`", .path.display())]
    TlsCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("failed to set up TLS for `{addr}`")]
    TlsConfig {
        addr: String,
        #[source]
        source: rustls::Error,
    },
    #[error("invalid TLS server name `{name}`")]
    TlsServerName {
        name: String,
        #[source]
        source: rustls_pki_types::InvalidDnsNameError,
    },
    #[error("failed to complete the TLS handshake with `{addr}`")]
    TlsHandshake {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to start `{program}`: it is not in PATH")]
    NotInPath {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("unsupported docker endpoint `{endpoint}`: {reason}")]
    DockerEndpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error("failed to send `{request}` to the docker engine at `{endpoint}`")]
    DockerRequest {
        endpoint: String,
        request: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("failed to `{request}` at the docker engine `{endpoint}`: HTTP {status}: {message}")]
    DockerStatus {
        endpoint: String,
        request: String,
        status: u16,
        message: String,
    },
    #[error("no such container `{container}` at the docker engine `{endpoint}`")]
    NoSuchContainer {
        endpoint: String,
        container: String,
        message: String,
    },
    #[error("container `{container}` is not running (docker engine `{endpoint}`): {message}")]
    ContainerNotRunning {
        endpoint: String,
        container: String,
        message: String,
    },
}

/// Open a byte stream to BuildKit as `spec` says, within [`CONNECT_TIMEOUT`].
pub async fn dial(spec: &DialSpec, opts: &DialOptions) -> Result<Connection, DialError> {
    dial_within(spec, opts, CONNECT_TIMEOUT).await
}

async fn dial_within(
    spec: &DialSpec,
    opts: &DialOptions,
    timeout: Duration,
) -> Result<Connection, DialError> {
    debug!(target = %spec, tls = opts.tls.is_some(), "dialing");

    let attempt = async {
        match spec {
            DialSpec::Unix { path } => Ok(plain(Box::new(connect_unix(path).await?))),
            DialSpec::Tcp { host, port } => match &opts.tls {
                Some(files) => tls::connect(host, *port, files).await.map(plain),
                None => Ok(plain(Box::new(connect_tcp(host, *port).await?))),
            },
            DialSpec::Spawn { program, args, env } => process::spawn(program, args, env),
            DialSpec::DockerGrpc { endpoint } => docker::grpc(endpoint).await.map(plain),
            DialSpec::DockerExec {
                endpoint,
                container,
                command,
            } => docker::exec(endpoint, container, command).await,
        }
    };

    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(DialError::Timeout {
            target: spec.to_string(),
            after: timeout,
        }),
    }
}

fn plain(stream: BoxStream) -> Connection {
    Connection {
        stream,
        stderr: None,
    }
}

async fn connect_unix(path: &str) -> Result<UnixStream, DialError> {
    UnixStream::connect(path)
        .await
        .map_err(|source| DialError::Unix {
            path: path.to_owned(),
            source,
        })
}

async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, DialError> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|source| DialError::Tcp {
            addr: host_port(host, port),
            source,
        })?;

    // Not fatal: gRPC works without it, only with more latency.
    if let Err(err) = stream.set_nodelay(true) {
        debug!(%err, host, port, "failed to set TCP_NODELAY");
    }
    Ok(stream)
}

/// `host:port`, with an IPv6 host in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, UnixListener};

    use super::*;

    /// Accept one connection and echo it back until the peer closes.
    async fn echo_once<S>(stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut read, mut write) = tokio::io::split(stream);
        tokio::io::copy(&mut read, &mut write).await.unwrap();
        write.shutdown().await.unwrap();
    }

    async fn round_trip(stream: &mut BoxStream, message: &[u8]) -> Vec<u8> {
        stream.write_all(message).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        back
    }

    #[test]
    fn documented_defaults_hold() {
        assert_eq!(CONNECT_TIMEOUT, Duration::from_secs(10));
        assert_eq!(STDERR_TAIL_BYTES, 8192);
    }

    #[tokio::test]
    async fn unix_socket_carries_bytes_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buildkitd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server =
            tokio::spawn(async move { echo_once(listener.accept().await.unwrap().0).await });

        let spec = DialSpec::Unix {
            path: path.to_str().unwrap().to_owned(),
        };
        let mut connection = dial(&spec, &DialOptions::default()).await.unwrap();

        assert_eq!(round_trip(&mut connection.stream, b"ping").await, b"ping");
        assert!(connection.stderr.is_none());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn missing_unix_socket_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sock").to_str().unwrap().to_owned();

        let spec = DialSpec::Unix { path: path.clone() };
        let err = dial(&spec, &DialOptions::default()).await.unwrap_err();

        assert!(matches!(err, DialError::Unix { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("failed to connect to unix socket `{path}`")
        );
    }

    #[tokio::test]
    async fn tcp_connection_carries_bytes_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server =
            tokio::spawn(async move { echo_once(listener.accept().await.unwrap().0).await });

        let spec = DialSpec::Tcp {
            host: "127.0.0.1".to_owned(),
            port,
        };
        let mut connection = dial(&spec, &DialOptions::default()).await.unwrap();

        assert_eq!(round_trip(&mut connection.stream, b"ping").await, b"ping");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn refused_tcp_error_names_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);

        let spec = DialSpec::Tcp {
            host: "127.0.0.1".to_owned(),
            port,
        };
        let err = dial(&spec, &DialOptions::default()).await.unwrap_err();

        assert!(matches!(err, DialError::Tcp { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("failed to connect to `127.0.0.1:{port}`")
        );
    }

    #[tokio::test]
    async fn dial_that_gets_no_answer_times_out_naming_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let _server = tokio::spawn(async move {
            let (held, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(held);
        });

        let spec = DialSpec::DockerGrpc {
            endpoint: format!("unix://{}", path.display()),
        };
        let err = dial_within(&spec, &DialOptions::default(), Duration::from_millis(200))
            .await
            .unwrap_err();

        assert!(matches!(err, DialError::Timeout { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn stderr_tail_keeps_only_the_last_bytes() {
        let (tail, writer) = StderrTail::new();
        writer.push(&vec![b'a'; STDERR_TAIL_BYTES]);
        writer.push(b"the end");

        let text = tail.text();
        assert_eq!(text.len(), STDERR_TAIL_BYTES);
        assert!(text.ends_with("aathe end"));
    }
}
