//! The `nerdctl-container://NAME[?namespace=NS]` connector: a buildkitd
//! running in a containerd container, reached by having the host spawn
//! `nerdctl [--namespace=NS] exec -i -- NAME buildctl dial-stdio`.
//!
//! It must never return anything but a spawn of `nerdctl` with exactly those
//! arguments, never pass on a container name or namespace outside the
//! container and containerd naming rules (the namespace goes in a single
//! `--namespace=NS` argument, so it can never become a flag of its own), and
//! never accept a query parameter other than `namespace`. It reads nothing.

use copa_plugin_common::address::{no_path, no_port, no_username};
use copa_plugin_common::names;
use copa_plugin_common::{
    Address, Capabilities, Connector, DIAL_STDIO, DialSpec, Env, PluginInfo, Query, ResolveError,
    export_connector, invalid,
};

/// The `nerdctl-container://` connector.
pub struct NerdctlContainer;

/// The program the host spawns.
const NERDCTL: &str = "nerdctl";

impl Connector for NerdctlContainer {
    const INFO: PluginInfo = PluginInfo {
        name: "nerdctl-container",
        version: env!("CARGO_PKG_VERSION"),
        schemes: &["nerdctl-container"],
        summary: "a buildkitd in a containerd container, through `nerdctl exec`",
        capabilities: Capabilities {
            env: &[],
            folders: &[],
            programs: &[NERDCTL],
            docker_engine: false,
        },
    };

    fn resolve(address: &Address, _env: &dyn Env) -> Result<DialSpec, ResolveError> {
        no_username(address)?;
        no_port(address)?;
        no_path(address)?;
        let query = Query::parse(address, &["namespace"])?;
        let Some(container) = address.host() else {
            return Err(invalid(
                "`nerdctl-container://` needs a container name, as in `nerdctl-container://buildkitd`",
            ));
        };
        names::container_name("container name", container).map_err(invalid)?;
        let namespace = query.get("namespace");
        if let Some(namespace) = namespace {
            names::containerd_namespace("namespace", namespace).map_err(invalid)?;
        }

        let mut args = Vec::new();
        if let Some(namespace) = namespace {
            args.push(format!("--namespace={namespace}"));
        }
        args.extend(["exec", "-i", "--", container].map(String::from));
        args.extend(DIAL_STDIO.map(String::from));
        Ok(DialSpec::spawn(NERDCTL, args))
    }
}

export_connector!(NerdctlContainer);

#[cfg(test)]
mod tests {
    use super::*;
    use copa_plugin_common::env::fake::FakeEnv;
    use copa_plugin_common::run;

    /// A host, query parameters and a fragment of the expected message.
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);

    fn address(host: Option<&str>, query: &[(&str, &str)]) -> Address {
        Address::for_test("nerdctl-container", host, query)
    }

    fn env() -> FakeEnv {
        FakeEnv::new(&NerdctlContainer::INFO.capabilities)
    }

    fn spawn(args: &[&str]) -> Result<DialSpec, ResolveError> {
        Ok(DialSpec::spawn(
            "nerdctl",
            args.iter().map(|a| a.to_string()).collect(),
        ))
    }

    #[test]
    fn without_a_namespace_the_flag_is_left_out() {
        assert_eq!(
            run::<NerdctlContainer>(&address(Some("buildkitd"), &[]), &env()),
            spawn(&["exec", "-i", "--", "buildkitd", "buildctl", "dial-stdio"])
        );
    }

    #[test]
    fn a_namespace_goes_in_one_argument_before_exec() {
        let a = address(Some("bk"), &[("namespace", "k8s.io")]);
        assert_eq!(
            run::<NerdctlContainer>(&a, &env()),
            spawn(&[
                "--namespace=k8s.io",
                "exec",
                "-i",
                "--",
                "bk",
                "buildctl",
                "dial-stdio"
            ])
        );
    }

    #[test]
    fn describe_declares_only_the_nerdctl_program() {
        let caps = NerdctlContainer::INFO.capabilities;
        assert_eq!(caps.programs, ["nerdctl"]);
        assert!(caps.env.is_empty() && caps.folders.is_empty() && !caps.docker_engine);
    }

    #[test]
    fn hostile_addresses_are_refused() {
        let long_ns = "n".repeat(77);
        let cases: &[Case] = &[
            (None, &[], "needs a container name"),
            (
                Some("-it"),
                &[],
                "container name `-it` must not start with `-`",
            ),
            (Some("a;id"), &[], "contains `;`"),
            (Some("%2D%2Dhelp"), &[], "contains `%`"),
            (Some("a\nb"), &[], "control character"),
            (
                Some("bk"),
                &[("namespace", "--address=/tmp/x.sock")],
                "must not start with `-`",
            ),
            (Some("bk"), &[("namespace", "a b")], "contains ` `"),
            (Some("bk"), &[("namespace", "../x")], "contains `/`"),
            (Some("bk"), &[("namespace", "a..b")], "single `.`"),
            (Some("bk"), &[("namespace", "a$b")], "contains `$`"),
            (Some("bk"), &[("namespace", &long_ns)], "the limit is 76"),
            (Some("bk"), &[("namespace", "")], "is empty"),
            (
                Some("bk"),
                &[("address", "/run/x.sock")],
                "unknown query parameter `address`",
            ),
            (
                Some("bk"),
                &[("namespace", "a"), ("namespace", "b")],
                "more than once",
            ),
        ];
        for (host, query, needle) in cases {
            let err = run::<NerdctlContainer>(&address(*host, query), &env()).unwrap_err();
            assert_eq!(err.kind(), "invalid-address", "{host:?} {query:?}: {err}");
            assert!(err.message().contains(needle), "{host:?} {query:?}: {err}");
        }
    }
}
