//! The BuildKit session: a `Control.Session` call whose byte stream carries
//! HTTP/2 the other way round. The daemon is the gRPC client in there and
//! copa serves it: health checks always, registry credentials and file
//! transfers as a build needs them.
//!
//! This module serves only what it was given in [`SessionServices`] (whose
//! default takes registry credentials from the user's Docker config, see
//! `auth`): it never reads credentials or files by itself, and it never keeps
//! a session open past [`Session::close`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::PollSender;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::{Request, Streaming};

use super::auth::DockerConfigAuth;
use super::client::{Client, MAX_MESSAGE_SIZE};
use super::error::BuildkitError;
use super::filesend::FileSend;
use super::proto::moby::buildkit::v1::BytesMessage;
use super::proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use super::proto::moby::filesync::v1::file_send_server::FileSendServer;

/// The session name the daemon shows in its logs and debug output.
const SESSION_NAME: &str = "copa";

/// How many chunks may wait to go out on the session stream.
const OUTBOUND_QUEUE: usize = 64;

/// The largest chunk put in one `BytesMessage`, well under
/// [`MAX_MESSAGE_SIZE`].
const MAX_CHUNK: usize = 1 << 20;

/// HTTP/2 flow-control windows of the session server. The daemon streams
/// tarballs to copa through it (`FileSend`), so large windows save round
/// trips; the 64 KiB protocol default would throttle them.
const SESSION_STREAM_WINDOW: u32 = 8 << 20;
const SESSION_CONNECTION_WINDOW: u32 = 16 << 20;

/// How long [`Session::close`] waits for the daemon to end the session after
/// copa half-closed it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Request metadata of `Control.Session` (lower-case on the wire).
const UUID_HEADER: &str = "x-docker-expose-session-uuid";
const NAME_HEADER: &str = "x-docker-expose-session-name";
const SHARED_KEY_HEADER: &str = "x-docker-expose-session-sharedkey";
const METHOD_HEADER: &str = "x-docker-expose-session-grpc-method";

/// The gRPC services copa offers the daemon inside one session, and the
/// method paths it announces for them.
///
/// `grpc.health.v1.Health` is always served: without it the daemon drops the
/// session after about ten seconds.
pub struct SessionServices {
    routes: RoutesBuilder,
    methods: Vec<String>,
}

impl SessionServices {
    /// Health checks only.
    pub fn new() -> SessionServices {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let services = SessionServices {
            routes: RoutesBuilder::default(),
            methods: Vec::new(),
        };
        services.with_service(health, &["Check"])
    }

    /// Adds `service`, announcing `methods` (bare names such as `DiffCopy`)
    /// to the daemon. The daemon only looks at the announcement for
    /// `FileSync` and `FileSend`, but every served method is listed.
    ///
    /// Each service can be added once; a second one of the same name panics.
    pub fn with_service<S>(mut self, service: S, methods: &[&str]) -> SessionServices
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        let paths = methods
            .iter()
            .map(|method| format!("/{}/{method}", S::NAME));
        self.methods.extend(paths);
        self
    }

    /// Serves registry credentials through `auth`.
    pub fn with_auth<A: Auth>(self, auth: A) -> SessionServices {
        let server = AuthServer::new(auth)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        self.with_service(server, AUTH_METHODS)
    }

    /// Receives the tarballs of `docker`/`oci` exporters through
    /// `file_send`, announcing `FileSend/DiffCopy` (without the announcement
    /// the daemon refuses to export to the client).
    pub fn with_file_send(self, file_send: FileSend) -> SessionServices {
        let server = FileSendServer::new(file_send)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        self.with_service(server, &["DiffCopy"])
    }

    /// The full method paths announced to the daemon.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }
}

/// Health checks, and registry credentials from the user's Docker config
/// (anonymous access where it has none).
impl Default for SessionServices {
    fn default() -> SessionServices {
        SessionServices::new().with_auth(DockerConfigAuth::from_env())
    }
}

/// The methods of `moby.filesync.v1.Auth`.
const AUTH_METHODS: &[&str] = &[
    "Credentials",
    "FetchToken",
    "GetTokenAuthority",
    "VerifyTokenAuthority",
];

/// A running session: the `Control.Session` call and the server inside it.
/// Dropping it tears the session down at once; [`Session::close`] ends it in
/// order.
pub(crate) struct Session {
    id: String,
    half_close: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), BuildkitError>>>,
}

impl Session {
    /// Opens the session `id` and starts serving `services` in it. Returns at
    /// once; the call and the server run in a background task.
    pub(crate) fn open(client: &Client, id: String, services: SessionServices) -> Session {
        let (half_close, half_close_rx) = oneshot::channel();
        let task = tokio::spawn(run(client.clone(), id.clone(), services, half_close_rx));
        Session {
            id,
            half_close: Some(half_close),
            task: Some(task),
        }
    }

    /// Ends the session the way BuildKit expects: half-closes copa's side,
    /// then waits (up to a few seconds) for the daemon to end its side.
    /// Failures past this point no longer matter to the build; they are
    /// logged at debug level.
    pub(crate) async fn close(mut self) {
        drop(self.half_close.take());
        let Some(mut task) = self.task.take() else {
            return;
        };

        let id = &self.id;
        match tokio::time::timeout(CLOSE_TIMEOUT, &mut task).await {
            Ok(Ok(Ok(()))) => tracing::debug!(session = %id, "session closed"),
            Ok(Ok(Err(err))) => {
                let error = DisplayChain(&err);
                tracing::debug!(session = %id, %error, "session ended with an error");
            }
            Ok(Err(error)) => tracing::debug!(session = %id, %error, "session task failed"),
            Err(_) => {
                tracing::debug!(session = %id, "session did not end in time");
                task.abort();
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Runs one session until the daemon ends it or the tunnel breaks.
async fn run(
    client: Client,
    id: String,
    services: SessionServices,
    half_close: oneshot::Receiver<()>,
) -> Result<(), BuildkitError> {
    let (outbound_tx, outbound_rx) = mpsc::channel::<BytesMessage>(OUTBOUND_QUEUE);
    // Firing or dropping `half_close` ends the request stream: the daemon
    // reads EOF and finishes the call. The server may still be writing.
    let outbound = ReceiverStream::new(outbound_rx).take_until(half_close);

    let request = session_request(outbound, &id, services.methods())?;
    let inbound = client
        .control()
        .session(request)
        .await
        .map_err(|status| BuildkitError::call("Control.Session", status))?
        .into_inner();
    tracing::debug!(session = %id, "session tunnel open");

    let tunnel = Tunnel::new(outbound_tx, inbound);
    let routes = services.routes.routes().prepare();
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .initial_stream_window_size(SESSION_STREAM_WINDOW)
        .initial_connection_window_size(SESSION_CONNECTION_WINDOW);

    http2
        .serve_connection(TokioIo::new(tunnel), TowerToHyperService::new(routes))
        .await
        .map_err(|source| BuildkitError::Session {
            session_id: id.clone(),
            source,
        })
}

/// The `Control.Session` request: the outbound stream plus the metadata
/// naming the session and announcing, one entry each, the served methods.
pub(super) fn session_request<S>(
    outbound: S,
    id: &str,
    methods: &[String],
) -> Result<Request<S>, BuildkitError> {
    let value = |key: &'static str, value: &str| {
        MetadataValue::try_from(value).map_err(|_| BuildkitError::InvalidMetadata {
            key,
            value: value.to_owned(),
        })
    };

    let mut request = Request::new(outbound);
    let metadata = request.metadata_mut();
    metadata.insert(UUID_HEADER, value(UUID_HEADER, id)?);
    metadata.insert(NAME_HEADER, MetadataValue::from_static(SESSION_NAME));
    metadata.insert(SHARED_KEY_HEADER, MetadataValue::from_static(""));
    for method in methods {
        metadata.append(METHOD_HEADER, value(METHOD_HEADER, method)?);
    }
    Ok(request)
}

/// The session's byte stream as an `AsyncRead + AsyncWrite`: every write
/// goes out as `BytesMessage`s, reads take the daemon's messages in order,
/// whatever their size.
struct Tunnel {
    outbound: PollSender<BytesMessage>,
    inbound: Streaming<BytesMessage>,
    pending: Bytes,
}

impl Tunnel {
    fn new(outbound: mpsc::Sender<BytesMessage>, inbound: Streaming<BytesMessage>) -> Tunnel {
        Tunnel {
            outbound: PollSender::new(outbound),
            inbound,
            pending: Bytes::new(),
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(Pin::new(&mut self.inbound).poll_next(cx)) {
                Some(Ok(message)) => self.pending = Bytes::from(message.data),
                Some(Err(status)) => return Poll::Ready(Err(io::Error::other(status))),
                // The daemon ended the session: EOF.
                None => return Poll::Ready(Ok(())),
            }
        }

        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if ready!(self.outbound.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }

        let n = buf.len().min(MAX_CHUNK);
        let message = BytesMessage {
            data: buf[..n].to_vec(),
        };
        if self.outbound.send_item(message).is_err() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outbound.close();
        Poll::Ready(Ok(()))
    }
}

/// `{:#}`-style rendering of an error and its sources, for debug logs.
pub(crate) struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}
