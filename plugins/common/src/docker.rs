//! Which Docker Engine an address means: endpoint parsing and the Docker
//! CLI's context resolution (`DOCKER_HOST`, `DOCKER_CONTEXT`, the current
//! context in `config.json`, the context store, the default socket).
//!
//! It reads only the variables in [`ENV`] and files under the Docker config
//! folder ([`CONFIG_FOLDER`]); it never dials an endpoint, and it returns only
//! `unix://` and `tcp://` endpoints in a normal form the host can check
//! against its policy (no `.` or `..` in a socket path, an explicit port).

use std::net::Ipv6Addr;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::env::Env;
use crate::names::{self, MAX_NAME, MAX_PATH, shown};
use crate::spec::{Origin, ResolveError, TcpTarget};

/// The Engine endpoint when nothing else names one.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The name of the context that stands for `DOCKER_HOST` or the default socket.
pub const DEFAULT_CONTEXT: &str = "default";

/// The port of a `tcp://` endpoint that names none (the Engine's plain port).
pub const DEFAULT_TCP_PORT: u16 = 2375;

/// The variables Docker resolution reads.
pub const ENV: &[&str] = &["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "HOME"];

/// The folder Docker resolution reads, in the capability syntax.
pub const CONFIG_FOLDER: &str = "${DOCKER_CONFIG:-~/.docker}";

/// A Docker Engine API endpoint copa can dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket at this absolute path.
    Unix(String),
    /// A TCP host (IPv6 without brackets) and port.
    Tcp(TcpTarget),
}

impl Endpoint {
    /// Parses `unix:///path` or `tcp://host[:port]`; `origin` decides the
    /// kind of error for a malformed value. Schemes Docker knows but copa
    /// cannot dial (`ssh`, `npipe`, `fd`) are `unsupported`.
    pub fn parse(value: &str, origin: Origin<'_>) -> Result<Self, ResolveError> {
        names::basic("docker endpoint", value, MAX_PATH).map_err(|m| origin.invalid(m))?;
        let Some((scheme, rest)) = value.split_once("://") else {
            return Err(origin.invalid(format!(
                "docker endpoint {} is not of the form `unix:///PATH` or `tcp://HOST:PORT`",
                shown(value)
            )));
        };

        match scheme.to_ascii_lowercase().as_str() {
            "unix" => parse_unix(value, rest, origin),
            "tcp" => parse_tcp(value, rest, origin),
            "ssh" | "npipe" | "fd" | "http" | "https" => Err(ResolveError::Unsupported(format!(
                "docker endpoint {} uses `{scheme}://`, which copa cannot dial (only `unix://` and `tcp://`)",
                shown(value)
            ))),
            _ => Err(origin.invalid(format!(
                "docker endpoint {} has an unknown scheme {}",
                shown(value),
                shown(scheme)
            ))),
        }
    }

    /// The endpoint as a URL: `unix:///path` or `tcp://host:port`.
    pub fn url(&self) -> String {
        match self {
            Endpoint::Unix(path) => format!("unix://{path}"),
            Endpoint::Tcp(TcpTarget { host, port }) if host.contains(':') => {
                format!("tcp://[{host}]:{port}")
            }
            Endpoint::Tcp(TcpTarget { host, port }) => format!("tcp://{host}:{port}"),
        }
    }
}

fn parse_unix(value: &str, path: &str, origin: Origin<'_>) -> Result<Endpoint, ResolveError> {
    check_socket_path(path)
        .map_err(|problem| origin.invalid(format!("docker endpoint {} {problem}", shown(value))))?;
    Ok(Endpoint::Unix(path.to_owned()))
}

/// Checks a unix socket path: absolute, no `.` or `..` component, no `?`.
/// Returns what is wrong, to follow the name of the value.
pub fn check_socket_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(
            "must name an absolute socket path, as in `unix:///var/run/docker.sock`".into(),
        );
    }
    if path.len() > MAX_PATH {
        return Err(format!("has a path longer than {MAX_PATH} bytes"));
    }
    let dotted = Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || path.split('/').any(|part| part == "." || part == "..");
    if dotted {
        return Err("has a `.` or `..` in its path".into());
    }
    if path.contains(['?', '#']) {
        return Err("has a `?` or `#` in its path".into());
    }
    Ok(())
}

fn parse_tcp(value: &str, rest: &str, origin: Origin<'_>) -> Result<Endpoint, ResolveError> {
    let bad = |problem: &str| origin.invalid(format!("docker endpoint {} {problem}", shown(value)));
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(bad("must not have a path or query after `HOST:PORT`"));
    }
    if authority.contains('@') {
        return Err(bad("must not have a user name"));
    }

    let (host, port) = split_host_port(authority).map_err(|p| bad(&p))?;
    let port = match port {
        None => DEFAULT_TCP_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad(&format!("has an invalid port {}", shown(port)))),
        },
    };
    Ok(Endpoint::Tcp(TcpTarget { host, port }))
}

/// Splits `host[:port]` or `[v6]:port`, checking the host: an IPv6 literal
/// in brackets, or letters, digits, `.`, `-` and `_` not starting with `-`.
/// The host comes back without brackets.
pub fn split_host_port(authority: &str) -> Result<(String, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err("has an unclosed `[`".into());
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("has an invalid IPv6 address {}", shown(v6)));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(format!("has {} after its IPv6 address", shown(after))),
            },
        };
        return Ok((v6.to_owned(), port));
    }

    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    check_host_name(host)?;
    Ok((host.to_owned(), port))
}

/// Checks a DNS name or IPv4 address.
pub fn check_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.len() > MAX_NAME {
        return Err(format!("has a host longer than {MAX_NAME} bytes"));
    }
    if host.starts_with('-') {
        return Err(format!("has a host {} starting with `-`", shown(host)));
    }
    if let Some(c) = host
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "has a host {} containing {}",
            shown(host),
            shown(c.encode_utf8(&mut [0; 4]))
        ));
    }
    Ok(())
}

/// The Docker config folder: `DOCKER_CONFIG`, else `$HOME/.docker`, else none.
pub fn config_dir(env: &dyn Env) -> Result<Option<PathBuf>, ResolveError> {
    if let Some(dir) = env.var("DOCKER_CONFIG") {
        check_dir(&dir, "DOCKER_CONFIG")?;
        return Ok(Some(PathBuf::from(dir)));
    }
    if let Some(home) = env.var("HOME") {
        check_dir(&home, "HOME")?;
        return Ok(Some(Path::new(&home).join(".docker")));
    }
    Ok(None)
}

fn check_dir(dir: &str, variable: &str) -> Result<(), ResolveError> {
    let origin = Origin::Variable(variable);
    names::basic("folder", dir, MAX_PATH).map_err(|m| origin.invalid(m))?;
    if !dir.starts_with('/') {
        return Err(origin.invalid(format!("folder {} is not an absolute path", shown(dir))));
    }
    if dir.split('/').any(|part| part == "..") {
        return Err(origin.invalid(format!("folder {} has a `..` component", shown(dir))));
    }
    Ok(())
}

/// The name of the current Docker context, in the Docker CLI's order: when
/// `DOCKER_HOST` is set, `default`; else `DOCKER_CONTEXT`; else
/// `currentContext` in `config.json`; else `default`.
pub fn current_context(env: &dyn Env) -> Result<String, ResolveError> {
    if env.var("DOCKER_HOST").is_some() {
        return Ok(DEFAULT_CONTEXT.to_owned());
    }
    if let Some(name) = env.var("DOCKER_CONTEXT") {
        names::docker_context_name("docker context", &name)
            .map_err(|m| Origin::Variable("DOCKER_CONTEXT").invalid(m))?;
        return Ok(name);
    }

    let Some(dir) = config_dir(env)? else {
        return Ok(DEFAULT_CONTEXT.to_owned());
    };
    let path = dir.join("config.json");
    let Some(bytes) = env.read_file(&path).map_err(ResolveError::Environment)? else {
        return Ok(DEFAULT_CONTEXT.to_owned());
    };
    let config: ConfigFile = parse_json(&path, &bytes)?;
    match config.current_context.filter(|c| !c.is_empty()) {
        Some(name) => {
            names::docker_context_name("current docker context", &name)
                .map_err(|m| Origin::File(&path).invalid(m))?;
            Ok(name)
        }
        None => Ok(DEFAULT_CONTEXT.to_owned()),
    }
}

/// The endpoint of the current Docker context (see [`current_context`]).
pub fn current_endpoint(env: &dyn Env) -> Result<Endpoint, ResolveError> {
    let name = current_context(env)?;
    context_endpoint(env, &name, Origin::Variable("DOCKER_CONTEXT"))
}

/// The endpoint of the Docker context `name`, which came from `origin` (a
/// bad name is reported there). `default` is `DOCKER_HOST` or the default
/// socket; any other is read from the context store.
pub fn context_endpoint(
    env: &dyn Env,
    name: &str,
    origin: Origin<'_>,
) -> Result<Endpoint, ResolveError> {
    names::docker_context_name("docker context", name).map_err(|m| origin.invalid(m))?;
    if name == DEFAULT_CONTEXT {
        return match env.var("DOCKER_HOST") {
            Some(host) => Endpoint::parse(&host, Origin::Variable("DOCKER_HOST")),
            None => Endpoint::parse(DEFAULT_HOST, Origin::Address),
        };
    }

    let Some(dir) = config_dir(env)? else {
        return Err(ResolveError::NotFound(format!(
            "docker context `{name}` not found: neither `DOCKER_CONFIG` nor `HOME` is set"
        )));
    };
    let hash = context_hash(name);
    let path = dir.join("contexts/meta").join(&hash).join("meta.json");
    let Some(bytes) = env.read_file(&path).map_err(ResolveError::Environment)? else {
        return Err(ResolveError::NotFound(format!(
            "docker context `{name}` not found (no `{}`)",
            path.display()
        )));
    };

    let meta: ContextMeta = parse_json(&path, &bytes)?;
    let Some(docker) = meta.endpoints.docker.filter(|d| !d.host.is_empty()) else {
        return Err(Origin::File(&path).invalid(format!(
            "docker context `{name}` has no Docker endpoint (`Endpoints.docker.Host`)"
        )));
    };
    let endpoint = Endpoint::parse(&docker.host, Origin::File(&path))?;

    let tls_dir = dir.join("contexts/tls").join(&hash).join("docker");
    if matches!(endpoint, Endpoint::Tcp(_)) && (docker.skip_tls_verify || env.is_dir(&tls_dir)) {
        return Err(ResolveError::Unsupported(format!(
            "docker context `{name}` reaches its Engine over TLS, which copa cannot pass to the host yet"
        )));
    }
    Ok(endpoint)
}

/// The folder name of a context in the store: the hex SHA-256 of its name.
pub fn context_hash(name: &str) -> String {
    sha256_hex(name)
}

/// The lower-case hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Parses a JSON file, naming it in the error.
pub fn parse_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    bytes: &[u8],
) -> Result<T, ResolveError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ResolveError::Environment(format!("failed to parse `{}`: {e}", path.display()))
    })
}

/// The part of Docker's `config.json` that matters here.
#[derive(Deserialize)]
struct ConfigFile {
    #[serde(rename = "currentContext", default)]
    current_context: Option<String>,
}

/// The part of a context's `meta.json` that matters here.
#[derive(Deserialize)]
struct ContextMeta {
    #[serde(rename = "Endpoints", default)]
    endpoints: ContextEndpoints,
}

#[derive(Deserialize, Default)]
struct ContextEndpoints {
    #[serde(default)]
    docker: Option<DockerEndpointMeta>,
}

#[derive(Deserialize)]
struct DockerEndpointMeta {
    #[serde(rename = "Host", default)]
    host: String,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::fake::FakeEnv;
    use crate::spec::Capabilities;

    const CAPS: Capabilities = Capabilities {
        env: ENV,
        folders: &[CONFIG_FOLDER],
        programs: &[],
        docker_engine: true,
    };

    fn meta(host: &str) -> String {
        format!(
            r#"{{"Name":"x","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        )
    }

    fn meta_path(dir: &str, name: &str) -> PathBuf {
        Path::new(dir)
            .join("contexts/meta")
            .join(context_hash(name))
            .join("meta.json")
    }

    #[test]
    fn context_folders_are_named_by_the_sha256_of_the_context_name() {
        assert_eq!(
            context_hash("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }

    #[test]
    fn endpoints_are_parsed_into_a_normal_form() {
        let ok = [
            ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
            ("tcp://127.0.0.1:2375", "tcp://127.0.0.1:2375"),
            ("tcp://docker.example", "tcp://docker.example:2375"),
            ("tcp://[::1]:2376/", "tcp://[::1]:2376"),
            ("TCP://h:1", "tcp://h:1"),
        ];
        for (input, url) in ok {
            let endpoint = Endpoint::parse(input, Origin::Address).unwrap();
            assert_eq!(endpoint.url(), url, "{input}");
        }
        assert_eq!(
            Endpoint::parse("tcp://[::1]:2376", Origin::Address).unwrap(),
            Endpoint::Tcp(TcpTarget {
                host: "::1".into(),
                port: 2376
            })
        );
    }

    #[test]
    fn malformed_endpoints_are_refused_with_the_kind_their_origin_decides() {
        let bad = [
            ("/var/run/docker.sock", "is not of the form"),
            ("unix://var/run/docker.sock", "absolute socket path"),
            ("unix:///var/run/../../tmp/x.sock", "`..`"),
            ("unix:///var/./run/x.sock", "`.`"),
            ("tcp://-oProxyCommand=x:1", "starting with `-`"),
            ("tcp://h:0", "invalid port"),
            ("tcp://h:99999", "invalid port"),
            ("tcp://h:1/path", "path or query"),
            ("tcp://u@h:1", "user name"),
            ("tcp://h;rm:1", "containing `;`"),
            ("tcp://[::1", "unclosed"),
            ("tcp://[zz::1]:1", "invalid IPv6"),
            ("gopher://h", "unknown scheme"),
            ("unix:///a\nb", "control character"),
            ("", "is empty"),
        ];
        for (input, needle) in bad {
            let err = Endpoint::parse(input, Origin::Address).unwrap_err();
            assert!(
                matches!(err, ResolveError::InvalidAddress(_)),
                "{input}: {err:?}"
            );
            assert!(err.message().contains(needle), "{input}: {err}");

            let err = Endpoint::parse(input, Origin::Variable("DOCKER_HOST")).unwrap_err();
            assert!(
                matches!(err, ResolveError::Environment(_)),
                "{input}: {err:?}"
            );
            assert!(err.message().ends_with("(from `DOCKER_HOST`)"), "{err}");
        }
    }

    #[test]
    fn endpoints_copa_cannot_dial_are_unsupported() {
        for input in ["ssh://me@host", "npipe:////./pipe/docker_engine", "fd://"] {
            let err = Endpoint::parse(input, Origin::Address).unwrap_err();
            assert!(
                matches!(err, ResolveError::Unsupported(_)),
                "{input}: {err:?}"
            );
        }
    }

    #[test]
    fn docker_host_comes_first() {
        let env = FakeEnv::new(&CAPS)
            .var("DOCKER_HOST", "tcp://127.0.0.1:2375")
            .var("DOCKER_CONTEXT", "prod")
            .var("HOME", "/home/u");
        assert_eq!(
            current_endpoint(&env).unwrap().url(),
            "tcp://127.0.0.1:2375"
        );
    }

    #[test]
    fn nothing_set_means_the_default_socket() {
        let env = FakeEnv::new(&CAPS);
        assert_eq!(current_endpoint(&env).unwrap().url(), DEFAULT_HOST);
        let env = FakeEnv::new(&CAPS).var("HOME", "/home/u");
        assert_eq!(current_endpoint(&env).unwrap().url(), DEFAULT_HOST);
    }

    #[test]
    fn docker_context_beats_the_current_context_of_config_json() {
        let env = FakeEnv::new(&CAPS)
            .var("HOME", "/home/u")
            .var("DOCKER_CONTEXT", "ctx-a")
            .file(
                "/home/u/.docker/config.json",
                r#"{"currentContext":"ctx-b"}"#,
            )
            .file(
                meta_path("/home/u/.docker", "ctx-a"),
                meta("unix:///run/a.sock"),
            )
            .file(
                meta_path("/home/u/.docker", "ctx-b"),
                meta("unix:///run/b.sock"),
            );
        assert_eq!(current_endpoint(&env).unwrap().url(), "unix:///run/a.sock");
    }

    #[test]
    fn the_current_context_is_read_from_docker_config() {
        let env = FakeEnv::new(&CAPS)
            .var("HOME", "/home/u")
            .var("DOCKER_CONFIG", "/etc/dc")
            .file(
                "/etc/dc/config.json",
                r#"{"auths":{"x":{"auth":"eA=="}},"currentContext":"remote"}"#,
            )
            .file(meta_path("/etc/dc", "remote"), meta("tcp://10.1.2.3:2375"));
        assert_eq!(current_endpoint(&env).unwrap().url(), "tcp://10.1.2.3:2375");
    }

    #[test]
    fn the_default_context_means_docker_host_or_the_default_socket() {
        let env = FakeEnv::new(&CAPS).file("/home/u/.docker/config.json", "{}");
        let endpoint = context_endpoint(&env, "default", Origin::Address).unwrap();
        assert_eq!(endpoint.url(), DEFAULT_HOST);
        let env = FakeEnv::new(&CAPS).var("DOCKER_HOST", "unix:///run/d.sock");
        let endpoint = context_endpoint(&env, "default", Origin::Address).unwrap();
        assert_eq!(endpoint.url(), "unix:///run/d.sock");
    }

    #[test]
    fn a_missing_context_is_not_found() {
        let env = FakeEnv::new(&CAPS).var("HOME", "/home/u");
        let err = context_endpoint(&env, "nope", Origin::Address).unwrap_err();
        assert!(matches!(err, ResolveError::NotFound(_)), "{err:?}");
        assert!(
            err.message().starts_with("docker context `nope` not found"),
            "{err}"
        );
    }

    #[test]
    fn broken_state_is_an_environment_error() {
        let env = FakeEnv::new(&CAPS)
            .var("HOME", "/home/u")
            .file("/home/u/.docker/config.json", "{not json");
        let err = current_endpoint(&env).unwrap_err();
        assert!(matches!(err, ResolveError::Environment(_)), "{err:?}");
        assert!(
            err.message()
                .starts_with("failed to parse `/home/u/.docker/config.json`")
        );

        let env = FakeEnv::new(&CAPS).var("HOME", "/home/u").file(
            "/home/u/.docker/config.json",
            r#"{"currentContext":"../../etc"}"#,
        );
        let err = current_endpoint(&env).unwrap_err();
        assert!(matches!(err, ResolveError::Environment(_)), "{err:?}");

        let env = FakeEnv::new(&CAPS).var("DOCKER_CONFIG", "relative/dir");
        let err = current_endpoint(&env).unwrap_err();
        assert_eq!(
            err,
            ResolveError::Environment(
                "folder `relative/dir` is not an absolute path (from `DOCKER_CONFIG`)".into()
            )
        );

        let env = FakeEnv::new(&CAPS)
            .var("HOME", "/home/u")
            .var("DOCKER_CONTEXT", "ctx")
            .file(meta_path("/home/u/.docker", "ctx"), r#"{"Endpoints":{}}"#);
        let err = current_endpoint(&env).unwrap_err();
        assert!(err.message().contains("has no Docker endpoint"), "{err}");

        let env = FakeEnv::new(&CAPS)
            .var("HOME", "/home/u")
            .var("DOCKER_CONTEXT", "ctx")
            .unreadable(meta_path("/home/u/.docker", "ctx"));
        assert!(matches!(
            current_endpoint(&env),
            Err(ResolveError::Environment(_))
        ));
    }

    #[test]
    fn a_tls_context_is_unsupported() {
        let env = FakeEnv::new(&CAPS)
            .var("HOME", "/home/u")
            .var("DOCKER_CONTEXT", "secure")
            .file(meta_path("/home/u/.docker", "secure"), meta("tcp://h:2376"))
            .dir(
                Path::new("/home/u/.docker/contexts/tls")
                    .join(context_hash("secure"))
                    .join("docker"),
            );
        let err = current_endpoint(&env).unwrap_err();
        assert!(matches!(err, ResolveError::Unsupported(_)), "{err:?}");
    }

    #[test]
    fn a_hostile_context_name_never_reaches_the_file_system() {
        let env = FakeEnv::new(&CAPS).var("HOME", "/home/u");
        for name in ["../../../etc/passwd", "-x", "a/b", "a\0b", ""] {
            let err = context_endpoint(&env, name, Origin::Address).unwrap_err();
            assert!(
                matches!(err, ResolveError::InvalidAddress(_)),
                "{name}: {err:?}"
            );
        }
        assert!(
            env.reads().iter().all(|r| !r.starts_with("file")),
            "{:?}",
            env.reads()
        );
    }
}
