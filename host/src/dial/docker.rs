//! The Docker Engine API as a transport: `POST /grpc` upgraded to h2c (the
//! engine's embedded BuildKit), and an exec in a container whose stdio carries
//! the stream (`buildctl dial-stdio`), with no docker CLI involved.
//!
//! Only `unix://` and plain `tcp://` endpoints are dialed. Paths are
//! unversioned, so the engine answers with its own API version. It never
//! changes a container: it only creates and starts execs.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::debug;

use super::{
    BoxStream, Connection, DialError, StderrTail, StderrWriter, connect_tcp, connect_unix,
};

/// Docker's default port for a `tcp://` endpoint without one.
const DEFAULT_TCP_PORT: u16 = 2375;

/// The most of an error body kept for the message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The most of a reply head read before the exec stream starts.
const HEAD_LIMIT: usize = 16 * 1024;

/// Where the Docker Engine listens.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    Unix(String),
    Tcp { host: String, port: u16 },
}

impl Endpoint {
    fn parse(endpoint: &str) -> Result<Endpoint, DialError> {
        let refuse = |reason| DialError::DockerEndpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };

        if let Some(path) = endpoint.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(refuse("the socket path must be absolute"));
            }
            return Ok(Endpoint::Unix(path.to_owned()));
        }
        if !endpoint.starts_with("tcp://") {
            return Err(refuse("only unix:// and tcp:// endpoints are supported"));
        }

        let url = url::Url::parse(endpoint).map_err(|_| refuse("not a valid tcp:// URL"))?;
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(refuse("the tcp:// URL has no host")),
        };
        let port = url.port().unwrap_or(DEFAULT_TCP_PORT);
        Ok(Endpoint::Tcp { host, port })
    }

    async fn connect(&self) -> Result<BoxStream, DialError> {
        match self {
            Endpoint::Unix(path) => Ok(Box::new(connect_unix(path).await?)),
            Endpoint::Tcp { host, port } => Ok(Box::new(connect_tcp(host, *port).await?)),
        }
    }
}

/// `POST /grpc` with `Upgrade: h2c`; the upgraded connection speaks BuildKit's
/// gRPC (HTTP/2, client first).
pub(super) async fn grpc(endpoint: &str) -> Result<BoxStream, DialError> {
    const REQUEST: &str = "POST /grpc";
    let engine = Endpoint::parse(endpoint)?;
    let request_error = request_error(endpoint, REQUEST);

    let mut sender = http1_client(&engine, endpoint, REQUEST).await?;
    let request = Request::post("/grpc")
        .header(header::HOST, "docker")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "h2c")
        .body(Full::new(Bytes::new()))
        .map_err(|err| request_error(Box::new(err)))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| request_error(Box::new(err)))?;

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status().as_u16();
        return Err(DialError::DockerStatus {
            endpoint: endpoint.to_owned(),
            request: REQUEST.to_owned(),
            status,
            message: error_message(response).await,
        });
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|err| request_error(Box::new(err)))?;
    debug!(endpoint, "docker engine upgraded /grpc to h2c");
    Ok(Box::new(TokioIo::new(upgraded)))
}

/// Run `command` in `container` through the Engine API's exec, and return its
/// stdio as a stream with stderr split off.
pub(super) async fn exec(
    endpoint: &str,
    container: &str,
    command: &[String],
) -> Result<Connection, DialError> {
    let engine = Endpoint::parse(endpoint)?;
    let id = create_exec(&engine, endpoint, container, command).await?;
    debug!(endpoint, container, exec = %id, "docker exec created");

    let (io, leftover) = start_exec(&engine, endpoint, &id).await?;
    let (tail, writer) = StderrTail::new();
    Ok(Connection {
        stream: Box::new(Demux::new(io, leftover, writer)),
        stderr: Some(tail),
    })
}

#[derive(Deserialize)]
struct ExecCreated {
    #[serde(rename = "Id")]
    id: String,
}

async fn create_exec(
    engine: &Endpoint,
    endpoint: &str,
    container: &str,
    command: &[String],
) -> Result<String, DialError> {
    let request_line = format!("POST /containers/{container}/exec");
    let request_error = request_error(endpoint, &request_line);

    let body = serde_json::json!({
        "AttachStdin": true,
        "AttachStdout": true,
        "AttachStderr": true,
        "Tty": false,
        "Cmd": command,
    });
    let request = Request::post(format!("/containers/{}/exec", encode_segment(container)))
        .header(header::HOST, "docker")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|err| request_error(Box::new(err)))?;

    let mut sender = http1_client(engine, endpoint, &request_line).await?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| request_error(Box::new(err)))?;

    let status = response.status();
    if !status.is_success() {
        let message = error_message(response).await;
        let (endpoint, container) = (endpoint.to_owned(), container.to_owned());
        return Err(match status {
            StatusCode::NOT_FOUND => DialError::NoSuchContainer {
                endpoint,
                container,
                message,
            },
            StatusCode::CONFLICT => DialError::ContainerNotRunning {
                endpoint,
                container,
                message,
            },
            _ => DialError::DockerStatus {
                endpoint,
                request: request_line,
                status: status.as_u16(),
                message,
            },
        });
    }

    let body = Limited::new(response.into_body(), ERROR_BODY_LIMIT)
        .collect()
        .await
        .map_err(&request_error)?
        .to_bytes();
    let created: ExecCreated =
        serde_json::from_slice(&body).map_err(|err| request_error(Box::new(err)))?;
    Ok(created.id)
}

/// `POST /exec/{id}/start`, attached. With `Upgrade: tcp` the engine answers
/// `101 UPGRADED`; without it (or on engines that ignore it) `200 OK`; either
/// way the connection is then hijacked and carries the exec's stdio. hyper can
/// only hand back the connection after a 101, so the exchange is written by
/// hand. Returns the connection and any stream bytes read past the reply head.
async fn start_exec(
    engine: &Endpoint,
    endpoint: &str,
    id: &str,
) -> Result<(BoxStream, Bytes), DialError> {
    let request_line = format!("POST /exec/{id}/start");
    let io_error = |err: io::Error| request_error(endpoint, &request_line)(Box::new(err));

    let body = br#"{"Detach":false,"Tty":false}"#;
    let head = format!(
        "POST /exec/{}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n\
         Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {}\r\n\r\n",
        encode_segment(id),
        body.len()
    );
    let mut io = engine.connect().await?;
    io.write_all(head.as_bytes()).await.map_err(io_error)?;
    io.write_all(body).await.map_err(io_error)?;
    io.flush().await.map_err(io_error)?;

    let reply = read_reply_head(&mut io).await.map_err(io_error)?;
    debug!(endpoint, exec = %id, status = reply.status, "docker exec start answered");
    if reply.status == 101 || reply.status == 200 {
        return Ok((io, reply.rest));
    }

    let mut body = reply.rest.to_vec();
    if let Some(length) = reply.content_length {
        let length = length.min(ERROR_BODY_LIMIT);
        if body.len() < length {
            let mut more = vec![0; length - body.len()];
            if io.read_exact(&mut more).await.is_ok() {
                body.extend_from_slice(&more);
            }
        }
    }
    Err(DialError::DockerStatus {
        endpoint: endpoint.to_owned(),
        request: request_line,
        status: reply.status,
        message: message_of(&body),
    })
}

struct ReplyHead {
    status: u16,
    content_length: Option<usize>,
    /// Bytes that followed the head in the same reads.
    rest: Bytes,
}

async fn read_reply_head<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<ReplyHead> {
    let mut buf = BytesMut::with_capacity(1024);
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > HEAD_LIMIT {
            return Err(invalid_reply("the reply head is too long"));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the engine closed the connection before replying",
            ));
        }
    };

    let head = buf.split_to(end + 4);
    let head =
        std::str::from_utf8(&head).map_err(|_| invalid_reply("the reply head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1."))
        .and_then(|line| line.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid_reply("the reply has no HTTP/1 status line"))?;
    let content_length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok());

    Ok(ReplyHead {
        status,
        content_length,
        rest: buf.freeze(),
    })
}

fn invalid_reply(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// An HTTP/1 client on a new connection to the Engine API at `endpoint`, for
/// the engine calls copa makes besides dialing BuildKit (the image load).
/// `request` names the call in errors.
pub(crate) async fn engine_http1<B>(
    endpoint: &str,
    request: &str,
) -> Result<SendRequest<B>, DialError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let engine = Endpoint::parse(endpoint)?;
    http1_client(&engine, endpoint, request).await
}

/// An HTTP/1 client on a new connection to the engine, driven in the
/// background (with upgrades, for `/grpc`).
async fn http1_client<B>(
    engine: &Endpoint,
    endpoint: &str,
    request: &str,
) -> Result<SendRequest<B>, DialError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let io = engine.connect().await?;
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|err| request_error(endpoint, request)(Box::new(err)))?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            debug!(%err, "docker engine connection ended");
        }
    });
    Ok(sender)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn request_error(endpoint: &str, request: &str) -> impl Fn(BoxError) -> DialError + use<> {
    let (endpoint, request) = (endpoint.to_owned(), request.to_owned());
    move |source| DialError::DockerRequest {
        endpoint: endpoint.clone(),
        request: request.clone(),
        source,
    }
}

/// The engine's `{"message": ...}`, or the start of the body as text.
pub(crate) async fn error_message(response: http::Response<Incoming>) -> String {
    match Limited::new(response.into_body(), ERROR_BODY_LIMIT)
        .collect()
        .await
    {
        Ok(body) => message_of(&body.to_bytes()),
        Err(err) => format!("(failed to read the reply body: {err})"),
    }
}

fn message_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct EngineError {
        message: String,
    }

    if let Ok(error) = serde_json::from_slice::<EngineError>(body) {
        return error.message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(512) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None if text.is_empty() => "(empty reply)".to_owned(),
        None => text.to_owned(),
    }
}

/// Percent-encode `segment` for use as one path segment.
fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Docker's multiplexed stdio: 8-byte headers `[stream, 0, 0, 0, len u32 BE]`
/// before each frame. Stream 1 (stdout) is what reads return; 2 (stderr) and
/// 3 (the engine's own errors) go to the [`StderrTail`]. Writes go through
/// unframed: they are the exec's stdin.
struct Demux<S> {
    io: S,
    /// Bytes read from `io` but not yet handed out.
    buffered: BytesMut,
    /// Where the current frame goes ([`STREAM_STDOUT`] or [`STREAM_STDERR`])
    /// and how much of it is left.
    frame: Option<(u8, usize)>,
    stderr: StderrWriter,
}

const HEADER_LEN: usize = 8;
const STREAM_STDIN: u8 = 0;
const STREAM_STDOUT: u8 = 1;
const STREAM_STDERR: u8 = 2;
const STREAM_SYSTEMERR: u8 = 3;

impl<S> Demux<S> {
    fn new(io: S, leftover: Bytes, stderr: StderrWriter) -> Self {
        Demux {
            io,
            buffered: BytesMut::from(&leftover[..]),
            frame: None,
            stderr,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Demux<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }

        loop {
            match this.frame {
                None if this.buffered.len() >= HEADER_LEN => {
                    let header = this.buffered.split_to(HEADER_LEN);
                    let stream = match header[0] {
                        STREAM_STDIN | STREAM_STDOUT => STREAM_STDOUT,
                        STREAM_STDERR | STREAM_SYSTEMERR => STREAM_STDERR,
                        other => {
                            let message =
                                format!("unknown docker stream type {other} in exec output");
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                message,
                            )));
                        }
                    };
                    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                    if len > 0 {
                        this.frame = Some((stream, len as usize));
                    }
                    continue;
                }
                Some((stream, left)) if !this.buffered.is_empty() => {
                    let n = left.min(this.buffered.len());
                    if stream == STREAM_STDOUT {
                        let n = n.min(buf.remaining());
                        buf.put_slice(&this.buffered[..n]);
                        this.buffered.advance(n);
                        this.frame = (left > n).then_some((stream, left - n));
                        return Poll::Ready(Ok(()));
                    }
                    this.stderr.push(&this.buffered[..n]);
                    this.buffered.advance(n);
                    this.frame = (left > n).then_some((stream, left - n));
                    continue;
                }
                _ => {}
            }

            // Need more bytes from the engine.
            let mut chunk = [0u8; 8192];
            let mut chunk_buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut chunk_buf))?;
            if chunk_buf.filled().is_empty() {
                if this.frame.is_some() || !this.buffered.is_empty() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the docker exec stream ended inside a frame",
                    )));
                }
                return Poll::Ready(Ok(()));
            }
            this.buffered.extend_from_slice(chunk_buf.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Demux<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Half-closes the connection, which the engine passes on as EOF on the
    /// exec's stdin.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::dial::{DialOptions, DialSpec, dial};

    /// Hands out its input in the given pieces, one per read, then EOF.
    struct Pieces(VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut piece) = self.0.pop_front() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                if n < piece.len() {
                    self.0.push_front(piece.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![stream, 0, 0, 0];
        frame.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// Demultiplex `wire`, cut into `piece`-byte reads after `leftover`.
    async fn demux(leftover: &[u8], wire: &[u8], piece: usize) -> (io::Result<Vec<u8>>, String) {
        let pieces = wire.chunks(piece).map(<[u8]>::to_vec).collect();
        let (tail, writer) = StderrTail::new();
        let mut demux = Demux::new(Pieces(pieces), Bytes::copy_from_slice(leftover), writer);

        let mut out = Vec::new();
        let result = demux.read_to_end(&mut out).await.map(|_| out);
        (result, tail.text())
    }

    #[tokio::test]
    async fn demux_separates_stdout_from_stderr_across_any_split() {
        let mut wire = frame(STREAM_STDOUT, b"hello ");
        wire.extend(frame(STREAM_STDERR, b"warning\n"));
        wire.extend(frame(STREAM_STDOUT, &[]));
        wire.extend(frame(STREAM_STDOUT, b"world"));
        wire.extend(frame(STREAM_SYSTEMERR, b"engine error"));

        for piece in [1, 2, 3, 7, 8, 9, 13, wire.len()] {
            let (out, err) = demux(&[], &wire, piece).await;
            assert_eq!(out.unwrap(), b"hello world", "pieces of {piece}");
            assert_eq!(err, "warning\nengine error", "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn demux_starts_with_bytes_read_past_the_reply_head() {
        let first = frame(STREAM_STDOUT, b"early");
        let (leftover, rest) = first.split_at(5);
        let mut wire = rest.to_vec();
        wire.extend(frame(STREAM_STDOUT, b" late"));

        let (out, _) = demux(leftover, &wire, 4).await;

        assert_eq!(out.unwrap(), b"early late");
    }

    #[tokio::test]
    async fn demux_reports_a_stream_cut_inside_a_frame() {
        let wire = frame(STREAM_STDOUT, b"truncated");

        let (out, _) = demux(&[], &wire[..wire.len() - 2], 3).await;
        assert_eq!(out.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);

        let (out, _) = demux(&[], &wire[..5], 3).await;
        assert_eq!(out.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn demux_rejects_an_unknown_stream_type() {
        let wire = frame(7, b"?");

        let (out, _) = demux(&[], &wire, 64).await;

        assert_eq!(out.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn exec_start_reply_is_accepted_as_101_or_200_keeping_early_stream_bytes() {
        // The two heads Docker Engine 20.10 sends, with and without `Upgrade: tcp`.
        let heads: [&[u8]; 2] = [
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n\
              Connection: Upgrade\r\nUpgrade: tcp\r\nApi-Version: 1.41\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n",
        ];
        for head in heads {
            let mut wire = head.to_vec();
            wire.extend(frame(STREAM_STDOUT, b"hi"));
            let mut pieces = Pieces(wire.chunks(5).map(<[u8]>::to_vec).collect());

            let reply = read_reply_head(&mut pieces).await.unwrap();

            assert!(reply.status == 101 || reply.status == 200);
            let mut stream = reply.rest.to_vec();
            pieces.read_to_end(&mut stream).await.unwrap();
            assert_eq!(stream, frame(STREAM_STDOUT, b"hi"));
        }
    }

    #[tokio::test]
    async fn exec_start_error_reply_gives_status_and_length() {
        let wire = b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\n\r\n{}".to_vec();

        let reply = read_reply_head(&mut Pieces(VecDeque::from([wire])))
            .await
            .unwrap();

        assert_eq!((reply.status, reply.content_length), (409, Some(2)));
        assert_eq!(&reply.rest[..], b"{}");
    }

    #[test]
    fn endpoints_parse_to_a_socket_path_or_host_and_port() {
        let parse = |endpoint| Endpoint::parse(endpoint).unwrap();
        assert_eq!(DEFAULT_TCP_PORT, 2375, "Docker's own default");

        assert_eq!(
            parse("unix:///var/run/docker.sock"),
            Endpoint::Unix("/var/run/docker.sock".to_owned())
        );
        assert_eq!(
            parse("tcp://127.0.0.1:2376"),
            Endpoint::Tcp {
                host: "127.0.0.1".to_owned(),
                port: 2376
            }
        );
        assert_eq!(
            parse("tcp://[::1]"),
            Endpoint::Tcp {
                host: "::1".to_owned(),
                port: DEFAULT_TCP_PORT
            }
        );
    }

    #[test]
    fn endpoints_other_than_unix_and_tcp_are_refused() {
        for endpoint in [
            "npipe:////./pipe/docker_engine",
            "ssh://me@host",
            "unix://relative.sock",
        ] {
            let err = Endpoint::parse(endpoint).unwrap_err();
            assert!(matches!(err, DialError::DockerEndpoint { .. }), "{err:?}");
            assert!(err.to_string().contains(endpoint), "{err}");
        }
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("copa-bk_1.x"), "copa-bk_1.x");
        assert_eq!(encode_segment("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn engine_error_bodies_become_their_message() {
        assert_eq!(
            message_of(br#"{"message":"No such container: x"}"#),
            "No such container: x"
        );
        assert_eq!(message_of(b"page not found\n"), "page not found");
        assert_eq!(message_of(b""), "(empty reply)");
    }

    // Against the real Docker Engine (`scripts/up.sh` starts it, with the
    // container `copa-bk-docker`; COPA_TEST_DOCKER_CONTAINER names another).

    const DOCKER_SOCKET: &str = "/var/run/docker.sock";

    fn docker_endpoint() -> Option<String> {
        if Path::new(DOCKER_SOCKET).exists() {
            return Some(format!("unix://{DOCKER_SOCKET}"));
        }
        eprintln!("skipped: no Docker Engine socket at {DOCKER_SOCKET}");
        None
    }

    fn test_container() -> String {
        std::env::var("COPA_TEST_DOCKER_CONTAINER").unwrap_or_else(|_| "copa-bk-docker".to_owned())
    }

    fn docker_exec(endpoint: &str, container: &str, command: &[&str]) -> DialSpec {
        DialSpec::DockerExec {
            endpoint: endpoint.to_owned(),
            container: container.to_owned(),
            command: command.iter().map(|arg| (*arg).to_owned()).collect(),
        }
    }

    #[tokio::test]
    async fn docker_grpc_upgrades_to_h2c_and_answers_the_http2_preface() {
        let Some(endpoint) = docker_endpoint() else {
            return;
        };
        let spec = DialSpec::DockerGrpc { endpoint };
        let mut connection = dial(&spec, &DialOptions::default()).await.unwrap();

        // The client preface, then an empty SETTINGS frame.
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        connection.stream.write_all(&preface).await.unwrap();
        let mut header = [0u8; 9];
        connection.stream.read_exact(&mut header).await.unwrap();

        assert_eq!(
            header[3], 0x4,
            "the server's first frame is SETTINGS: {header:?}"
        );
    }

    #[tokio::test]
    async fn docker_exec_in_a_missing_container_names_the_container() {
        let Some(endpoint) = docker_endpoint() else {
            return;
        };
        let spec = docker_exec(&endpoint, "copa-no-such-container", &["cat"]);

        let err = dial(&spec, &DialOptions::default()).await.unwrap_err();

        assert!(matches!(err, DialError::NoSuchContainer { .. }), "{err:?}");
        assert!(
            err.to_string().contains("`copa-no-such-container`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn docker_exec_carries_stdin_to_stdout_until_stdin_closes() {
        let Some(endpoint) = docker_endpoint() else {
            return;
        };
        let spec = docker_exec(&endpoint, &test_container(), &["cat"]);
        let mut connection = dial(&spec, &DialOptions::default()).await.unwrap();

        connection.stream.write_all(b"ping\n").await.unwrap();
        connection.stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        let read = connection.stream.read_to_end(&mut back);
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .unwrap()
            .unwrap();

        assert_eq!(back, b"ping\n");
    }

    #[tokio::test]
    async fn docker_exec_keeps_stderr_apart_from_stdout() {
        let Some(endpoint) = docker_endpoint() else {
            return;
        };
        // `sh` is only the test's program here; the product never runs one.
        let command = ["sh", "-c", "echo out; echo boom >&2"];
        let spec = docker_exec(&endpoint, &test_container(), &command);
        let mut connection = dial(&spec, &DialOptions::default()).await.unwrap();
        let stderr = connection.stderr.clone().unwrap();

        let mut out = Vec::new();
        let read = connection.stream.read_to_end(&mut out);
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .unwrap()
            .unwrap();

        assert_eq!(out, b"out\n");
        assert_eq!(stderr.text(), "boom\n");
    }
}
