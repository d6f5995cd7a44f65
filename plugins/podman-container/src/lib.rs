//! The `podman-container://NAME` connector: a buildkitd running in a Podman
//! container, reached by having the host spawn
//! `podman exec -i -- NAME buildctl dial-stdio`.
//!
//! It must never return anything but a spawn of `podman` with exactly those
//! arguments, and never pass on a name outside the container naming rule:
//! `--` already stops Podman reading the name as a flag (checked with Podman
//! 4.3), and the rule, which refuses a leading `-`, makes sure of it twice.
//! It reads nothing: no variable, no file.

use copa_plugin_common::address::{no_path, no_port, no_username};
use copa_plugin_common::names;
use copa_plugin_common::{
    Address, Capabilities, Connector, DIAL_STDIO, DialSpec, Env, PluginInfo, Query, ResolveError,
    export_connector, invalid,
};

/// The `podman-container://` connector.
pub struct PodmanContainer;

/// The program the host spawns.
const PODMAN: &str = "podman";

impl Connector for PodmanContainer {
    const INFO: PluginInfo = PluginInfo {
        name: "podman-container",
        version: env!("CARGO_PKG_VERSION"),
        schemes: &["podman-container"],
        summary: "a buildkitd in a Podman container, through `podman exec`",
        capabilities: Capabilities {
            env: &[],
            folders: &[],
            programs: &[PODMAN],
            docker_engine: false,
        },
    };

    fn resolve(address: &Address, _env: &dyn Env) -> Result<DialSpec, ResolveError> {
        no_username(address)?;
        no_port(address)?;
        no_path(address)?;
        Query::parse(address, &[])?;
        let Some(container) = address.host() else {
            return Err(invalid(
                "`podman-container://` needs a container name, as in `podman-container://buildkitd`",
            ));
        };
        names::container_name("container name", container).map_err(invalid)?;

        let mut args: Vec<String> = ["exec", "-i", "--", container].map(String::from).into();
        args.extend(DIAL_STDIO.map(String::from));
        Ok(DialSpec::spawn(PODMAN, args))
    }
}

export_connector!(PodmanContainer);

#[cfg(test)]
mod tests {
    use super::*;
    use copa_plugin_common::env::fake::FakeEnv;
    use copa_plugin_common::run;

    fn address(host: Option<&str>) -> Address {
        Address::for_test("podman-container", host, &[])
    }

    fn env() -> FakeEnv {
        FakeEnv::new(&PodmanContainer::INFO.capabilities)
    }

    #[test]
    fn a_container_name_spawns_podman_exec_with_a_flag_terminator() {
        let spec = run::<PodmanContainer>(&address(Some("buildkitd")), &env()).unwrap();
        assert_eq!(
            spec,
            DialSpec::spawn(
                "podman",
                ["exec", "-i", "--", "buildkitd", "buildctl", "dial-stdio"]
                    .map(String::from)
                    .into()
            )
        );
    }

    #[test]
    fn describe_declares_only_the_podman_program() {
        let caps = PodmanContainer::INFO.capabilities;
        assert_eq!(caps.programs, ["podman"]);
        assert!(caps.env.is_empty() && caps.folders.is_empty() && !caps.docker_engine);
    }

    #[test]
    fn hostile_addresses_are_refused() {
        let long = "a".repeat(300);
        let cases = [
            (None, "needs a container name"),
            (Some(""), "needs a container name"),
            (Some("-x"), "container name `-x` must not start with `-`"),
            (Some("--latest"), "must not start with `-`"),
            (Some("a;id"), "contains `;`"),
            (Some("%2Dx"), "contains `%`"),
            (Some("a&b"), "contains `&`"),
            (Some("a>b"), "contains `>`"),
            (Some("a'b"), "contains `'`"),
            (Some("a\"b"), "contains `\"`"),
            (Some("a b"), "contains ` `"),
            (Some("a\tb"), "control character"),
            (Some("a/../b"), "contains `/`"),
            (Some(long.as_str()), "the limit is 255"),
        ];
        for (host, needle) in cases {
            let err = run::<PodmanContainer>(&address(host), &env()).unwrap_err();
            assert_eq!(err.kind(), "invalid-address", "{host:?}: {err}");
            assert!(err.message().contains(needle), "{host:?}: {err}");
        }

        let mut a = address(Some("bk"));
        a.query = vec![("exec".into(), "--privileged".into())];
        let err = run::<PodmanContainer>(&a, &env()).unwrap_err();
        assert!(err.message().contains("take no query parameters"), "{err}");
        let mut a = address(Some("bk"));
        a.path = "/x".into();
        assert!(run::<PodmanContainer>(&a, &env()).is_err());
    }
}
