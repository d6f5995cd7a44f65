//! The connection to one BuildKit daemon: the Control and LLBBridge clients
//! on a single HTTP/2 channel, and the read-only calls copa makes before a
//! build (version, workers, capabilities).
//!
//! It never opens sockets itself: every byte stream comes from the dialer the
//! caller hands in, so the same client runs over unix sockets, TCP, spawned
//! processes and Docker's `/grpc` upgrade alike.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::error::{BuildkitError, TransportError};
use super::gateway::GatewayBuild;
use super::proto::moby::buildkit::v1::control_client::ControlClient;
use super::proto::moby::buildkit::v1::frontend::llb_bridge_client::LlbBridgeClient;
use super::proto::moby::buildkit::v1::frontend::{self, PongResponse};
use super::proto::moby::buildkit::v1::{InfoRequest, ListWorkersRequest};
use super::proto::pb;
use super::session::SessionServices;
use crate::dial::BoxStream;

/// The largest gRPC message sent or accepted, on every client and server:
/// the limit buildkitd and its Go client use (tonic's default is 4 MiB).
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The URI of every request. The connector ignores it and buildkitd does not
/// check `:authority`; `.invalid` makes sure it never resolves by accident.
const ENDPOINT_URI: &str = "http://buildkit.invalid";

/// A connected BuildKit daemon. Cheap to clone: clones share the channel.
#[derive(Debug, Clone)]
pub struct Client {
    control: ControlClient<Channel>,
    bridge: LlbBridgeClient<Channel>,
}

/// What the daemon says about its own build (`Control.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonInfo {
    /// The release, e.g. `v0.12.4`; `v0.0.0+unknown` for unstamped builds,
    /// so never gate features on it: use [`Client::probe`].
    pub version: String,
    /// The source revision.
    pub revision: String,
    /// The Go module path, e.g. `github.com/moby/buildkit`.
    pub package: String,
}

/// One worker of the daemon (`Control.ListWorkers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Worker {
    pub id: String,
    /// Platforms the worker can run, as `os/arch[/variant]`.
    pub platforms: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// The capabilities a daemon reports inside a gateway build: enabled ones
/// only, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// LLB capabilities, e.g. `mergeop`, `source.image`.
    pub llb: BTreeSet<String>,
    /// Gateway (frontend API) capabilities, e.g. `readfile`, `return`.
    pub frontend: BTreeSet<String>,
}

impl Client {
    /// Connects to a daemon through `dial`, which is called for the first
    /// connection and again for any reconnect.
    pub async fn connect<F, Fut>(dial: F) -> Result<Client, BuildkitError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<BoxStream>> + Send + 'static,
    {
        let dial = Arc::new(dial);
        let connector = tower::service_fn(move |_: http::Uri| {
            let dial = Arc::clone(&dial);
            async move { dial().await.map(TokioIo::new) }
        });

        let channel = Endpoint::from_static(ENDPOINT_URI)
            .connect_with_connector(connector)
            .await
            .map_err(|err| BuildkitError::Connect(TransportError::new(err)))?;

        Ok(Client::from_channel(channel))
    }

    fn from_channel(channel: Channel) -> Client {
        let control = ControlClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let bridge = LlbBridgeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Client { control, bridge }
    }

    /// The daemon's version, revision and Go package.
    pub async fn info(&self) -> Result<DaemonInfo, BuildkitError> {
        let response = self
            .control()
            .info(InfoRequest {})
            .await
            .map_err(|status| BuildkitError::call("Control.Info", status))?
            .into_inner();

        let version = response.buildkit_version.unwrap_or_default();
        Ok(DaemonInfo {
            version: version.version,
            revision: version.revision,
            package: version.package,
        })
    }

    /// The daemon's workers, in the daemon's order (the first is the default).
    pub async fn workers(&self) -> Result<Vec<Worker>, BuildkitError> {
        let response = self
            .control()
            .list_workers(ListWorkersRequest::default())
            .await
            .map_err(|status| BuildkitError::call("Control.ListWorkers", status))?
            .into_inner();

        let workers = response
            .record
            .into_iter()
            .map(|record| Worker {
                id: record.id,
                platforms: record.platforms.iter().map(platform_string).collect(),
                labels: record.labels,
            })
            .collect();
        Ok(workers)
    }

    /// The daemon's capabilities, found by a throw-away gateway build: there
    /// is no Control call for them. Takes one round of Solve, Ping and
    /// Return; nothing is built or exported.
    pub async fn probe(&self) -> Result<Capabilities, BuildkitError> {
        let mut build = GatewayBuild::start(self, SessionServices::default());

        let caps = match build.ping().await {
            Ok(caps) => caps,
            Err(err) => {
                build.abort().await;
                return Err(err);
            }
        };

        build.ret(frontend::Result::default()).await?;
        build.finish().await?;
        Ok(caps)
    }

    /// A Control client on the shared channel.
    pub(crate) fn control(&self) -> ControlClient<Channel> {
        self.control.clone()
    }

    /// An LLBBridge client on the shared channel.
    pub(crate) fn bridge(&self) -> LlbBridgeClient<Channel> {
        self.bridge.clone()
    }
}

/// `v0.12.4 (github.com/moby/buildkit, revision 833949d0f)`.
impl fmt::Display for DaemonInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, revision {})",
            self.version, self.package, self.revision
        )
    }
}

impl Capabilities {
    /// The enabled capabilities of a `LLBBridge.Ping` answer. A cap counts
    /// only if it is listed *and* enabled.
    pub fn from_pong(pong: &PongResponse) -> Capabilities {
        let enabled = |caps: &[super::proto::moby::buildkit::v1::apicaps::ApiCap]| {
            caps.iter()
                .filter(|cap| cap.enabled)
                .map(|cap| cap.id.clone())
                .collect()
        };
        Capabilities {
            llb: enabled(&pong.llb_caps),
            frontend: enabled(&pong.frontend_api_caps),
        }
    }

    /// Whether `cap` is enabled, as an LLB or a frontend capability (their
    /// ids do not overlap).
    pub fn has(&self, cap: &str) -> bool {
        self.llb.contains(cap) || self.frontend.contains(cap)
    }

    /// Whether the daemon can merge filesystems (LLB `MergeOp`), which copa
    /// needs to lay the patch over the image.
    pub fn merge_op(&self) -> bool {
        self.llb.contains("mergeop")
    }

    /// Whether the daemon can take the difference of two filesystems (LLB
    /// `DiffOp`), which copa needs to extract the patch layer.
    pub fn diff_op(&self) -> bool {
        self.llb.contains("diffop")
    }
}

/// `os/arch[/variant]`, the way the CLI and OCI tooling print platforms.
pub(crate) fn platform_string(platform: &pb::Platform) -> String {
    let mut out = format!("{}/{}", platform.os, platform.architecture);
    if !platform.variant.is_empty() {
        out.push('/');
        out.push_str(&platform.variant);
    }
    out
}
