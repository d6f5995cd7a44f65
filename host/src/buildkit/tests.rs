//! Tests of the BuildKit client.
//!
//! Offline tests check what copa puts on the wire, decoding it with an
//! independent set of generated BuildKit types (`bollard-buildkit-proto`).
//! Live tests run against real buildkitd daemons, an old one (v0.12) and a
//! current one, whose unix sockets come from `COPA_TEST_UNIX_V12` and
//! `COPA_TEST_UNIX_NEW`, or from `/run/copa-test/env` as written by
//! `scripts/up.sh`. Without either, the live tests fail: they never pass
//! silently. They never start or stop a daemon themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prost::Message;
use tokio::net::UnixStream;

use super::client::{MAX_MESSAGE_SIZE, platform_string};
use super::error::BuildkitError;
use super::gateway::GatewayBuild;
use super::gateway::random_id;
use super::proto::moby::buildkit::v1 as control;
use super::proto::moby::buildkit::v1::apicaps::ApiCap;
use super::proto::moby::buildkit::v1::frontend;
use super::proto::moby::filesync::v1 as auth;
use super::proto::moby::filesync::v1::auth_server::Auth;
use super::proto::pb;
use super::session::SessionServices;
use super::session::session_request;
use super::*;
use crate::dial::BoxStream;

use bollard_buildkit_proto::moby::buildkit::v1 as oracle;

/// Where `scripts/up.sh` records the test daemons' addresses.
const TEST_ENV_FILE: &str = "/run/copa-test/env";

// ---- offline ------------------------------------------------------------

#[test]
fn return_with_an_empty_result_still_carries_the_result_field() {
    let request = frontend::ReturnRequest {
        result: Some(frontend::Result::default()),
        error: None,
    };

    let bytes = request.encode_to_vec();

    // Field 1, length-delimited, empty: the daemon sees a non-nil Result.
    assert_eq!(bytes, [0x0a, 0x00]);
    let decoded = oracle::frontend::ReturnRequest::decode(bytes.as_slice()).unwrap();
    assert!(decoded.result.is_some());
    assert!(decoded.error.is_none());
}

#[test]
fn return_with_an_error_decodes_as_a_google_rpc_status() {
    let request = frontend::ReturnRequest {
        result: Some(frontend::Result::default()),
        error: Some(super::proto::google::rpc::Status {
            code: tonic::Code::Aborted as i32,
            message: "patching failed".into(),
            details: Vec::new(),
        }),
    };

    let decoded =
        oracle::frontend::ReturnRequest::decode(request.encode_to_vec().as_slice()).unwrap();

    let error = decoded.error.unwrap();
    assert_eq!(error.code, tonic::Code::Aborted as i32);
    assert_eq!(error.message, "patching failed");
}

#[test]
fn control_solve_request_decodes_with_buildkit_field_numbers() {
    let request = control::SolveRequest {
        build_ref: "ref0".into(),
        session: "session0".into(),
        exporter_deprecated: "image".into(),
        exporter_attrs_deprecated: BTreeMap::from([("push".into(), "true".into())]),
        frontend_attrs: BTreeMap::from([("k".into(), "v".into())]),
        cache: Some(control::CacheOptions::default()),
        entitlements: vec!["network.host".into()],
        exporters: vec![control::Exporter {
            r#type: "image".into(),
            attrs: BTreeMap::from([("name".into(), "example.com/a:b".into())]),
        }],
        ..Default::default()
    };

    let decoded = oracle::SolveRequest::decode(request.encode_to_vec().as_slice()).unwrap();

    assert_eq!(decoded.r#ref, "ref0");
    assert_eq!(decoded.session, "session0");
    assert!(decoded.definition.is_none());
    assert_eq!(decoded.frontend, "");
    assert_eq!(decoded.exporter_deprecated, "image");
    assert_eq!(decoded.exporter_attrs_deprecated["push"], "true");
    assert_eq!(decoded.frontend_attrs["k"], "v");
    assert!(decoded.cache.is_some());
    assert_eq!(decoded.entitlements, ["network.host"]);
    assert_eq!(decoded.exporters.len(), 1);
    assert_eq!(decoded.exporters[0].r#type, "image");
    assert_eq!(decoded.exporters[0].attrs["name"], "example.com/a:b");
}

#[test]
fn gateway_solve_request_decodes_with_buildkit_field_numbers() {
    let definition = pb::Definition {
        def: vec![b"op0".to_vec(), b"op1".to_vec()],
        metadata: BTreeMap::from([(
            "sha256:00".into(),
            pb::OpMetadata {
                description: BTreeMap::from([("llb.customname".into(), "step".into())]),
                caps: BTreeMap::from([("mergeop".into(), true)]),
                ..Default::default()
            },
        )]),
    };
    let request = frontend::SolveRequest {
        definition: Some(definition),
        allow_result_return: true,
        allow_result_array_ref: true,
        evaluate: true,
        ..Default::default()
    };

    let decoded =
        oracle::frontend::SolveRequest::decode(request.encode_to_vec().as_slice()).unwrap();

    let definition = decoded.definition.unwrap();
    assert_eq!(definition.def, [b"op0".to_vec(), b"op1".to_vec()]);
    let metadata = &definition.metadata["sha256:00"];
    assert_eq!(metadata.description["llb.customname"], "step");
    assert!(metadata.caps["mergeop"]);
    assert!(decoded.allow_result_return);
    assert!(decoded.allow_result_array_ref);
    assert!(decoded.evaluate);
}

#[test]
fn only_enabled_caps_count() {
    let cap = |id: &str, enabled: bool| ApiCap {
        id: id.into(),
        enabled,
        ..Default::default()
    };
    let pong = frontend::PongResponse {
        frontend_api_caps: vec![cap("readfile", true), cap("gone", false)],
        llb_caps: vec![cap("mergeop", true), cap("diffop", false)],
        workers: Vec::new(),
    };

    let caps = Capabilities::from_pong(&pong);

    assert!(caps.merge_op());
    assert!(!caps.diff_op());
    assert!(caps.has("readfile"));
    assert!(!caps.has("gone"));
    assert_eq!(caps.llb.len(), 1);
}

#[test]
fn platforms_print_as_os_arch_and_variant() {
    let platform = |arch: &str, variant: &str| pb::Platform {
        architecture: arch.into(),
        os: "linux".into(),
        variant: variant.into(),
        ..Default::default()
    };

    assert_eq!(platform_string(&platform("amd64", "")), "linux/amd64");
    assert_eq!(platform_string(&platform("arm64", "v8")), "linux/arm64/v8");
}

#[test]
fn session_request_announces_each_method_as_its_own_entry() {
    let services = SessionServices::default();

    let request = session_request((), "sess1", services.methods()).unwrap();

    let metadata = request.metadata();
    assert_eq!(
        metadata.get("x-docker-expose-session-uuid").unwrap(),
        "sess1"
    );
    assert_eq!(
        metadata.get("x-docker-expose-session-sharedkey").unwrap(),
        ""
    );
    let methods: Vec<_> = metadata
        .get_all("x-docker-expose-session-grpc-method")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        methods,
        [
            "/grpc.health.v1.Health/Check",
            "/moby.filesync.v1.Auth/Credentials",
            "/moby.filesync.v1.Auth/FetchToken",
            "/moby.filesync.v1.Auth/GetTokenAuthority",
            "/moby.filesync.v1.Auth/VerifyTokenAuthority",
        ]
    );
}

#[test]
fn file_send_is_announced_as_its_diffcopy_method() {
    let services = SessionServices::new().with_file_send(filesend::FileSend::new());

    let request = session_request((), "sess1", services.methods()).unwrap();

    let methods: Vec<_> = request
        .metadata()
        .get_all("x-docker-expose-session-grpc-method")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        methods,
        [
            "/grpc.health.v1.Health/Check",
            "/moby.filesync.v1.FileSend/DiffCopy",
        ]
    );
}

#[test]
fn ids_are_25_base36_characters_and_differ() {
    let a = random_id();
    let b = random_id();

    assert_eq!(a.len(), 25);
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    );
    assert_ne!(a, b);
}

#[test]
fn max_message_size_is_16_mib_as_in_buildkitd() {
    assert_eq!(MAX_MESSAGE_SIZE, 16 * 1024 * 1024);
}

#[tokio::test]
async fn a_failed_dial_keeps_its_cause() {
    let err = Client::connect(|| async {
        Err::<BoxStream, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "nobody listens on /nowhere.sock",
        ))
    })
    .await
    .unwrap_err();

    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(
        chain.starts_with("failed to connect to buildkit: "),
        "{chain}"
    );
    assert!(chain.contains("nobody listens on /nowhere.sock"), "{chain}");
}

#[test]
fn daemon_errors_print_their_message_without_the_unknown_code() {
    let err = BuildkitError::call("LLBBridge.Solve", tonic::Status::unknown("exit code: 100"));
    assert_eq!(
        format!("{:#}", anyhow::Error::from(err)),
        "failed to call LLBBridge.Solve: exit code: 100"
    );

    let err = BuildkitError::call("Control.Info", tonic::Status::unavailable("gone"));
    assert_eq!(
        format!("{:#}", anyhow::Error::from(err)),
        "failed to call Control.Info: Unavailable: gone"
    );
}

// ---- live daemons -------------------------------------------------------

/// The unix socket path of the test daemon named by `var`.
pub(crate) fn daemon_socket(var: &str) -> String {
    let address = std::env::var(var).ok().or_else(|| {
        let env = std::fs::read_to_string(TEST_ENV_FILE).ok()?;
        env.lines().find_map(|line| {
            let line = line.trim().trim_start_matches("export ");
            let value = line.strip_prefix(var)?.strip_prefix('=')?;
            Some(value.trim_matches(['"', '\'']).to_owned())
        })
    });
    let Some(address) = address else {
        panic!(
            "no test daemon: set {var} to a unix:// address or run scripts/up.sh \
             (which writes {TEST_ENV_FILE})"
        );
    };
    match address.strip_prefix("unix://") {
        Some(path) => path.to_owned(),
        None => panic!("{var} must be a unix:// address, not `{address}`"),
    }
}

pub(crate) async fn connect(var: &str) -> Client {
    let path = daemon_socket(var);
    let dial_path = path.clone();
    let dial = move || {
        let path = dial_path.clone();
        async move {
            let stream = UnixStream::connect(&path).await?;
            Ok(Box::new(stream) as BoxStream)
        }
    };

    match Client::connect(dial).await {
        Ok(client) => client,
        Err(err) => panic!("{var} at {path}: {:#}", anyhow::Error::from(err)),
    }
}

fn report(var: &str, what: &str, started: Instant) {
    eprintln!("{var}: {what} took {:?}", started.elapsed());
}

async fn info_reports_a_release_version(var: &str, prefix: &str) {
    let client = connect(var).await;

    let started = Instant::now();
    let info = client.info().await.unwrap();
    report(var, "info", started);

    assert!(info.version.starts_with(prefix), "{info:?}");
    assert_eq!(info.package, "github.com/moby/buildkit");
}

async fn workers_include_linux_amd64(var: &str) {
    let client = connect(var).await;

    let started = Instant::now();
    let workers = client.workers().await.unwrap();
    report(var, "workers", started);

    assert!(!workers.is_empty());
    let worker = &workers[0];
    assert!(
        worker.platforms.iter().any(|p| p == "linux/amd64"),
        "{worker:?}"
    );
    assert!(
        worker
            .labels
            .contains_key("org.mobyproject.buildkit.worker.executor"),
        "{worker:?}"
    );
}

async fn probe_finds_mergeop_diffop_and_source_image(var: &str) {
    let client = connect(var).await;

    let started = Instant::now();
    let caps = client.probe().await.unwrap();
    report(var, "probe", started);

    assert!(caps.merge_op(), "{caps:?}");
    assert!(caps.diff_op(), "{caps:?}");
    assert!(caps.has("source.image"), "{caps:?}");
    for frontend_cap in ["solve.base", "resolveimage", "readfile", "return"] {
        assert!(caps.has(frontend_cap), "{frontend_cap} missing: {caps:?}");
    }
}

async fn probes_run_concurrently_on_one_connection(var: &str) {
    let client = connect(var).await;

    let started = Instant::now();
    let (a, b) = tokio::join!(client.probe(), client.probe());
    report(var, "two concurrent probes", started);

    assert_eq!(a.unwrap(), b.unwrap());
}

async fn returning_an_error_fails_the_solve_with_it(var: &str) {
    let client = connect(var).await;
    let mut build = GatewayBuild::start(&client, SessionServices::default());
    build.ping().await.unwrap();

    build
        .ret_error(tonic::Code::Aborted, "copa test: nothing to patch")
        .await
        .unwrap();
    let err = build.finish().await.unwrap_err();

    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(
        chain.starts_with("failed to call Control.Solve: "),
        "{chain}"
    );
    assert!(chain.contains("copa test: nothing to patch"), "{chain}");
}

async fn a_build_finished_without_return_is_cancelled(var: &str) {
    let client = connect(var).await;
    let build = GatewayBuild::start(&client, SessionServices::default());
    build.ping().await.unwrap();

    let err = build.finish().await.unwrap_err();

    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("without a result"), "{chain}");
}

/// An HTTP server on a loopback port that answers every request with a
/// Bearer challenge whose token endpoint is itself, so any pull from it
/// fails after the daemon has asked the session for credentials.
async fn unauthorized_registry() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = format!(
        "HTTP/1.1 401 Unauthorized\r\n\
         WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"copa-test\"\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut request = [0; 4096];
                let _ = conn.read(&mut request).await;
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("localhost:{port}")
}

/// Registry credentials that record who asked for them.
#[derive(Clone, Default)]
struct RecordingAuth(Arc<Mutex<Vec<String>>>);

#[tonic::async_trait]
impl Auth for RecordingAuth {
    async fn credentials(
        &self,
        request: tonic::Request<auth::CredentialsRequest>,
    ) -> Result<tonic::Response<auth::CredentialsResponse>, tonic::Status> {
        let call = format!("Credentials {}", request.get_ref().host);
        self.0.lock().unwrap().push(call);
        Ok(tonic::Response::new(auth::CredentialsResponse::default()))
    }

    async fn fetch_token(
        &self,
        _: tonic::Request<auth::FetchTokenRequest>,
    ) -> Result<tonic::Response<auth::FetchTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(""))
    }

    async fn get_token_authority(
        &self,
        request: tonic::Request<auth::GetTokenAuthorityRequest>,
    ) -> Result<tonic::Response<auth::GetTokenAuthorityResponse>, tonic::Status> {
        let call = format!("GetTokenAuthority {}", request.get_ref().host);
        self.0.lock().unwrap().push(call);
        Err(tonic::Status::unimplemented(""))
    }

    async fn verify_token_authority(
        &self,
        _: tonic::Request<auth::VerifyTokenAuthorityRequest>,
    ) -> Result<tonic::Response<auth::VerifyTokenAuthorityResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(""))
    }
}

fn linux_amd64() -> pb::Platform {
    pb::Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        ..Default::default()
    }
}

async fn the_daemon_asks_the_session_for_registry_credentials(var: &str) {
    let registry = unauthorized_registry().await;
    let client = connect(var).await;
    let auth = RecordingAuth::default();
    let services = SessionServices::new().with_auth(auth.clone());
    let mut build = GatewayBuild::start(&client, services);
    build.ping().await.unwrap();

    let request = frontend::ResolveImageConfigRequest {
        image_ref: format!("{registry}/copa/probe:1"),
        platform: Some(linux_amd64()),
        resolve_mode: "default".into(),
        ..Default::default()
    };
    let resolved = build.resolve_image_config(request).await;
    build.ret(frontend::Result::default()).await.unwrap();
    build.finish().await.unwrap();

    let err = format!("{:#}", anyhow::Error::from(resolved.unwrap_err()));
    assert!(
        err.starts_with("failed to call LLBBridge.ResolveImageConfig: "),
        "{err}"
    );
    let calls = auth.0.lock().unwrap().clone();
    assert!(
        calls.contains(&format!("Credentials {registry}")),
        "{calls:?}"
    );
}

async fn progress_names_the_resolve_step(var: &str) {
    let registry = unauthorized_registry().await;
    let client = connect(var).await;
    let mut build = GatewayBuild::start(&client, SessionServices::default());
    build.ping().await.unwrap();
    let mut progress = build.progress().await.unwrap();

    let request = frontend::ResolveImageConfigRequest {
        image_ref: format!("{registry}/copa/probe:1"),
        platform: Some(linux_amd64()),
        resolve_mode: "default".into(),
        log_name: "copa test: resolve".into(),
        ..Default::default()
    };
    let _ = build.resolve_image_config(request).await;
    build.ret(frontend::Result::default()).await.unwrap();
    build.finish().await.unwrap();

    let mut names = Vec::new();
    while let Some(update) = progress.message().await.unwrap() {
        names.extend(update.vertexes.into_iter().map(|vertex| vertex.name));
    }
    assert!(
        names.iter().any(|name| name == "copa test: resolve"),
        "{names:?}"
    );
}

/// Like [`unauthorized_registry`], and records every request it gets (head
/// and body), to see what credentials the daemon sends.
async fn recording_registry() -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = format!(
        "HTTP/1.1 401 Unauthorized\r\n\
         WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"copa-test\"\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (reply, recorded) = (reply.clone(), Arc::clone(&recorded));
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0; 4096];
                while let Ok(n) = conn.read(&mut chunk).await {
                    request.extend_from_slice(&chunk[..n]);
                    if n == 0 || request_complete(&request) {
                        break;
                    }
                }
                recorded
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("localhost:{port}"), requests)
}

/// Whether `request` holds a whole HTTP/1 request: its head, and as much
/// body as its `Content-Length` says.
fn request_complete(request: &[u8]) -> bool {
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

async fn credentials_from_a_docker_config_reach_the_registry(var: &str) {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    let (registry, requests) = recording_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let basic = STANDARD.encode("copa-user:copa-secret");
    let json = serde_json::json!({ "auths": { registry.clone(): { "auth": basic } } });
    std::fs::write(&config, json.to_string()).unwrap();

    let client = connect(var).await;
    let services =
        SessionServices::new().with_auth(super::auth::DockerConfigAuth::from_file(&config));
    let mut build = GatewayBuild::start(&client, services);
    build.ping().await.unwrap();

    let request = frontend::ResolveImageConfigRequest {
        image_ref: format!("{registry}/copa/private:1"),
        platform: Some(linux_amd64()),
        resolve_mode: "default".into(),
        ..Default::default()
    };
    let resolved = build.resolve_image_config(request).await;
    build.ret(frontend::Result::default()).await.unwrap();
    build.finish().await.unwrap();

    assert!(resolved.is_err(), "the fake registry refuses everything");
    let requests = requests.lock().unwrap().clone();
    let token_requests: Vec<_> = requests
        .iter()
        .filter(|request| request.contains("/token"))
        .collect();
    // The daemon tries OAuth (POST, password grant), then on the refusal a
    // GET with basic auth: both carry the config's credentials.
    let basic_header = format!("authorization: basic {basic}").to_ascii_lowercase();
    let as_basic = token_requests
        .iter()
        .any(|request| request.to_ascii_lowercase().contains(&basic_header));
    let as_form = token_requests.iter().any(|request| {
        request.starts_with("POST ")
            && request.contains("username=copa-user")
            && request.contains("password=copa-secret")
    });
    assert!(as_basic, "no GET /token with basic auth: {requests:#?}");
    assert!(
        as_form,
        "no POST /token with the password grant: {requests:#?}"
    );
}

/// A definition of one image (linux/amd64): its source op, then the terminal
/// op naming it, built with the independent op types of
/// `bollard-buildkit-proto` (copa's own LLB builder lives elsewhere).
pub(crate) fn image_definition(image: &str) -> pb::Definition {
    use bollard_buildkit_proto::pb as ops;
    use sha2::{Digest, Sha256};

    let source = ops::Op {
        op: Some(ops::op::Op::Source(ops::SourceOp {
            identifier: format!("docker-image://{image}"),
            ..Default::default()
        })),
        platform: Some(ops::Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        }),
        constraints: Some(ops::WorkerConstraints::default()),
        ..Default::default()
    };
    let source = source.encode_to_vec();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&source)));
    let terminal = ops::Op {
        inputs: vec![ops::Input {
            digest: digest.clone(),
            index: 0,
        }],
        ..Default::default()
    };

    let metadata = pb::OpMetadata {
        caps: BTreeMap::from([("source.image".to_owned(), true)]),
        ..Default::default()
    };
    pb::Definition {
        def: vec![source, terminal.encode_to_vec()],
        metadata: BTreeMap::from([(digest, metadata)]),
    }
}

/// The image the export tests build: Debian from the test registry, which
/// the daemons' config mirrors `docker.io` to.
pub(crate) const EXPORT_TEST_IMAGE: &str = "docker.io/library/debian:bookworm";

/// Solves [`EXPORT_TEST_IMAGE`] in `build` and returns it with its image
/// config, which the exporter then uses.
pub(crate) async fn return_test_image(build: &mut GatewayBuild) {
    build.ping().await.unwrap();
    let resolved = build
        .resolve_image_config(frontend::ResolveImageConfigRequest {
            image_ref: EXPORT_TEST_IMAGE.into(),
            platform: Some(linux_amd64()),
            resolve_mode: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let solved = build
        .solve(frontend::SolveRequest {
            definition: Some(image_definition(EXPORT_TEST_IMAGE)),
            allow_result_return: true,
            allow_result_array_ref: true,
            ..Default::default()
        })
        .await
        .unwrap();

    let mut result = solved.result.expect("the solve returns its result");
    result
        .metadata
        .insert("containerimage.config".into(), resolved.config);
    build.ret(result).await.unwrap();
}

/// The resident set size of this process, in bytes.
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// Samples [`rss_bytes`] until dropped; [`RssPeak::peak`] is the highest.
pub(crate) struct RssPeak {
    peak: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssPeak {
    pub(crate) fn start() -> RssPeak {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_bytes()));
        let sampled = Arc::clone(&peak);
        let task = tokio::spawn(async move {
            loop {
                sampled.fetch_max(rss_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        RssPeak { peak, task }
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn a_docker_export_streams_to_a_file_without_buffering(var: &str) {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    let client = connect(var).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.tar");
    let exporter =
        filesend::TarballExporter::new(filesend::TarballFormat::Docker).name("copa.test/export:1");
    let (mut build, mut tarball) =
        GatewayBuild::start_export(&client, SessionServices::default(), &exporter);

    let started = Instant::now();
    let baseline = rss_bytes();
    let rss = RssPeak::start();
    let file = path.clone();
    let writer = tokio::spawn(async move {
        let mut file = tokio::fs::File::create(file).await?;
        let mut written = 0u64;
        while let Some(chunk) = tarball.next().await {
            let chunk = chunk?;
            written += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        std::io::Result::Ok(written)
    });
    return_test_image(&mut build).await;
    let response = build.finish().await.unwrap();
    let written = writer.await.unwrap().unwrap();
    let peak = rss.peak();
    report(var, "docker export to a file", started);

    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "{var}: exported {written} bytes; rss {} MiB before, peak {} MiB (+{} MiB); response {:?}",
        baseline >> 20,
        peak >> 20,
        growth >> 20,
        response.exporter_response.keys().collect::<Vec<_>>()
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), written);
    assert!(written > 10 << 20, "a Debian image is more than 10 MiB");
    // Memory is measured by scripts/bench-patch.sh, not asserted here: other
    // tests share this process and allocate at the same time.

    let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|name| name == "manifest.json"),
        "{names:?}"
    );
    assert!(names.iter().any(|name| name == "index.json"), "{names:?}");
}

async fn a_tarball_nobody_reads_fails_the_export(var: &str) {
    let client = connect(var).await;
    let exporter = filesend::TarballExporter::new(filesend::TarballFormat::Docker);
    let (mut build, tarball) =
        GatewayBuild::start_export(&client, SessionServices::default(), &exporter);
    drop(tarball);

    return_test_image(&mut build).await;
    let err = build.finish().await.unwrap_err();

    let chain = format!("{:#}", anyhow::Error::from(err));
    eprintln!("{var}: {chain}");
    assert!(
        chain.starts_with("failed to call Control.Solve: "),
        "{chain}"
    );
    assert!(
        chain.contains("copa stopped reading exporter 0's tarball"),
        "{chain}"
    );
}

async fn a_build_that_fails_before_exporting_ends_the_tarball_with_an_error(var: &str) {
    use futures_util::StreamExt;

    let client = connect(var).await;
    let exporter = filesend::TarballExporter::new(filesend::TarballFormat::Oci);
    let (mut build, mut tarball) =
        GatewayBuild::start_export(&client, SessionServices::default(), &exporter);
    build.ping().await.unwrap();

    build
        .ret_error(tonic::Code::Aborted, "copa test: no image")
        .await
        .unwrap();
    let err = build.finish().await.unwrap_err();

    assert!(format!("{:#}", anyhow::Error::from(err)).contains("copa test: no image"));
    let end = tarball.next().await.unwrap().unwrap_err();
    assert_eq!(
        end.to_string(),
        "the build ended before the daemon sent the tarball"
    );
}

/// The same behaviours against each test daemon.
macro_rules! live_daemon_tests {
    ($name:ident, $var:literal, $version_prefix:literal) => {
        mod $name {
            #[tokio::test]
            async fn info_reports_a_release_version() {
                super::info_reports_a_release_version($var, $version_prefix).await;
            }

            #[tokio::test]
            async fn workers_include_linux_amd64() {
                super::workers_include_linux_amd64($var).await;
            }

            #[tokio::test]
            async fn probe_finds_mergeop_diffop_and_source_image() {
                super::probe_finds_mergeop_diffop_and_source_image($var).await;
            }

            #[tokio::test]
            async fn probes_run_concurrently_on_one_connection() {
                super::probes_run_concurrently_on_one_connection($var).await;
            }

            #[tokio::test]
            async fn returning_an_error_fails_the_solve_with_it() {
                super::returning_an_error_fails_the_solve_with_it($var).await;
            }

            #[tokio::test]
            async fn the_daemon_asks_the_session_for_registry_credentials() {
                super::the_daemon_asks_the_session_for_registry_credentials($var).await;
            }

            #[tokio::test]
            async fn progress_names_the_resolve_step() {
                super::progress_names_the_resolve_step($var).await;
            }

            #[tokio::test]
            async fn credentials_from_a_docker_config_reach_the_registry() {
                super::credentials_from_a_docker_config_reach_the_registry($var).await;
            }

            #[tokio::test]
            async fn a_docker_export_streams_to_a_file_without_buffering() {
                super::a_docker_export_streams_to_a_file_without_buffering($var).await;
            }

            #[tokio::test]
            async fn a_build_that_fails_before_exporting_ends_the_tarball_with_an_error() {
                super::a_build_that_fails_before_exporting_ends_the_tarball_with_an_error($var)
                    .await;
            }

            #[tokio::test]
            async fn a_tarball_nobody_reads_fails_the_export() {
                super::a_tarball_nobody_reads_fails_the_export($var).await;
            }

            #[tokio::test]
            async fn a_build_finished_without_return_is_cancelled() {
                super::a_build_finished_without_return_is_cancelled($var).await;
            }
        }
    };
}

live_daemon_tests!(buildkit_v0_12, "COPA_TEST_UNIX_V12", "v0.12.");
live_daemon_tests!(buildkit_current, "COPA_TEST_UNIX_NEW", "v0.");
