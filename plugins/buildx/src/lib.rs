//! The `buildx://NAME` and `buildx://` connector: a buildx builder, read from
//! buildx's store under `$DOCKER_CONFIG/buildx` the way buildx reads it.
//!
//! The builder is `NAME`; else `BUILDX_BUILDER`; else the current one (the
//! store's `current` file when it is global or was set for the current Docker
//! endpoint, then the store's per-endpoint default); else the builder every
//! Docker context is, the Engine of the current context. A builder's
//! instance file (`instances/<name>`, a JSON node group) gives its driver
//! and nodes:
//!
//! - `docker-container`: a Docker Engine API exec of `buildctl dial-stdio` in
//!   the node's container `buildx_buildkit_<node>`, on the node's endpoint
//!   (a Docker context name or a `unix://`/`tcp://` Engine endpoint);
//! - `docker`: the Engine's own BuildKit (`docker-grpc`);
//! - `remote`: the node's `unix://` or `tcp://` buildkitd endpoint;
//! - any other driver (`kubernetes`, …) is `unsupported`, by name.
//!
//! Known shortcomings: only a builder's first node is used (buildx picks a
//! node per platform); `BUILDX_CONFIG`, which moves buildx's store, is not
//! read (it would need declaring a second folder); a `remote` builder with
//! TLS options is refused, since the plugin cannot hand certificates to the
//! host (give its endpoint with `--addr` and `--cacert/--cert/--key`).
//!
//! It must never read anything outside the declared variables and the Docker
//! config folder, never build a path from a name that failed buildx's naming
//! rule, and treats the store's files as untrusted: every name and endpoint
//! read from them is checked as if the user had typed it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use copa_plugin_common::address::{no_path, no_port, no_username};
use copa_plugin_common::docker::{self, Endpoint};
use copa_plugin_common::names::{self, shown};
use copa_plugin_common::{
    Address, Capabilities, Connector, DIAL_STDIO, DialSpec, DockerExecTarget, Env, Origin,
    PluginInfo, Query, ResolveError, TcpTarget, export_connector,
};
use serde::Deserialize;

/// The `buildx://` connector.
pub struct Buildx;

/// The prefix of a `docker-container` builder node's container name.
pub const CONTAINER_PREFIX: &str = "buildx_buildkit_";

impl Connector for Buildx {
    const INFO: PluginInfo = PluginInfo {
        name: "buildx",
        version: env!("CARGO_PKG_VERSION"),
        schemes: &["buildx"],
        summary: "a buildx builder: its buildkitd container, Docker Engine or remote endpoint",
        capabilities: Capabilities {
            env: &[
                "BUILDX_BUILDER",
                "DOCKER_CONFIG",
                "DOCKER_HOST",
                "DOCKER_CONTEXT",
                "HOME",
            ],
            folders: &[docker::CONFIG_FOLDER],
            programs: &[],
            docker_engine: true,
        },
    };

    fn resolve(address: &Address, env: &dyn Env) -> Result<DialSpec, ResolveError> {
        no_username(address)?;
        no_port(address)?;
        no_path(address)?;
        Query::parse(address, &[])?;

        if let Some(name) = address.host() {
            return named_builder(env, name, Origin::Address);
        }
        if let Some(name) = env.var("BUILDX_BUILDER") {
            return named_builder(env, &name, Origin::Variable("BUILDX_BUILDER"));
        }
        current_builder(env)
    }
}

/// The builder `name`: an instance in the store, else the Docker context of
/// that name (every context is a builder of the `docker` driver).
fn named_builder(env: &dyn Env, name: &str, origin: Origin<'_>) -> Result<DialSpec, ResolveError> {
    let instance_name = names::buildx_name("buildx builder name", name);
    let is_context_name = names::docker_context_name("docker context", name).is_ok();
    let instance_name = match (instance_name, is_context_name) {
        (Ok(instance_name), _) => Some(instance_name),
        (Err(_), true) => None,
        (Err(message), false) => return Err(origin.invalid(message)),
    };

    if let Some(instance_name) = instance_name
        && let Some(spec) = instance(env, &instance_name)?
    {
        return Ok(spec);
    }
    match docker::context_endpoint(env, name, origin) {
        Ok(endpoint) => Ok(DialSpec::DockerGrpc(endpoint.url())),
        Err(ResolveError::NotFound(_)) => {
            let instance_file = match store_dir(env)? {
                Some(store) => {
                    let path = store.join("instances").join(name.to_ascii_lowercase());
                    format!(" `{}`", path.display())
                }
                None => String::new(),
            };
            Err(ResolveError::NotFound(format!(
                "no buildx builder `{name}`: no instance file{instance_file} and no Docker context of that name"
            )))
        }
        Err(other) => Err(other),
    }
}

/// The current builder, as `docker buildx ls` marks it.
fn current_builder(env: &dyn Env) -> Result<DialSpec, ResolveError> {
    let context = docker::current_context(env)?;
    let Some(store) = store_dir(env)? else {
        return context_builder(env, &context);
    };
    let key = endpoint_key(env, &context);

    let current_path = store.join("current");
    if let Some(bytes) = env
        .read_file(&current_path)
        .map_err(ResolveError::Environment)?
    {
        let current: Current = docker::parse_json(&current_path, &bytes)?;
        if !current.name.is_empty() {
            let name = names::buildx_name("buildx builder name", &current.name)
                .map_err(|m| Origin::File(&current_path).invalid(m))?;
            if current.global
                && let Some(spec) = instance(env, &name)?
            {
                return Ok(spec);
            }
            if current.key == key {
                return match instance(env, &name)? {
                    Some(spec) => Ok(spec),
                    None => context_builder(env, &context),
                };
            }
        }
    }

    let default_path = store.join("defaults").join(&docker::sha256_hex(&key)[..20]);
    if let Some(bytes) = env
        .read_file(&default_path)
        .map_err(ResolveError::Environment)?
    {
        let text = String::from_utf8_lossy(&bytes);
        let name = names::buildx_name("buildx builder name", text.trim())
            .map_err(|m| Origin::File(&default_path).invalid(m))?;
        if let Some(spec) = instance(env, &name)? {
            return Ok(spec);
        }
    }
    context_builder(env, &context)
}

/// buildx's key for the current Docker endpoint: the context name, or for
/// the `default` context its Engine endpoint as written.
fn endpoint_key(env: &dyn Env, context: &str) -> String {
    if context != docker::DEFAULT_CONTEXT {
        return context.to_owned();
    }
    env.var("DOCKER_HOST")
        .unwrap_or_else(|| docker::DEFAULT_HOST.to_owned())
}

/// The builder a Docker context is: the Engine's own BuildKit.
fn context_builder(env: &dyn Env, context: &str) -> Result<DialSpec, ResolveError> {
    let endpoint = docker::context_endpoint(env, context, Origin::Variable("DOCKER_CONTEXT"))?;
    Ok(DialSpec::DockerGrpc(endpoint.url()))
}

/// buildx's store folder, when the Docker config folder is known.
fn store_dir(env: &dyn Env) -> Result<Option<PathBuf>, ResolveError> {
    Ok(docker::config_dir(env)?.map(|dir| dir.join("buildx")))
}

/// The dial spec of the instance `name` (already valid and lower case), or
/// `None` when the store has no such instance.
fn instance(env: &dyn Env, name: &str) -> Result<Option<DialSpec>, ResolveError> {
    let Some(store) = store_dir(env)? else {
        return Ok(None);
    };
    let path = store.join("instances").join(name);
    let Some(bytes) = env.read_file(&path).map_err(ResolveError::Environment)? else {
        return Ok(None);
    };
    let group: NodeGroup = docker::parse_json(&path, &bytes)?;
    node_group_spec(env, name, &group, &path).map(Some)
}

fn node_group_spec(
    env: &dyn Env,
    name: &str,
    group: &NodeGroup,
    path: &Path,
) -> Result<DialSpec, ResolveError> {
    let origin = Origin::File(path);
    let Some(node) = group.nodes.as_deref().and_then(<[Node]>::first) else {
        return Err(origin.invalid(format!("buildx builder `{name}` has no nodes")));
    };

    match group.driver.as_str() {
        "docker-container" => {
            names::buildx_name("buildx node name", &node.name).map_err(|m| origin.invalid(m))?;
            let container = format!("{CONTAINER_PREFIX}{}", node.name);
            names::container_name("buildx container name", &container)
                .map_err(|m| origin.invalid(m))?;
            let endpoint = engine_endpoint(env, &node.endpoint, path)?;
            Ok(DialSpec::DockerExec(DockerExecTarget {
                endpoint: endpoint.url(),
                container,
                command: Vec::from(DIAL_STDIO.map(String::from)),
            }))
        }
        "docker" | "" => {
            let endpoint = engine_endpoint(env, &node.endpoint, path)?;
            Ok(DialSpec::DockerGrpc(endpoint.url()))
        }
        "remote" => remote_spec(name, node, path),
        other => Err(ResolveError::Unsupported(format!(
            "buildx builder `{name}` uses the {} driver, which copa does not support (only `docker-container`, `docker` and `remote`)",
            shown(other)
        ))),
    }
}

/// A node's Docker Engine: a context name, a `unix://`/`tcp://` endpoint, or
/// (when empty) the current one.
fn engine_endpoint(env: &dyn Env, endpoint: &str, path: &Path) -> Result<Endpoint, ResolveError> {
    if endpoint.is_empty() {
        return docker::current_endpoint(env);
    }
    if endpoint.contains("://") {
        return Endpoint::parse(endpoint, Origin::File(path));
    }
    docker::context_endpoint(env, endpoint, Origin::File(path))
}

/// A `remote` node: its buildkitd endpoint, `unix:///path` or `tcp://host:port`.
fn remote_spec(name: &str, node: &Node, path: &Path) -> Result<DialSpec, ResolveError> {
    let origin = Origin::File(path);
    let endpoint = node.endpoint.as_str();
    let tls = ["cacert", "cert", "key"].iter().any(|opt| {
        node.driver_opts
            .as_ref()
            .is_some_and(|o| o.contains_key(*opt))
    });
    if tls {
        return Err(ResolveError::Unsupported(format!(
            "buildx builder `{name}` connects with TLS, which copa cannot take from buildx; use `--addr {}` with `--cacert`, `--cert` and `--key`",
            shown(endpoint).trim_matches('`')
        )));
    }
    names::basic("remote endpoint", endpoint, names::MAX_PATH).map_err(|m| origin.invalid(m))?;

    let bad =
        |problem: String| origin.invalid(format!("remote endpoint {} {problem}", shown(endpoint)));
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("", endpoint));
    match scheme {
        "unix" => {
            docker::check_socket_path(rest).map_err(bad)?;
            Ok(DialSpec::Unix(rest.to_owned()))
        }
        "tcp" => {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.contains(['/', '?', '#', '@']) {
                return Err(bad("must be `tcp://HOST:PORT`".into()));
            }
            let (host, port) = docker::split_host_port(authority).map_err(bad)?;
            let port = match port.map(str::parse::<u16>) {
                Some(Ok(port)) if port != 0 => port,
                _ => return Err(bad("needs a port between 1 and 65535".into())),
            };
            Ok(DialSpec::Tcp(TcpTarget { host, port }))
        }
        "" => Err(bad(
            "is not of the form `unix:///PATH` or `tcp://HOST:PORT`".into(),
        )),
        other => Err(ResolveError::Unsupported(format!(
            "buildx builder `{name}` reaches buildkitd through `{other}://`; give that address to `--addr` directly"
        ))),
    }
}

/// buildx's `current` file.
#[derive(Deserialize)]
struct Current {
    #[serde(rename = "Key", default)]
    key: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Global", default)]
    global: bool,
}

/// The parts of an instance file (a buildx node group) that matter here.
#[derive(Deserialize)]
struct NodeGroup {
    #[serde(rename = "Driver", default)]
    driver: String,
    #[serde(rename = "Nodes", default)]
    nodes: Option<Vec<Node>>,
}

#[derive(Deserialize)]
struct Node {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Endpoint", default)]
    endpoint: String,
    #[serde(rename = "DriverOpts", default)]
    driver_opts: Option<BTreeMap<String, String>>,
}

export_connector!(Buildx);

#[cfg(test)]
mod tests {
    use super::*;
    use copa_plugin_common::env::fake::FakeEnv;
    use copa_plugin_common::run;

    const STORE: &str = "/home/u/.docker/buildx";

    fn address(host: Option<&str>) -> Address {
        Address::for_test("buildx", host, &[])
    }

    fn env() -> FakeEnv {
        FakeEnv::new(&Buildx::INFO.capabilities).var("HOME", "/home/u")
    }

    fn instance_json(name: &str, driver: &str, node: &str, endpoint: &str) -> String {
        format!(
            r#"{{"Name":"{name}","Driver":"{driver}","Nodes":[{{"Name":"{node}","Endpoint":"{endpoint}","Platforms":null,"DriverOpts":null,"Flags":["--allow-insecure-entitlement=network.host"],"Files":null}}],"Dynamic":false}}"#
        )
    }

    fn exec(endpoint: &str, container: &str) -> DialSpec {
        DialSpec::DockerExec(DockerExecTarget {
            endpoint: endpoint.into(),
            container: container.into(),
            command: vec!["buildctl".into(), "dial-stdio".into()],
        })
    }

    fn meta_path(name: &str) -> String {
        format!(
            "/home/u/.docker/contexts/meta/{}/meta.json",
            docker::context_hash(name)
        )
    }

    fn meta(host: &str) -> String {
        format!(r#"{{"Endpoints":{{"docker":{{"Host":"{host}"}}}}}}"#)
    }

    #[test]
    fn a_docker_container_builder_execs_into_its_node_container() {
        let env = env().file(
            format!("{STORE}/instances/demo"),
            instance_json(
                "demo",
                "docker-container",
                "demo0",
                "unix:///var/run/docker.sock",
            ),
        );
        assert_eq!(
            run::<Buildx>(&address(Some("demo")), &env),
            Ok(exec("unix:///var/run/docker.sock", "buildx_buildkit_demo0"))
        );
    }

    #[test]
    fn builder_names_are_looked_up_in_lower_case() {
        let env = env().file(
            format!("{STORE}/instances/demo"),
            instance_json("demo", "docker-container", "demo0", "default"),
        );
        assert_eq!(
            run::<Buildx>(&address(Some("Demo")), &env),
            Ok(exec("unix:///var/run/docker.sock", "buildx_buildkit_demo0"))
        );
    }

    #[test]
    fn a_node_endpoint_naming_a_context_uses_that_contexts_engine() {
        let env = env()
            .file(
                format!("{STORE}/instances/remote-ish"),
                instance_json("remote-ish", "docker-container", "n0", "other"),
            )
            .file(meta_path("other"), meta("tcp://10.0.0.5:2375"));
        assert_eq!(
            run::<Buildx>(&address(Some("remote-ish")), &env),
            Ok(exec("tcp://10.0.0.5:2375", "buildx_buildkit_n0"))
        );
    }

    #[test]
    fn a_docker_driver_builder_is_the_engines_buildkit() {
        let env = env().var("DOCKER_HOST", "unix:///run/d.sock").file(
            format!("{STORE}/instances/eng"),
            instance_json("eng", "docker", "eng0", "default"),
        );
        assert_eq!(
            run::<Buildx>(&address(Some("eng")), &env),
            Ok(DialSpec::DockerGrpc("unix:///run/d.sock".into()))
        );
    }

    #[test]
    fn a_remote_builder_is_its_buildkitd_endpoint() {
        let env = env()
            .file(
                format!("{STORE}/instances/r1"),
                instance_json("r1", "remote", "r10", "tcp://127.0.0.1:1234"),
            )
            .file(
                format!("{STORE}/instances/r2"),
                instance_json("r2", "remote", "r20", "unix:///run/buildkit/buildkitd.sock"),
            )
            .file(
                format!("{STORE}/instances/r3"),
                instance_json("r3", "remote", "r30", "docker-container://bk"),
            )
            .file(
                format!("{STORE}/instances/r4"),
                instance_json("r4", "remote", "r40", "tcp://127.0.0.1"),
            );
        assert_eq!(
            run::<Buildx>(&address(Some("r1")), &env),
            Ok(DialSpec::Tcp(TcpTarget {
                host: "127.0.0.1".into(),
                port: 1234
            }))
        );
        assert_eq!(
            run::<Buildx>(&address(Some("r2")), &env),
            Ok(DialSpec::Unix("/run/buildkit/buildkitd.sock".into()))
        );
        let err = run::<Buildx>(&address(Some("r3")), &env).unwrap_err();
        assert_eq!(err.kind(), "unsupported", "{err}");
        let err = run::<Buildx>(&address(Some("r4")), &env).unwrap_err();
        assert!(err.message().contains("needs a port"), "{err}");
    }

    #[test]
    fn a_remote_builder_with_tls_is_unsupported() {
        let json = r#"{"Name":"t","Driver":"remote","Nodes":[{"Name":"t0","Endpoint":"tcp://h:1234","DriverOpts":{"cacert":"/ca.pem"}}]}"#;
        let env = env().file(format!("{STORE}/instances/t"), json);
        let err = run::<Buildx>(&address(Some("t")), &env).unwrap_err();
        assert_eq!(err.kind(), "unsupported");
        assert!(err.message().contains("--addr tcp://h:1234"), "{err}");
    }

    #[test]
    fn other_drivers_are_unsupported_by_name() {
        let env = env().file(
            format!("{STORE}/instances/k"),
            instance_json(
                "k",
                "kubernetes",
                "k0",
                "kubernetes:///k?deployment=&kubeconfig=",
            ),
        );
        let err = run::<Buildx>(&address(Some("k")), &env).unwrap_err();
        assert_eq!(err.kind(), "unsupported");
        assert!(err.message().contains("`kubernetes` driver"), "{err}");
    }

    #[test]
    fn a_name_without_an_instance_can_be_a_docker_context() {
        let env = env().file(meta_path("ctx+1"), meta("unix:///run/ctx.sock"));
        assert_eq!(
            run::<Buildx>(&address(Some("ctx+1")), &env),
            Ok(DialSpec::DockerGrpc("unix:///run/ctx.sock".into()))
        );
        assert_eq!(
            run::<Buildx>(&address(Some("default")), &env),
            Ok(DialSpec::DockerGrpc("unix:///var/run/docker.sock".into()))
        );
        let err = run::<Buildx>(&address(Some("nothing")), &env).unwrap_err();
        assert_eq!(err.kind(), "not-found");
        assert_eq!(
            err.message(),
            "no buildx builder `nothing`: no instance file `/home/u/.docker/buildx/instances/nothing` and no Docker context of that name"
        );
    }

    #[test]
    fn buildx_builder_names_the_builder_when_the_address_does_not() {
        let env = env()
            .var("BUILDX_BUILDER", "demo")
            .file(
                format!("{STORE}/instances/demo"),
                instance_json("demo", "docker-container", "demo0", "default"),
            )
            .file(
                format!("{STORE}/current"),
                r#"{"Key":"unix:///var/run/docker.sock","Name":"other","Global":true}"#,
            );
        assert_eq!(
            run::<Buildx>(&address(None), &env),
            Ok(exec("unix:///var/run/docker.sock", "buildx_buildkit_demo0"))
        );
        let env = env.var("BUILDX_BUILDER", "-x");
        let err = run::<Buildx>(&address(None), &env).unwrap_err();
        assert_eq!(err.kind(), "environment");
        assert!(err.message().ends_with("(from `BUILDX_BUILDER`)"), "{err}");
    }

    #[test]
    fn the_current_builder_is_the_one_set_for_the_current_endpoint() {
        let current = r#"{"Key":"unix:///var/run/docker.sock","Name":"demo","Global":false}"#;
        let env = env().file(format!("{STORE}/current"), current).file(
            format!("{STORE}/instances/demo"),
            instance_json("demo", "docker-container", "demo0", "default"),
        );
        assert_eq!(
            run::<Buildx>(&address(None), &env),
            Ok(exec("unix:///var/run/docker.sock", "buildx_buildkit_demo0"))
        );

        // Set for another endpoint, and not global: the context's own builder.
        let env = env.var("DOCKER_HOST", "tcp://127.0.0.1:2375");
        assert_eq!(
            run::<Buildx>(&address(None), &env),
            Ok(DialSpec::DockerGrpc("tcp://127.0.0.1:2375".into()))
        );
    }

    #[test]
    fn a_global_current_builder_applies_to_every_endpoint() {
        let current = r#"{"Key":"elsewhere","Name":"demo","Global":true}"#;
        let env = env().file(format!("{STORE}/current"), current).file(
            format!("{STORE}/instances/demo"),
            instance_json("demo", "docker-container", "demo0", "default"),
        );
        assert_eq!(
            run::<Buildx>(&address(None), &env),
            Ok(exec("unix:///var/run/docker.sock", "buildx_buildkit_demo0"))
        );
    }

    #[test]
    fn the_endpoint_default_applies_when_current_names_another_endpoint() {
        let key = "unix:///var/run/docker.sock";
        let env = env()
            .file(
                format!("{STORE}/current"),
                r#"{"Key":"other","Name":"x","Global":false}"#,
            )
            .file(
                format!("{STORE}/defaults/{}", &docker::sha256_hex(key)[..20]),
                "demo",
            )
            .file(
                format!("{STORE}/instances/demo"),
                instance_json("demo", "docker-container", "demo0", "default"),
            );
        assert_eq!(
            run::<Buildx>(&address(None), &env),
            Ok(exec("unix:///var/run/docker.sock", "buildx_buildkit_demo0"))
        );
    }

    #[test]
    fn with_no_store_the_current_builder_is_the_default_engine() {
        assert_eq!(
            run::<Buildx>(&address(None), &env()),
            Ok(DialSpec::DockerGrpc("unix:///var/run/docker.sock".into()))
        );
        let env = FakeEnv::new(&Buildx::INFO.capabilities);
        assert_eq!(
            run::<Buildx>(&address(None), &env),
            Ok(DialSpec::DockerGrpc("unix:///var/run/docker.sock".into()))
        );
    }

    #[test]
    fn describe_declares_buildx_and_docker_state_and_the_engine() {
        let caps = Buildx::INFO.capabilities;
        assert_eq!(
            caps.env,
            [
                "BUILDX_BUILDER",
                "DOCKER_CONFIG",
                "DOCKER_HOST",
                "DOCKER_CONTEXT",
                "HOME"
            ]
        );
        assert_eq!(caps.folders, ["${DOCKER_CONFIG:-~/.docker}"]);
        assert!(caps.programs.is_empty());
        assert!(caps.docker_engine);
    }

    #[test]
    fn hostile_addresses_are_refused_before_anything_is_read() {
        let long = format!("a{}", "b".repeat(253));
        let cases = [
            ("-x", "must not start with `-`"),
            ("..", "must start with a letter"),
            ("a/../../etc", "contains `/`"),
            ("a;id", "contains `;`"),
            ("a%2F..%2Fx", "contains `%`"),
            ("a b", "contains ` `"),
            ("a\nb", "control character"),
            ("_x", "must start with a letter"),
            (long.as_str(), "the limit is 253"),
        ];
        let env = env();
        for (name, needle) in cases {
            let err = run::<Buildx>(&address(Some(name)), &env).unwrap_err();
            assert_eq!(err.kind(), "invalid-address", "{name}: {err}");
            assert!(err.message().contains(needle), "{name}: {err}");
        }
        assert!(
            env.reads().iter().all(|r| !r.starts_with("file")),
            "{:?}",
            env.reads()
        );

        let mut a = address(Some("demo"));
        a.query = vec![("driver".into(), "remote".into())];
        assert!(
            run::<Buildx>(&a, &env)
                .unwrap_err()
                .message()
                .contains("no query parameters")
        );
        let mut a = address(Some("demo"));
        a.path = "/../../etc/passwd".into();
        assert!(
            run::<Buildx>(&a, &env)
                .unwrap_err()
                .message()
                .contains("no path")
        );
    }

    #[test]
    fn hostile_store_files_are_refused() {
        let cases = [
            (
                instance_json("x", "docker-container", "-n", "default"),
                "environment",
            ),
            (
                instance_json("x", "docker-container", "n;id", "default"),
                "environment",
            ),
            (
                instance_json("x", "docker-container", "n", "../../x"),
                "environment",
            ),
            (
                instance_json("x", "docker-container", "n", "tcp://-oX:1"),
                "environment",
            ),
            (
                instance_json("x", "docker-container", "n", "ssh://me@h"),
                "unsupported",
            ),
            (
                instance_json("x", "docker-container", &"n".repeat(250), "default"),
                "environment",
            ),
            (
                instance_json("x", "remote", "n", "unix:///run/../x.sock"),
                "environment",
            ),
            (
                instance_json("x", "remote", "n", "tcp://h:1/x"),
                "environment",
            ),
            (
                r#"{"Name":"x","Driver":"docker-container","Nodes":[]}"#.into(),
                "environment",
            ),
            (
                r#"{"Name":"x","Driver":"docker-container","Nodes":null}"#.into(),
                "environment",
            ),
            ("not json".into(), "environment"),
        ];
        for (json, kind) in cases {
            let env = env().file(format!("{STORE}/instances/x"), &json);
            let err = run::<Buildx>(&address(Some("x")), &env).unwrap_err();
            assert_eq!(err.kind(), kind, "{json}: {err}");
            assert!(!err.message().contains('\n'), "{err}");
        }

        let env = env().file(
            format!("{STORE}/current"),
            r#"{"Key":"k","Name":"../x","Global":true}"#,
        );
        assert_eq!(
            run::<Buildx>(&address(None), &env).unwrap_err().kind(),
            "environment"
        );
    }
}
