//! A gateway build: a `Control.Solve` with neither a definition nor a
//! frontend, driven by copa through `LLBBridge` calls until copa returns a
//! result. The capability probe is one (it pings and returns nothing); a
//! patch is one too (it resolves, solves and reads, then returns the image).
//!
//! Order of events: the session opens, `Control.Solve` starts, every
//! `LLBBridge` call names the build in `buildkit-controlapi-buildid`, exactly
//! one `Return` ends the build, `Control.Solve` returns once exporters are
//! done, and only then does the session close. This module never returns a
//! nil result to the daemon (it would crash on one) and never leaves a build
//! running: dropping a [`GatewayBuild`] cancels it.

use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Streaming;
use tonic::metadata::AsciiMetadataValue;

use super::client::{Capabilities, Client};
use super::error::BuildkitError;
use super::proto::google::rpc;
use super::proto::moby::buildkit::v1 as control;
use super::proto::moby::buildkit::v1::frontend;
use super::session::{Session, SessionServices};

/// The metadata naming the gateway build an `LLBBridge` call belongs to.
const BUILD_ID_HEADER: &str = "buildkit-controlapi-buildid";

/// How long `ping` keeps retrying while the daemon has not yet registered
/// the build (it answers "no such job"). The daemon itself waits 3 s per
/// call, so this only covers a slow `Control.Solve` start.
const PING_RETRY_WINDOW: Duration = Duration::from_secs(3);

/// The pause between two pings while the build is not registered.
const PING_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long one `Ping` may take, as in BuildKit's Go client.
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// The length of build and session ids: 25 base-36 characters, as BuildKit's
/// own ids. They never contain `:`, which the daemon splits session ids on.
const ID_LEN: usize = 25;

type SolveOutcome = Option<Result<control::SolveResponse, tonic::Status>>;

/// A running gateway build. Make `LLBBridge` calls with it, end it with
/// [`ret`](GatewayBuild::ret) or [`ret_error`](GatewayBuild::ret_error), then
/// collect the exporters' answer with [`finish`](GatewayBuild::finish).
pub struct GatewayBuild {
    client: Client,
    build_ref: String,
    build_ref_value: AsciiMetadataValue,
    session: Option<Session>,
    solve: watch::Receiver<SolveOutcome>,
    solve_task: JoinHandle<()>,
    returned: bool,
}

impl GatewayBuild {
    /// Starts a gateway build that exports nothing, serving `services` in its
    /// session.
    pub fn start(client: &Client, services: SessionServices) -> GatewayBuild {
        GatewayBuild::start_with(client, services, control::SolveRequest::default())
    }

    /// Starts a gateway build from `request` (exporters, frontend attributes,
    /// cache options, …). Its build ref, session, definition and frontend are
    /// overwritten: those are what make it a gateway build.
    pub fn start_with(
        client: &Client,
        services: SessionServices,
        request: control::SolveRequest,
    ) -> GatewayBuild {
        let build_ref = random_id();
        let session_id = random_id();
        let build_ref_value = AsciiMetadataValue::try_from(build_ref.as_str())
            .expect("base-36 ids are valid metadata");

        let session = Session::open(client, session_id.clone(), services);

        let request = control::SolveRequest {
            build_ref: build_ref.clone(),
            session: session_id,
            definition: None,
            frontend: String::new(),
            cache: Some(request.cache.unwrap_or_default()),
            ..request
        };
        let (solve_tx, solve) = watch::channel(None);
        let mut control = client.control();
        let solve_task = tokio::spawn(async move {
            let outcome = control.solve(request).await.map(|r| r.into_inner());
            let _ = solve_tx.send(Some(outcome));
        });
        tracing::debug!(build = %build_ref, "gateway build started");

        GatewayBuild {
            client: client.clone(),
            build_ref,
            build_ref_value,
            session: Some(session),
            solve,
            solve_task,
            returned: false,
        }
    }

    /// The daemon's enabled capabilities (`LLBBridge.Ping`). Retries while the
    /// daemon has not registered the build yet.
    pub async fn ping(&self) -> Result<Capabilities, BuildkitError> {
        let started = Instant::now();
        loop {
            let call = tokio::time::timeout(PING_TIMEOUT, async {
                let mut bridge = self.client.bridge();
                let request = self.bridge_request(frontend::PingRequest {});
                self.bridged("LLBBridge.Ping", bridge.ping(request)).await
            });
            let outcome = call.await.map_err(|_| BuildkitError::Timeout {
                method: "LLBBridge.Ping",
                after: PING_TIMEOUT,
            })?;

            match outcome {
                Ok(pong) => return Ok(Capabilities::from_pong(&pong)),
                Err(err) if is_unknown_job(&err) && started.elapsed() < PING_RETRY_WINDOW => {
                    tracing::debug!(build = %self.build_ref, "build not registered yet");
                    tokio::time::sleep(PING_RETRY_PAUSE).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Ends the build with `result` (`LLBBridge.Return`). An empty
    /// `Result::default()` is a valid "nothing to export".
    pub async fn ret(&mut self, result: frontend::Result) -> Result<(), BuildkitError> {
        self.send_return(frontend::ReturnRequest {
            result: Some(result),
            error: None,
        })
        .await
    }

    /// Ends the build with an error; `Control.Solve` then fails with it.
    pub async fn ret_error(
        &mut self,
        code: tonic::Code,
        message: impl Into<String>,
    ) -> Result<(), BuildkitError> {
        let error = rpc::Status {
            code: code as i32,
            message: message.into(),
            details: Vec::new(),
        };
        self.send_return(frontend::ReturnRequest {
            // The daemon reads the result even next to an error.
            result: Some(frontend::Result::default()),
            error: Some(error),
        })
        .await
    }

    async fn send_return(&mut self, request: frontend::ReturnRequest) -> Result<(), BuildkitError> {
        let mut bridge = self.client.bridge();
        let request = self.bridge_request(request);
        let call = bridge.r#return(request);
        self.bridged("LLBBridge.Return", call).await?;
        self.returned = true;
        Ok(())
    }

    /// Waits for `Control.Solve` (exporters included) and closes the
    /// session. Ends the build with an error first if nothing was returned.
    pub async fn finish(mut self) -> Result<control::SolveResponse, BuildkitError> {
        if !self.returned {
            self.ret_error(
                tonic::Code::Cancelled,
                "copa ended the build without a result",
            )
            .await?;
        }

        let outcome = self
            .solve
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|outcome| outcome.clone());
        if let Some(session) = self.session.take() {
            session.close().await;
        }

        match outcome {
            Some(Ok(response)) => {
                tracing::debug!(build = %self.build_ref, "gateway build finished");
                Ok(response)
            }
            Some(Err(status)) => Err(BuildkitError::call("Control.Solve", status)),
            None => Err(BuildkitError::Protocol {
                build_ref: self.build_ref.clone(),
                what: "Control.Solve ended without an answer".to_owned(),
            }),
        }
    }

    /// Cancels the build and drops its session, for when copa gives up.
    pub async fn abort(mut self) {
        self.solve_task.abort();
        drop(self.session.take());
        tracing::debug!(build = %self.build_ref, "gateway build aborted");
    }

    fn bridge_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert(BUILD_ID_HEADER, self.build_ref_value.clone());
        request
    }

    /// Awaits an `LLBBridge` call, unless `Control.Solve` fails first: then
    /// the build is over and its error is the one worth reporting.
    async fn bridged<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, BuildkitError> {
        let mut solve = self.solve.clone();
        let mut call = std::pin::pin!(call);

        let solve_failed = tokio::select! {
            biased;
            outcome = &mut call => {
                return outcome
                    .map(tonic::Response::into_inner)
                    .map_err(|status| BuildkitError::call(method, status));
            }
            outcome = solve.wait_for(Option::is_some) => match outcome.as_deref() {
                Ok(Some(Err(status))) => Some(status.clone()),
                _ => None,
            },
        };

        match solve_failed {
            Some(status) => Err(BuildkitError::call("Control.Solve", status)),
            // Solve ended well (a `Return` raced its answer): finish the call.
            None => call
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| BuildkitError::call(method, status)),
        }
    }
}

/// The calls a patch makes; the probe needs none of them.
impl GatewayBuild {
    /// The build id (`Control.SolveRequest` ref).
    pub fn build_ref(&self) -> &str {
        &self.build_ref
    }

    /// The daemon's progress for this build (`Control.Status`), as deltas.
    /// The call holds no borrow of the build, so it can be followed in a
    /// task of its own while the build goes on.
    pub fn progress(
        &self,
    ) -> impl Future<Output = Result<Streaming<control::StatusResponse>, BuildkitError>> + Send + 'static
    {
        let request = control::StatusRequest {
            build_ref: self.build_ref.clone(),
        };
        let mut control = self.client.control();
        async move {
            let response = control
                .status(request)
                .await
                .map_err(|status| BuildkitError::call("Control.Status", status))?;
            Ok(response.into_inner())
        }
    }

    /// An image's config and digest (`LLBBridge.ResolveImageConfig`).
    pub async fn resolve_image_config(
        &self,
        request: frontend::ResolveImageConfigRequest,
    ) -> Result<frontend::ResolveImageConfigResponse, BuildkitError> {
        let mut bridge = self.client.bridge();
        let request = self.bridge_request(request);
        let call = bridge.resolve_image_config(request);
        self.bridged("LLBBridge.ResolveImageConfig", call).await
    }

    /// Solves LLB inside this build (`LLBBridge.Solve`); the result's refs
    /// can be read from and returned.
    pub async fn solve(
        &self,
        request: frontend::SolveRequest,
    ) -> Result<frontend::SolveResponse, BuildkitError> {
        let mut bridge = self.client.bridge();
        let request = self.bridge_request(request);
        self.bridged("LLBBridge.Solve", bridge.solve(request)).await
    }

    /// Reads a file from a solved ref (`LLBBridge.ReadFile`).
    pub async fn read_file(
        &self,
        request: frontend::ReadFileRequest,
    ) -> Result<Vec<u8>, BuildkitError> {
        let mut bridge = self.client.bridge();
        let request = self.bridge_request(request);
        let response = self
            .bridged("LLBBridge.ReadFile", bridge.read_file(request))
            .await?;
        Ok(response.data)
    }
}

impl Drop for GatewayBuild {
    fn drop(&mut self) {
        // Aborting a finished task is a no-op; an unfinished one cancels the
        // `Control.Solve` call, which makes the daemon drop the build.
        self.solve_task.abort();
    }
}

/// Whether the daemon did not know the build yet: v0.12 says "no such job",
/// later versions the same with code NotFound.
fn is_unknown_job(err: &BuildkitError) -> bool {
    err.status().is_some_and(|status| {
        let message = status.message().to_ascii_lowercase();
        message.contains("no such job") || message.contains("unknown job")
    })
}

/// A fresh build or session id.
pub(crate) fn random_id() -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..ID_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}
