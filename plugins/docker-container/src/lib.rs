//! The `docker-container://NAME[?context=C]` connector: a buildkitd running in
//! a Docker container, reached by the host through a Docker Engine API exec
//! of `buildctl dial-stdio` in that container (no docker CLI needed).
//!
//! The Engine is the one of Docker context `C` when given, else the one the
//! Docker CLI would use (`DOCKER_HOST`, `DOCKER_CONTEXT`, the current context,
//! the default socket).
//!
//! It must never return anything but a `docker-exec` spec running exactly
//! `buildctl dial-stdio`, never pass on a container name outside Docker's
//! naming rule, never accept a query parameter other than `context`, and
//! never read state before the address has passed every check.

use copa_plugin_common::address::{no_path, no_port, no_username};
use copa_plugin_common::docker;
use copa_plugin_common::names;
use copa_plugin_common::{
    Address, Capabilities, Connector, DIAL_STDIO, DialSpec, DockerExecTarget, Env, Origin,
    PluginInfo, Query, ResolveError, export_connector, invalid,
};

/// The `docker-container://` connector.
pub struct DockerContainer;

impl Connector for DockerContainer {
    const INFO: PluginInfo = PluginInfo {
        name: "docker-container",
        version: env!("CARGO_PKG_VERSION"),
        schemes: &["docker-container"],
        summary: "a buildkitd in a Docker container, through a Docker Engine API exec",
        capabilities: Capabilities {
            env: docker::ENV,
            folders: &[docker::CONFIG_FOLDER],
            programs: &[],
            docker_engine: true,
        },
    };

    fn resolve(address: &Address, env: &dyn Env) -> Result<DialSpec, ResolveError> {
        no_username(address)?;
        no_port(address)?;
        no_path(address)?;
        let query = Query::parse(address, &["context"])?;
        let Some(container) = address.host() else {
            return Err(invalid(
                "`docker-container://` needs a container name, as in `docker-container://buildkitd`",
            ));
        };
        names::container_name("container name", container).map_err(invalid)?;

        let endpoint = match query.get("context") {
            Some(context) => docker::context_endpoint(env, context, Origin::Address)?,
            None => docker::current_endpoint(env)?,
        };
        Ok(DialSpec::DockerExec(DockerExecTarget {
            endpoint: endpoint.url(),
            container: container.to_owned(),
            command: Vec::from(DIAL_STDIO.map(String::from)),
        }))
    }
}

export_connector!(DockerContainer);

#[cfg(test)]
mod tests {
    use super::*;
    use copa_plugin_common::env::fake::FakeEnv;
    use copa_plugin_common::run;

    /// A host, query parameters and a fragment of the expected message.
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);

    fn address(raw: &str, host: Option<&str>, query: &[(&str, &str)]) -> Address {
        Address {
            raw: raw.into(),
            ..Address::for_test("docker-container", host, query)
        }
    }

    fn env() -> FakeEnv {
        FakeEnv::new(&DockerContainer::INFO.capabilities)
    }

    fn exec(endpoint: &str, container: &str) -> Result<DialSpec, ResolveError> {
        Ok(DialSpec::DockerExec(DockerExecTarget {
            endpoint: endpoint.into(),
            container: container.into(),
            command: vec!["buildctl".into(), "dial-stdio".into()],
        }))
    }

    #[test]
    fn a_container_name_runs_dial_stdio_in_it_on_the_default_engine() {
        let a = address("docker-container://buildkitd", Some("buildkitd"), &[]);
        assert_eq!(
            run::<DockerContainer>(&a, &env()),
            exec("unix:///var/run/docker.sock", "buildkitd")
        );
    }

    #[test]
    fn docker_host_picks_the_engine() {
        let a = address("docker-container://bk", Some("bk"), &[]);
        let env = env().var("DOCKER_HOST", "tcp://127.0.0.1:2375");
        assert_eq!(
            run::<DockerContainer>(&a, &env),
            exec("tcp://127.0.0.1:2375", "bk")
        );
    }

    #[test]
    fn a_context_parameter_picks_the_engine() {
        let meta = format!(
            "/home/u/.docker/contexts/meta/{}/meta.json",
            docker::context_hash("other")
        );
        let env = env()
            .var("HOME", "/home/u")
            .var("DOCKER_HOST", "tcp://ignored:1")
            .file(
                meta,
                r#"{"Endpoints":{"docker":{"Host":"unix:///run/other.sock"}}}"#,
            );
        let a = address(
            "docker-container://bk?context=other",
            Some("bk"),
            &[("context", "other")],
        );
        assert_eq!(
            run::<DockerContainer>(&a, &env),
            exec("unix:///run/other.sock", "bk")
        );

        let a = address(
            "docker-container://bk?context=missing",
            Some("bk"),
            &[("context", "missing")],
        );
        assert_eq!(
            run::<DockerContainer>(&a, &env).unwrap_err().kind(),
            "not-found"
        );
    }

    #[test]
    fn a_full_container_id_is_accepted() {
        let id = "0123456789abcdef".repeat(4);
        let a = address(&format!("docker-container://{id}"), Some(&id), &[]);
        assert!(run::<DockerContainer>(&a, &env()).is_ok());
    }

    #[test]
    fn describe_declares_docker_state_and_the_engine() {
        let caps = DockerContainer::INFO.capabilities;
        assert_eq!(
            caps.env,
            ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "HOME"]
        );
        assert_eq!(caps.folders, ["${DOCKER_CONFIG:-~/.docker}"]);
        assert!(caps.programs.is_empty());
        assert!(caps.docker_engine);
    }

    #[test]
    fn hostile_addresses_are_refused_before_anything_is_read() {
        let long = "a".repeat(256);
        let cases: &[Case] = &[
            (None, &[], "needs a container name"),
            (
                Some("-x"),
                &[],
                "container name `-x` must not start with `-`",
            ),
            (Some("--privileged"), &[], "must not start with `-`"),
            (Some("%2Dx"), &[], "contains `%`"),
            (Some("a;reboot"), &[], "contains `;`"),
            (Some("a b"), &[], "contains ` `"),
            (Some("a|b"), &[], "contains `|`"),
            (Some("a$(id)"), &[], "contains `$`"),
            (Some("a`id`"), &[], "contains `\\``"),
            (Some("../etc"), &[], "contains `/`"),
            (Some("a\nb"), &[], "control character"),
            (Some("a\0b"), &[], "control character"),
            (Some("_x"), &[], "must start with a letter or a digit"),
            (Some(&long), &[], "the limit is 255"),
            (
                Some("bk"),
                &[("user", "root")],
                "unknown query parameter `user`",
            ),
            (
                Some("bk"),
                &[("context", "--host=tcp://x")],
                "must not start with `-`",
            ),
            (
                Some("bk"),
                &[("context", "../../x")],
                "docker context `../../x`",
            ),
            (
                Some("bk"),
                &[("context", "a"), ("context", "b")],
                "more than once",
            ),
            (Some("bk"), &[("context", "")], "is empty"),
        ];
        let env = env().var("HOME", "/home/u");
        for (host, query, needle) in cases {
            let a = address("docker-container://x", *host, query);
            let err = run::<DockerContainer>(&a, &env).unwrap_err();
            assert_eq!(err.kind(), "invalid-address", "{host:?} {query:?}: {err}");
            assert!(err.message().contains(needle), "{host:?} {query:?}: {err}");
        }
        assert!(
            env.reads().iter().all(|r| !r.starts_with("file")),
            "{:?}",
            env.reads()
        );

        let mut a = address("docker-container://me@bk:22/x", Some("bk"), &[]);
        a.username = Some("me".into());
        assert!(
            run::<DockerContainer>(&a, &env)
                .unwrap_err()
                .message()
                .contains("no user name")
        );
        a.username = None;
        a.port = Some(22);
        assert!(
            run::<DockerContainer>(&a, &env)
                .unwrap_err()
                .message()
                .contains("no port")
        );
        a.port = None;
        a.path = "/x".into();
        assert!(
            run::<DockerContainer>(&a, &env)
                .unwrap_err()
                .message()
                .contains("no path")
        );
        let a = address("docker-container://bk#x", Some("bk"), &[]);
        assert!(
            run::<DockerContainer>(&a, &env)
                .unwrap_err()
                .message()
                .contains("fragment")
        );
    }
}
