//! The `docker://` connector: the BuildKit embedded in a Docker Engine,
//! reached by the host through an HTTP upgrade on the Engine's `/grpc`.
//!
//! `docker://` alone means the Engine the Docker CLI would use (`DOCKER_HOST`,
//! then `DOCKER_CONTEXT`, then the current context of `config.json`, then
//! `unix:///var/run/docker.sock`); `docker://unix:///PATH` and
//! `docker://tcp://HOST:PORT` name the Engine endpoint outright. The nested
//! endpoint is read from the raw address, since URL parsing of a URL inside a
//! URL loses its parts.
//!
//! It must never return anything but a `docker-grpc` spec with a `unix://`
//! or `tcp://` endpoint in normal form, never read a variable or file it did
//! not declare, and never let an endpoint it cannot dial through (`ssh://`,
//! TLS contexts): those are refused by name.

use copa_plugin_common::docker::{self, Endpoint};
use copa_plugin_common::names::shown;
use copa_plugin_common::{
    Address, Capabilities, Connector, DialSpec, Env, Origin, PluginInfo, ResolveError,
    export_connector, invalid,
};

/// The `docker://` connector.
pub struct Docker;

impl Connector for Docker {
    const INFO: PluginInfo = PluginInfo {
        name: "docker",
        version: env!("CARGO_PKG_VERSION"),
        schemes: &["docker"],
        summary: "the BuildKit inside a Docker Engine, through the Engine's /grpc endpoint",
        capabilities: Capabilities {
            env: docker::ENV,
            folders: &[docker::CONFIG_FOLDER],
            programs: &[],
            docker_engine: true,
        },
    };

    fn resolve(address: &Address, env: &dyn Env) -> Result<DialSpec, ResolveError> {
        let nested = nested_endpoint(address)?;

        let endpoint = match nested {
            None => docker::current_endpoint(env)?,
            Some(text) => Endpoint::parse(text, Origin::Address)?,
        };
        Ok(DialSpec::DockerGrpc(endpoint.url()))
    }
}

/// The text after `docker://` in the raw address, `None` when empty.
fn nested_endpoint(address: &Address) -> Result<Option<&str>, ResolveError> {
    const PREFIX: &str = "docker://";
    let raw = address.raw.as_str();
    let rest = match raw.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => &raw[PREFIX.len()..],
        _ => {
            return Err(invalid(format!(
                "address {} does not start with `docker://`",
                shown(raw)
            )));
        }
    };

    if !address.query.is_empty() || rest.contains('?') {
        return Err(invalid(format!(
            "`docker://` addresses take no query parameters, but {} has some",
            shown(raw)
        )));
    }
    if rest.is_empty() || rest == "/" {
        return Ok(None);
    }
    if !rest.contains("://") {
        return Err(invalid(format!(
            "address {} must be `docker://`, `docker://unix:///PATH` or `docker://tcp://HOST:PORT`",
            shown(raw)
        )));
    }
    Ok(Some(rest))
}

export_connector!(Docker);

#[cfg(test)]
mod tests {
    use super::*;
    use copa_plugin_common::env::fake::FakeEnv;
    use copa_plugin_common::run;

    fn address(raw: &str) -> Address {
        Address {
            raw: raw.into(),
            scheme: "docker".into(),
            ..Address::default()
        }
    }

    fn resolve(raw: &str, env: &FakeEnv) -> Result<DialSpec, ResolveError> {
        run::<Docker>(&address(raw), env)
    }

    fn env() -> FakeEnv {
        FakeEnv::new(&Docker::INFO.capabilities)
    }

    fn grpc(endpoint: &str) -> Result<DialSpec, ResolveError> {
        Ok(DialSpec::DockerGrpc(endpoint.into()))
    }

    #[test]
    fn an_empty_address_means_the_default_socket_when_nothing_is_set() {
        assert_eq!(
            resolve("docker://", &env()),
            grpc("unix:///var/run/docker.sock")
        );
    }

    #[test]
    fn an_empty_address_follows_docker_host() {
        let env = env().var("DOCKER_HOST", "tcp://127.0.0.1:2375");
        assert_eq!(resolve("docker://", &env), grpc("tcp://127.0.0.1:2375"));
    }

    #[test]
    fn an_empty_address_follows_the_current_context() {
        let dir = "/home/u/.docker/contexts/meta";
        let meta = format!("{dir}/{}/meta.json", docker::context_hash("rootless"));
        let env = env()
            .var("HOME", "/home/u")
            .file("/home/u/.docker/config.json", r#"{"currentContext":"rootless"}"#)
            .file(
                meta,
                r#"{"Name":"rootless","Endpoints":{"docker":{"Host":"unix:///run/user/1000/docker.sock"}}}"#,
            );
        assert_eq!(
            resolve("docker://", &env),
            grpc("unix:///run/user/1000/docker.sock")
        );
        assert!(env.reads().iter().any(|r| r.ends_with("config.json")));
    }

    #[test]
    fn a_nested_endpoint_is_used_as_given() {
        let env = env().var("DOCKER_HOST", "tcp://elsewhere:1");
        assert_eq!(
            resolve("docker://unix:///var/run/docker.sock", &env),
            grpc("unix:///var/run/docker.sock")
        );
        assert_eq!(
            resolve("docker://tcp://127.0.0.1:2375", &env),
            grpc("tcp://127.0.0.1:2375")
        );
        assert_eq!(
            resolve("DOCKER://tcp://[::1]:2375/", &env),
            grpc("tcp://[::1]:2375")
        );
        assert!(env.reads().is_empty(), "{:?}", env.reads());
    }

    #[test]
    fn describe_declares_only_docker_state() {
        let caps = Docker::INFO.capabilities;
        assert_eq!(
            caps.env,
            ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "HOME"]
        );
        assert_eq!(caps.folders, ["${DOCKER_CONFIG:-~/.docker}"]);
        assert!(caps.programs.is_empty());
        assert!(caps.docker_engine);
    }

    #[test]
    fn hostile_addresses_are_refused() {
        let huge = format!("docker://unix:///{}", "a".repeat(9000));
        let cases = [
            ("docker://-H", "invalid-address", "must be `docker://`"),
            ("docker://unix", "invalid-address", "must be `docker://`"),
            (
                "docker://unix:///var/run/../../tmp/x.sock",
                "invalid-address",
                "`..`",
            ),
            (
                "docker://unix://relative.sock",
                "invalid-address",
                "absolute socket path",
            ),
            (
                "docker://tcp://-oProxyCommand=x:1",
                "invalid-address",
                "starting with `-`",
            ),
            (
                "docker://tcp://h;reboot:1",
                "invalid-address",
                "containing `;`",
            ),
            (
                "docker://tcp://h:1/v1.41/containers",
                "invalid-address",
                "path or query",
            ),
            ("docker://tcp://h:70000", "invalid-address", "invalid port"),
            (
                "docker://unix:///x.sock?exec=1",
                "invalid-address",
                "no query parameters",
            ),
            (
                "docker://unix:///x.sock#frag",
                "invalid-address",
                "fragment",
            ),
            (
                "docker://unix:///x\n.sock",
                "invalid-address",
                "control character",
            ),
            ("docker://ssh://me@host", "unsupported", "cannot dial"),
            ("docker://npipe:////./pipe/x", "unsupported", "cannot dial"),
            ("docker://gopher://h", "invalid-address", "unknown scheme"),
            (huge.as_str(), "invalid-address", "the limit is 8192"),
        ];
        let env = env();
        for (raw, kind, needle) in cases {
            let err = resolve(raw, &env).unwrap_err();
            assert_eq!(err.kind(), kind, "{raw}: {err}");
            assert!(err.message().contains(needle), "{raw}: {err}");
            assert!(!err.message().contains('\n'), "{raw}: {err}");
        }
        assert!(env.reads().is_empty(), "{:?}", env.reads());
    }

    #[test]
    fn hostile_state_is_refused() {
        let cases = [
            ("DOCKER_HOST", "ssh://me@host"),
            ("DOCKER_HOST", "tcp://-x:1"),
            ("DOCKER_CONTEXT", "../../etc"),
            ("DOCKER_CONFIG", "relative"),
            ("DOCKER_CONFIG", "/a/../b"),
        ];
        for (name, value) in cases {
            let env = env().var(name, value).var("HOME", "/home/u");
            let err = resolve("docker://", &env).unwrap_err();
            assert!(
                matches!(
                    err,
                    ResolveError::Environment(_) | ResolveError::Unsupported(_)
                ),
                "{name}={value}: {err:?}"
            );
        }
    }
}
