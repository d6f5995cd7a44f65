//! Registry credentials for the daemon, served as `moby.filesync.v1.Auth`
//! inside the session: the same answers `docker pull` would use, taken from
//! Docker's client config (`auths`, then `credHelpers` and `credsStore`
//! through their `docker-credential-*` helpers).
//!
//! Only `Credentials` is served; the daemon then fetches registry tokens
//! itself. This module never writes the config, never logs a secret, and never
//! fails a lookup for a registry it has nothing for: that registry is pulled
//! from anonymously.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use docker_credential::{CredentialRetrievalError, DockerCredential};
use serde::Deserialize;
use tonic::{Request, Response, Status};

use super::proto::moby::filesync::v1::auth_server::Auth;
use super::proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};

/// The config key Docker files Docker Hub's credentials under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The registry hosts that mean Docker Hub; the daemon asks for the first.
const DOCKER_HUB_HOSTS: &[&str] = &["registry-1.docker.io", "index.docker.io", "docker.io"];

/// What credential helpers print when they hold nothing for a registry.
const HELPER_NOT_FOUND: &str = "credentials not found";

/// Registry credentials from one Docker client config file.
///
/// The file is read once, when the value is made. A missing file means no
/// credentials; an unreadable or malformed one too, as with the docker CLI,
/// and [`DockerConfigAuth::load_error`] says why so the CLI can warn.
#[derive(Debug, Clone)]
pub struct DockerConfigAuth {
    path: Option<PathBuf>,
    config: Option<Arc<[u8]>>,
    load_error: Option<Arc<ConfigError>>,
}

/// Why the Docker config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read the docker config `{}`", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the docker config `{}` is not valid JSON", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A registry credential lookup that went wrong for a reason other than
/// "nothing configured".
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("failed to run the credential helper `docker-credential-{helper}` for `{host}`")]
    HelperNotRun { host: String, helper: String },
    #[error("the credential helper `docker-credential-{helper}` failed for `{host}`: {message}")]
    HelperFailed {
        host: String,
        helper: String,
        message: String,
    },
    #[error(
        "the credential helper `docker-credential-{helper}` answered `{host}` with malformed JSON"
    )]
    HelperMalformed { host: String, helper: String },
    #[error("the docker config entry for `{host}` holds an undecodable `auth`")]
    Undecodable { host: String },
    #[error(
        "the docker config entry for `{host}` has `auth` and `username`/`password` that differ"
    )]
    Mismatch { host: String },
    #[error("credential lookup for `{host}` was interrupted")]
    Interrupted { host: String },
}

/// A credential as the daemon wants it: an identity token goes as the
/// secret with an empty username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub secret: String,
}

/// The parts of `config.json` that decide where a credential comes from.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigShape {
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: Option<std::collections::BTreeMap<String, String>>,
}

impl DockerConfigAuth {
    /// The user's Docker config: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`.
    pub fn from_env() -> DockerConfigAuth {
        match default_config_path() {
            Some(path) => DockerConfigAuth::from_file(path),
            None => DockerConfigAuth::none(),
        }
    }

    /// The Docker config at `path`; a missing file holds no credentials.
    pub fn from_file(path: impl Into<PathBuf>) -> DockerConfigAuth {
        let path = path.into();
        let (config, load_error) = match load(&path) {
            Ok(config) => (config, None),
            Err(err) => {
                let error = super::session::DisplayChain(&err);
                tracing::debug!(%error, "docker config ignored");
                (None, Some(Arc::new(err)))
            }
        };
        DockerConfigAuth {
            path: Some(path),
            config,
            load_error,
        }
    }

    /// No credentials at all: every registry is pulled from anonymously.
    pub fn none() -> DockerConfigAuth {
        DockerConfigAuth {
            path: None,
            config: None,
            load_error: None,
        }
    }

    /// The config file consulted, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Why the config file exists but is not used.
    pub fn load_error(&self) -> Option<&ConfigError> {
        self.load_error.as_deref()
    }

    /// The credential for the registry `host` as the daemon names it
    /// (`registry-1.docker.io`, `localhost:5000`, …), or `None` for
    /// anonymous access. May run a credential helper, so it blocks.
    pub fn lookup(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        let Some(config) = &self.config else {
            return Ok(None);
        };
        let key = config_key(host);

        let found = docker_credential::get_credential_from_reader(&config[..], key);
        match found {
            Ok(DockerCredential::IdentityToken(token)) => Ok(Some(Credential {
                username: String::new(),
                secret: token,
            })),
            Ok(DockerCredential::UsernamePassword(username, secret)) => {
                Ok(Some(Credential { username, secret }))
            }
            Err(err) => self.lookup_error(host, key, err),
        }
    }

    fn lookup_error(
        &self,
        host: &str,
        key: &str,
        err: CredentialRetrievalError,
    ) -> Result<Option<Credential>, CredentialError> {
        let host = host.to_owned();
        let helper = || self.helper_for(key).unwrap_or_default();
        match err {
            CredentialRetrievalError::NoCredentialConfigured
            | CredentialRetrievalError::ConfigNotFound
            | CredentialRetrievalError::ConfigReadError => Ok(None),
            CredentialRetrievalError::HelperFailure { stdout, stderr, .. } => {
                let message = last_line(&stderr).or_else(|| last_line(&stdout));
                let message = message.unwrap_or("it exited with an error").to_owned();
                if message.contains(HELPER_NOT_FOUND) {
                    return Ok(None);
                }
                Err(CredentialError::HelperFailed {
                    host,
                    helper: helper(),
                    message,
                })
            }
            CredentialRetrievalError::HelperCommunicationError => {
                Err(CredentialError::HelperNotRun {
                    host,
                    helper: helper(),
                })
            }
            CredentialRetrievalError::MalformedHelperResponse => {
                Err(CredentialError::HelperMalformed {
                    host,
                    helper: helper(),
                })
            }
            CredentialRetrievalError::CredentialDecodingError => {
                Err(CredentialError::Undecodable { host })
            }
            CredentialRetrievalError::CredentialMismatchError => {
                Err(CredentialError::Mismatch { host })
            }
        }
    }

    /// The helper the config names for `key`, as the credential crate picks
    /// it: `credHelpers` first, then `credsStore`.
    fn helper_for(&self, key: &str) -> Option<String> {
        let shape: ConfigShape = serde_json::from_slice(self.config.as_deref()?).ok()?;
        let named = shape
            .cred_helpers
            .and_then(|helpers| helpers.get(key).cloned())
            .filter(|name| !name.is_empty());
        named.or(shape.creds_store)
    }
}

/// The config key for a registry host: Docker Hub's is a URL.
pub fn config_key(host: &str) -> &str {
    if DOCKER_HUB_HOSTS.contains(&host) {
        DOCKER_HUB_KEY
    } else {
        host
    }
}

fn default_config_path() -> Option<PathBuf> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".docker"),
    };
    Some(dir.join("config.json"))
}

/// The file's bytes once they parse as a config; `None` when it is absent.
fn load(path: &Path) -> Result<Option<Arc<[u8]>>, ConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            let path = path.to_owned();
            return Err(ConfigError::Read { path, source });
        }
    };

    let parse_error = |source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    };
    serde_json::from_slice::<ConfigShape>(&bytes).map_err(parse_error)?;

    // An empty helper name means "none" to the docker CLI; the credential
    // crate would try to run `docker-credential-` for it.
    let mut config: serde_json::Value = serde_json::from_slice(&bytes).map_err(parse_error)?;
    let Some(object) = config.as_object_mut() else {
        return Ok(Some(bytes.into()));
    };
    if object.get("credsStore").and_then(|store| store.as_str()) == Some("") {
        object.remove("credsStore");
    }
    if let Some(helpers) = object
        .get_mut("credHelpers")
        .and_then(|helpers| helpers.as_object_mut())
    {
        helpers.retain(|_, helper| helper.as_str() != Some(""));
    }
    Ok(Some(config.to_string().into_bytes().into()))
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|line| !line.is_empty())
}

#[tonic::async_trait]
impl Auth for DockerConfigAuth {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let auth = self.clone();
        let lookup_host = host.clone();
        let found = tokio::task::spawn_blocking(move || auth.lookup(&lookup_host))
            .await
            .unwrap_or_else(|_| Err(CredentialError::Interrupted { host: host.clone() }));

        match found {
            Ok(Some(credential)) => {
                let token = credential.username.is_empty();
                tracing::debug!(%host, token, "registry credentials from the docker config");
                Ok(Response::new(CredentialsResponse {
                    username: credential.username,
                    secret: credential.secret,
                }))
            }
            Ok(None) => {
                tracing::debug!(%host, "no registry credentials: anonymous");
                Ok(Response::new(CredentialsResponse::default()))
            }
            Err(err) => {
                tracing::debug!(%host, error = %err, "registry credential lookup failed");
                Err(Status::internal(err.to_string()))
            }
        }
    }

    async fn fetch_token(
        &self,
        _: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("copa fetches no registry tokens"))
    }

    async fn get_token_authority(
        &self,
        _: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("copa has no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("copa has no token authority"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    /// A config file with `json` in a fresh temp dir.
    fn config(json: &serde_json::Value) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json.to_string()).unwrap();
        (dir, path)
    }

    fn basic(user: &str, secret: &str) -> String {
        STANDARD.encode(format!("{user}:{secret}"))
    }

    fn credential(user: &str, secret: &str) -> Option<Credential> {
        Some(Credential {
            username: user.into(),
            secret: secret.into(),
        })
    }

    async fn answer(auth: &DockerConfigAuth, host: &str) -> Result<CredentialsResponse, Status> {
        let request = Request::new(CredentialsRequest { host: host.into() });
        auth.credentials(request).await.map(Response::into_inner)
    }

    #[test]
    fn docker_hub_hosts_map_to_the_index_v1_key() {
        assert_eq!(DOCKER_HUB_KEY, "https://index.docker.io/v1/");
        assert_eq!(config_key("registry-1.docker.io"), DOCKER_HUB_KEY);
        assert_eq!(config_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(config_key("ghcr.io"), "ghcr.io");
        assert_eq!(config_key("localhost:5000"), "localhost:5000");
    }

    #[test]
    fn base64_auth_gives_username_and_password() {
        let json = serde_json::json!({
            "auths": { "registry.example:5000": { "auth": basic("alice", "pa:ss") } }
        });
        let (_dir, path) = config(&json);

        let auth = DockerConfigAuth::from_file(&path);

        assert_eq!(auth.path(), Some(path.as_path()));
        let found = auth.lookup("registry.example:5000").unwrap();
        assert_eq!(found, credential("alice", "pa:ss"));
    }

    #[test]
    fn docker_hub_credentials_are_found_for_registry_1_docker_io() {
        let json = serde_json::json!({
            "auths": { "https://index.docker.io/v1/": { "auth": basic("bob", "hub") } }
        });
        let (_dir, path) = config(&json);

        let found = DockerConfigAuth::from_file(path)
            .lookup("registry-1.docker.io")
            .unwrap();

        assert_eq!(found, credential("bob", "hub"));
    }

    #[test]
    fn a_key_written_as_a_url_matches_its_host() {
        let json = serde_json::json!({
            "auths": { "https://registry.example/v2/": { "auth": basic("carol", "x") } }
        });
        let (_dir, path) = config(&json);

        let found = DockerConfigAuth::from_file(path)
            .lookup("registry.example")
            .unwrap();

        assert_eq!(found, credential("carol", "x"));
    }

    #[tokio::test]
    async fn an_identity_token_goes_as_the_secret_with_an_empty_username() {
        let json = serde_json::json!({
            "auths": { "registry.example": { "identitytoken": "refresh-me" } }
        });
        let (_dir, path) = config(&json);
        let auth = DockerConfigAuth::from_file(path);

        let response = answer(&auth, "registry.example").await.unwrap();

        assert_eq!(response.username, "");
        assert_eq!(response.secret, "refresh-me");
    }

    #[tokio::test]
    async fn an_unknown_host_gets_an_empty_answer_not_an_error() {
        let json = serde_json::json!({
            "auths": { "registry.example": { "auth": basic("alice", "x") } }
        });
        let (_dir, path) = config(&json);
        let auth = DockerConfigAuth::from_file(path);

        let response = answer(&auth, "other.example").await.unwrap();

        assert_eq!(response, CredentialsResponse::default());
    }

    #[tokio::test]
    async fn a_missing_config_means_anonymous_access() {
        let dir = tempfile::tempdir().unwrap();
        let auth = DockerConfigAuth::from_file(dir.path().join("config.json"));

        let response = answer(&auth, "registry-1.docker.io").await.unwrap();

        assert_eq!(response, CredentialsResponse::default());
        assert!(auth.load_error().is_none());
    }

    #[tokio::test]
    async fn a_malformed_config_means_anonymous_access_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{ not json").unwrap();
        let auth = DockerConfigAuth::from_file(&path);

        let response = answer(&auth, "registry.example").await.unwrap();

        assert_eq!(response, CredentialsResponse::default());
        let error = auth.load_error().unwrap().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    #[tokio::test]
    async fn an_empty_helper_name_means_no_helper() {
        let json = serde_json::json!({
            "credsStore": "",
            "credHelpers": { "registry.example": "" },
            "auths": { "registry.example": { "auth": basic("alice", "x") } }
        });
        let (_dir, path) = config(&json);
        let auth = DockerConfigAuth::from_file(path);

        let known = answer(&auth, "registry.example").await.unwrap();
        let unknown = answer(&auth, "other.example").await.unwrap();

        assert_eq!(
            (known.username.as_str(), known.secret.as_str()),
            ("alice", "x")
        );
        assert_eq!(unknown, CredentialsResponse::default());
    }

    #[tokio::test]
    async fn the_token_methods_are_unimplemented() {
        let auth = DockerConfigAuth::none();

        let authority = auth
            .get_token_authority(Request::new(GetTokenAuthorityRequest::default()))
            .await
            .unwrap_err();
        let fetch = auth
            .fetch_token(Request::new(FetchTokenRequest::default()))
            .await
            .unwrap_err();
        let verify = auth
            .verify_token_authority(Request::new(VerifyTokenAuthorityRequest::default()))
            .await
            .unwrap_err();

        for status in [authority, fetch, verify] {
            assert_eq!(status.code(), tonic::Code::Unimplemented);
        }
    }

    #[tokio::test]
    async fn a_helper_that_cannot_run_fails_the_lookup_naming_it() {
        let json = serde_json::json!({
            "credHelpers": { "registry.example": "copa-no-such-helper" }
        });
        let (_dir, path) = config(&json);
        let auth = DockerConfigAuth::from_file(path);

        let status = answer(&auth, "registry.example").await.unwrap_err();

        let message = status.message();
        assert!(
            message.contains("`docker-credential-copa-no-such-helper`"),
            "{message}"
        );
        assert!(message.contains("`registry.example`"), "{message}");
    }

    #[test]
    fn a_helper_saying_not_found_means_anonymous_access() {
        let json = serde_json::json!({ "credsStore": "fake" });
        let (_dir, path) = config(&json);
        let auth = DockerConfigAuth::from_file(path);

        let not_found = CredentialRetrievalError::HelperFailure {
            helper: "docker-credential-fake".into(),
            stdout: "credentials not found in native keychain\n".into(),
            stderr: String::new(),
        };
        let broken = CredentialRetrievalError::HelperFailure {
            helper: "docker-credential-fake".into(),
            stdout: String::new(),
            stderr: "some noise\nerror: keychain locked\n".into(),
        };

        assert_eq!(auth.lookup_error("h", "h", not_found).unwrap(), None);
        let err = auth.lookup_error("h", "h", broken).unwrap_err().to_string();
        assert_eq!(
            err,
            "the credential helper `docker-credential-fake` failed for `h`: error: keychain locked"
        );
    }

    /// Writes `docker-credential-<name>` into `dir`: a script that answers
    /// `get` for `registry.example` and says "not found" for anything else.
    fn fake_helper(dir: &Path, name: &str) {
        use std::os::unix::fs::PermissionsExt;

        let script = r#"#!/bin/sh
read -r host
case "$1 $host" in
  "get registry.example") printf '{"ServerURL":"%s","Username":"helper-user","Secret":"helper-secret"}' "$host" ;;
  "get tokens.example") printf '{"ServerURL":"%s","Username":"<token>","Secret":"helper-token"}' "$host" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#;
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs in a child test process (see the next test), whose PATH holds the
    /// fake helper: changing PATH in this process would race other tests.
    #[test]
    #[ignore = "run by credential_helpers_are_run_for_cred_helpers_and_creds_store"]
    fn helper_child() {
        let Some(config) = std::env::var_os("COPA_TEST_HELPER_CONFIG") else {
            return;
        };
        let auth = DockerConfigAuth::from_file(config);

        let found = auth.lookup("registry.example").unwrap();
        assert_eq!(found, credential("helper-user", "helper-secret"));
        let found = auth.lookup("tokens.example").unwrap();
        assert_eq!(found, credential("", "helper-token"));
        assert_eq!(auth.lookup("unknown.example").unwrap(), None);
    }

    #[test]
    fn credential_helpers_are_run_for_cred_helpers_and_creds_store() {
        for json in [
            serde_json::json!({ "credHelpers": {
                "registry.example": "copa-fake",
                "tokens.example": "copa-fake",
                "unknown.example": "copa-fake",
            } }),
            serde_json::json!({ "credsStore": "copa-fake", "auths": { "registry.example": {} } }),
        ] {
            let (dir, path) = config(&json);
            fake_helper(dir.path(), "copa-fake");
            let search = format!(
                "{}:{}",
                dir.path().display(),
                std::env::var("PATH").unwrap_or_default()
            );

            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "buildkit::auth::tests::helper_child"])
                .args(["--ignored", "--nocapture", "--test-threads=1"])
                .env("PATH", search)
                .env("COPA_TEST_HELPER_CONFIG", &path)
                .output()
                .unwrap();

            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{json}\n{stdout}\n{stderr}");
            assert!(stdout.contains("1 passed"), "{json}\n{stdout}");
        }
    }
}
