//! Tarballs the daemon sends to copa: the `docker` and `oci` exporters write
//! the image as a tar stream through `moby.filesync.v1.FileSend/DiffCopy`,
//! which copa serves inside the session and hands on, chunk by chunk, to
//! whoever delivers the image (Docker's image load, `podman load`, an OCI
//! directory).
//!
//! Nothing here ever holds a whole archive: each chunk waits for room in a
//! small bounded queue, and while it waits the daemon is held back by HTTP/2
//! flow control. It never writes files and never decides where an image goes.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::client::Client;
use super::gateway::GatewayBuild;
use super::proto::moby::buildkit::v1 as control;
use super::proto::moby::filesync::v1::BytesMessage;
use super::proto::moby::filesync::v1::file_send_server;
use super::session::SessionServices;

/// Where a tarball goes: the sending half of [`Tarball::channel`].
pub struct TarballSink {
    chunks: mpsc::Sender<io::Result<Bytes>>,
    complete: Arc<AtomicBool>,
}

/// How many chunks may wait between the session and the consumer. The
/// daemon's chunks are at most 3 MiB (usually far less), so this bounds what
/// copa holds besides the HTTP/2 windows.
pub const TARBALL_QUEUE: usize = 16;

/// The metadata naming the exporter a `DiffCopy` belongs to: its index in
/// `SolveRequest.exporters`. BuildKit v0.12 does not send it: exporter 0.
const EXPORTER_ID_HEADER: &str = "buildkit-attachable-exporter-id";

/// The `FileSend` service: one sink per exporter id, each used once.
#[derive(Clone, Default)]
pub struct FileSend {
    sinks: Arc<Sinks>,
}

#[derive(Default)]
struct Sinks(Mutex<BTreeMap<u32, TarballSink>>);

impl FileSend {
    /// No sinks yet: every `DiffCopy` is refused until one is added.
    pub fn new() -> FileSend {
        FileSend::default()
    }

    /// Streams the tarball of exporter `id` (its index among the solve's
    /// exporters) to `sink`.
    pub fn sink(self, id: u32, sink: TarballSink) -> FileSend {
        self.sinks.lock().insert(id, sink);
        self
    }
}

impl Sinks {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, TarballSink>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[tonic::async_trait]
impl file_send_server::FileSend for FileSend {
    type DiffCopyStream = tokio_stream::Empty<Result<BytesMessage, Status>>;

    async fn diff_copy(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let id = exporter_id(&request)?;
        let Some(sink) = self.sinks.lock().remove(&id) else {
            let message = format!("copa expects no tarball from exporter {id}");
            return Err(Status::failed_precondition(message));
        };
        tracing::debug!(exporter = id, "tarball export started");

        let mut inbound = request.into_inner();
        let mut sent = 0u64;
        loop {
            let chunk = match inbound.message().await {
                Ok(Some(message)) => Bytes::from(message.data),
                Ok(None) => break,
                Err(status) => {
                    let message = format!("the daemon broke off the tarball: {}", status.message());
                    let _ = sink.chunks.send(Err(io::Error::other(message))).await;
                    return Err(status);
                }
            };
            if chunk.is_empty() {
                continue;
            }

            sent += chunk.len() as u64;
            if sink.chunks.send(Ok(chunk)).await.is_err() {
                tracing::debug!(exporter = id, sent, "tarball consumer went away");
                let message = format!("copa stopped reading exporter {id}'s tarball");
                return Err(Status::aborted(message));
            }
        }

        sink.complete.store(true, Ordering::Release);
        tracing::debug!(exporter = id, bytes = sent, "tarball export finished");
        Ok(Response::new(tokio_stream::empty()))
    }
}

/// The exporter id of a `DiffCopy` call; absent means 0 (BuildKit v0.12).
fn exporter_id<T>(request: &Request<T>) -> Result<u32, Status> {
    let Some(value) = request.metadata().get(EXPORTER_ID_HEADER) else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| {
            let message = format!("`{EXPORTER_ID_HEADER}` is not an exporter index: {value:?}");
            Status::invalid_argument(message)
        })
}

/// The archive layouts the daemon can stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarballFormat {
    /// A docker-archive (`manifest.json`, `repositories`) that also holds an
    /// OCI layout: what `docker load` and `podman load` read.
    Docker,
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/`).
    Oci,
}

impl TarballFormat {
    /// The exporter's name in `SolveRequest`.
    pub fn exporter_type(self) -> &'static str {
        match self {
            TarballFormat::Docker => "docker",
            TarballFormat::Oci => "oci",
        }
    }

    /// The `oci-mediatypes` a new exporter starts with: Docker media types
    /// for a docker-archive, which every Docker Engine loads; OCI ones for an
    /// OCI layout. Always sent, since BuildKit v0.31 changed its own default.
    pub fn default_oci_mediatypes(self) -> bool {
        match self {
            TarballFormat::Docker => false,
            TarballFormat::Oci => true,
        }
    }
}

/// A `docker` or `oci` exporter that streams its tarball to copa.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarballExporter {
    format: TarballFormat,
    attrs: BTreeMap<String, String>,
}

impl TarballExporter {
    /// An exporter of `format` with `oci-mediatypes` set explicitly (see
    /// [`TarballFormat::default_oci_mediatypes`]).
    pub fn new(format: TarballFormat) -> TarballExporter {
        let oci = format.default_oci_mediatypes().to_string();
        TarballExporter {
            format,
            attrs: BTreeMap::from([("oci-mediatypes".to_owned(), oci)]),
        }
    }

    /// The image name(s) recorded in the archive, comma-separated.
    pub fn name(self, name: impl Into<String>) -> TarballExporter {
        self.attr("name", name)
    }

    /// Sets any exporter attribute (`compression`, `annotation.<key>`, …).
    pub fn attr(mut self, key: impl Into<String>, value: impl Into<String>) -> TarballExporter {
        self.attrs.insert(key.into(), value.into());
        self
    }

    pub fn format(&self) -> TarballFormat {
        self.format
    }

    pub fn attrs(&self) -> &BTreeMap<String, String> {
        &self.attrs
    }

    /// A solve request naming this as its only exporter, both ways: fields 3
    /// and 4 for BuildKit v0.12, field 13 for later daemons.
    pub fn solve_request(&self) -> control::SolveRequest {
        let exporter_type = self.format.exporter_type().to_owned();
        control::SolveRequest {
            exporter_deprecated: exporter_type.clone(),
            exporter_attrs_deprecated: self.attrs.clone(),
            exporters: vec![control::Exporter {
                r#type: exporter_type,
                attrs: self.attrs.clone(),
            }],
            ..Default::default()
        }
    }
}

/// The receiving end of an exported tarball: its chunks in order, then the
/// end, or an `Err` if the archive broke off or never came. A tarball that
/// ends without the daemon having finished it never just ends.
pub struct Tarball {
    chunks: ReceiverStream<io::Result<Bytes>>,
    complete: Arc<AtomicBool>,
    received: u64,
    done: bool,
}

impl Tarball {
    /// A sink and the tarball that comes out of it.
    pub fn channel() -> (TarballSink, Tarball) {
        let (chunks_tx, chunks) = mpsc::channel(TARBALL_QUEUE);
        let complete = Arc::new(AtomicBool::new(false));
        let sink = TarballSink {
            chunks: chunks_tx,
            complete: Arc::clone(&complete),
        };
        let tarball = Tarball {
            chunks: ReceiverStream::new(chunks),
            complete,
            received: 0,
            done: false,
        };
        (sink, tarball)
    }
}

impl Stream for Tarball {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }

        let item = ready!(Pin::new(&mut self.chunks).poll_next(cx));
        match item {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(err)) => {
                self.done = true;
                Poll::Ready(Some(Err(err)))
            }
            None if self.complete.load(Ordering::Acquire) => {
                self.done = true;
                Poll::Ready(None)
            }
            None => {
                self.done = true;
                let message = match self.received {
                    0 => "the build ended before the daemon sent the tarball".to_owned(),
                    n => format!("the tarball broke off after {n} bytes"),
                };
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    message,
                ))))
            }
        }
    }
}

impl GatewayBuild {
    /// Starts a gateway build whose result `exporter` streams back as a
    /// tarball. Read the [`Tarball`] while driving the build: the daemon
    /// sends it after `Return`, during [`GatewayBuild::finish`], and waits
    /// while nobody reads. Dropping the tarball fails the export.
    ///
    /// `services` must not serve `FileSend` already.
    pub fn start_export(
        client: &Client,
        services: SessionServices,
        exporter: &TarballExporter,
    ) -> (GatewayBuild, Tarball) {
        let (sink, tarball) = Tarball::channel();
        let services = services.with_file_send(FileSend::new().sink(0, sink));
        let build = GatewayBuild::start_with(client, services, exporter.solve_request());
        (build, tarball)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use prost::Message;

    use super::*;

    #[test]
    fn docker_archives_default_to_docker_media_types_and_oci_layouts_to_oci() {
        assert!(!TarballFormat::Docker.default_oci_mediatypes());
        assert!(TarballFormat::Oci.default_oci_mediatypes());
        assert_eq!(TARBALL_QUEUE, 16);

        let docker = TarballExporter::new(TarballFormat::Docker);
        let oci = TarballExporter::new(TarballFormat::Oci);

        assert_eq!(docker.attrs()["oci-mediatypes"], "false");
        assert_eq!(oci.attrs()["oci-mediatypes"], "true");
    }

    #[test]
    fn the_exporter_goes_in_fields_3_4_and_13() {
        let exporter = TarballExporter::new(TarballFormat::Docker)
            .name("copa.test/app:1-patched")
            .attr("compression", "gzip");

        let request = exporter.solve_request();
        let bytes = request.encode_to_vec();
        let decoded =
            bollard_buildkit_proto::moby::buildkit::v1::SolveRequest::decode(bytes.as_slice())
                .unwrap();

        assert_eq!(decoded.exporter_deprecated, "docker");
        assert_eq!(
            decoded.exporter_attrs_deprecated["name"],
            "copa.test/app:1-patched"
        );
        assert_eq!(decoded.exporters.len(), 1);
        assert_eq!(decoded.exporters[0].r#type, "docker");
        assert_eq!(
            decoded.exporters[0].attrs,
            decoded.exporter_attrs_deprecated
        );
        assert_eq!(decoded.exporters[0].attrs["compression"], "gzip");
        assert_eq!(decoded.exporters[0].attrs["oci-mediatypes"], "false");
    }

    #[test]
    fn the_exporter_id_comes_from_metadata_and_defaults_to_zero() {
        let mut request = Request::new(());
        assert_eq!(exporter_id(&request).unwrap(), 0);

        request
            .metadata_mut()
            .insert(EXPORTER_ID_HEADER, "2".parse().unwrap());
        assert_eq!(exporter_id(&request).unwrap(), 2);

        request
            .metadata_mut()
            .insert(EXPORTER_ID_HEADER, "two".parse().unwrap());
        let status = exporter_id(&request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn an_unused_sink_reports_that_no_tarball_came() {
        let (sink, mut tarball) = Tarball::channel();
        let file_send = FileSend::new().sink(0, sink);

        drop(file_send);

        let err = tarball.next().await.unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "the build ended before the daemon sent the tarball"
        );
        assert!(tarball.next().await.is_none());
    }

    #[tokio::test]
    async fn a_sink_dropped_mid_stream_ends_the_tarball_with_an_error() {
        let (sink, mut tarball) = Tarball::channel();

        sink.chunks
            .send(Ok(Bytes::from_static(b"abc")))
            .await
            .unwrap();
        drop(sink);

        assert_eq!(tarball.next().await.unwrap().unwrap(), "abc");
        let err = tarball.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(err.to_string(), "the tarball broke off after 3 bytes");
        assert!(tarball.next().await.is_none());
    }

    #[tokio::test]
    async fn a_completed_sink_ends_the_tarball_cleanly() {
        let (sink, mut tarball) = Tarball::channel();

        sink.chunks
            .send(Ok(Bytes::from_static(b"abc")))
            .await
            .unwrap();
        sink.complete.store(true, Ordering::Release);
        drop(sink);

        assert_eq!(tarball.next().await.unwrap().unwrap(), "abc");
        assert!(tarball.next().await.is_none());
    }
}
