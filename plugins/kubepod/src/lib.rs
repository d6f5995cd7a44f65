//! The `kubepod://POD?context=C&namespace=N&container=K` connector (also
//! spelled `kube-pod://`): a buildkitd in a Kubernetes pod, reached by having
//! the host spawn
//! `kubectl [--context=C] [--namespace=N] exec -i [--container=K] POD -- buildctl dial-stdio`.
//!
//! The pod, namespace and container follow Kubernetes' own naming rules
//! (RFC 1123 subdomain and labels), so none can start with `-`; the context,
//! which kubeconfig leaves free, must be printable ASCII and not start with
//! `-`. Every option is a single `--flag=value` argument, so no value can
//! become a flag of its own.
//!
//! It must never return anything but a spawn of `kubectl` with those
//! arguments, never accept a query parameter besides `context`, `namespace`
//! and `container`, and it reads nothing: no variable, no file. (There is no
//! cluster on the project's machines: this is tested down to the command line
//! and through a stand-in `kubectl`.)

use copa_plugin_common::address::{no_path, no_port, no_username};
use copa_plugin_common::names::{self, MAX_NAME};
use copa_plugin_common::{
    Address, Capabilities, Connector, DIAL_STDIO, DialSpec, Env, PluginInfo, Query, ResolveError,
    export_connector, invalid,
};

/// The `kubepod://` connector.
pub struct KubePod;

/// The program the host spawns.
const KUBECTL: &str = "kubectl";

impl Connector for KubePod {
    const INFO: PluginInfo = PluginInfo {
        name: "kubepod",
        version: env!("CARGO_PKG_VERSION"),
        schemes: &["kubepod", "kube-pod"],
        summary: "a buildkitd in a Kubernetes pod, through `kubectl exec`",
        capabilities: Capabilities {
            env: &[],
            folders: &[],
            programs: &[KUBECTL],
            docker_engine: false,
        },
    };

    fn resolve(address: &Address, _env: &dyn Env) -> Result<DialSpec, ResolveError> {
        no_username(address)?;
        no_port(address)?;
        no_path(address)?;
        let query = Query::parse(address, &["context", "namespace", "container"])?;
        let Some(pod) = address.host() else {
            return Err(invalid(format!(
                "`{}://` needs a pod name, as in `kubepod://buildkitd-0?namespace=buildkit`",
                address.scheme
            )));
        };
        names::dns_subdomain("pod name", pod).map_err(invalid)?;
        let context = query.get("context");
        if let Some(context) = context {
            names::printable("kubeconfig context", context, MAX_NAME).map_err(invalid)?;
        }
        let namespace = query.get("namespace");
        if let Some(namespace) = namespace {
            names::dns_label("namespace", namespace).map_err(invalid)?;
        }
        let container = query.get("container");
        if let Some(container) = container {
            names::dns_label("container name", container).map_err(invalid)?;
        }

        let mut args = Vec::new();
        args.extend(context.map(|c| format!("--context={c}")));
        args.extend(namespace.map(|n| format!("--namespace={n}")));
        args.extend(["exec".to_owned(), "-i".to_owned()]);
        args.extend(container.map(|k| format!("--container={k}")));
        args.extend([pod.to_owned(), "--".to_owned()]);
        args.extend(DIAL_STDIO.map(String::from));
        Ok(DialSpec::spawn(KUBECTL, args))
    }
}

export_connector!(KubePod);

#[cfg(test)]
mod tests {
    use super::*;
    use copa_plugin_common::env::fake::FakeEnv;
    use copa_plugin_common::run;

    /// A host, query parameters and a fragment of the expected message.
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);

    fn address(scheme: &str, host: Option<&str>, query: &[(&str, &str)]) -> Address {
        Address::for_test(scheme, host, query)
    }

    fn env() -> FakeEnv {
        FakeEnv::new(&KubePod::INFO.capabilities)
    }

    fn spawn(args: &[&str]) -> Result<DialSpec, ResolveError> {
        Ok(DialSpec::spawn(
            "kubectl",
            args.iter().map(|a| a.to_string()).collect(),
        ))
    }

    #[test]
    fn a_bare_pod_uses_kubectls_defaults() {
        assert_eq!(
            run::<KubePod>(&address("kubepod", Some("buildkitd-0"), &[]), &env()),
            spawn(&["exec", "-i", "buildkitd-0", "--", "buildctl", "dial-stdio"])
        );
    }

    #[test]
    fn both_spellings_of_the_scheme_are_served() {
        let a = address("kube-pod", Some("bk"), &[]);
        assert!(run::<KubePod>(&a, &env()).is_ok());
    }

    #[test]
    fn every_option_is_one_flag_equals_value_argument() {
        let a = address(
            "kubepod",
            Some("buildkitd-7f9c.x"),
            &[
                ("context", "arn:aws:eks:eu-west-1:1:cluster/ci"),
                ("namespace", "buildkit"),
                ("container", "buildkitd"),
            ],
        );
        assert_eq!(
            run::<KubePod>(&a, &env()),
            spawn(&[
                "--context=arn:aws:eks:eu-west-1:1:cluster/ci",
                "--namespace=buildkit",
                "exec",
                "-i",
                "--container=buildkitd",
                "buildkitd-7f9c.x",
                "--",
                "buildctl",
                "dial-stdio"
            ])
        );
    }

    #[test]
    fn describe_declares_only_the_kubectl_program() {
        let caps = KubePod::INFO.capabilities;
        assert_eq!(caps.programs, ["kubectl"]);
        assert!(caps.env.is_empty() && caps.folders.is_empty() && !caps.docker_engine);
    }

    #[test]
    fn hostile_addresses_are_refused() {
        let long_pod = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        let long_ns = "n".repeat(64);
        let cases: &[Case] = &[
            (None, &[], "needs a pod name"),
            (Some("-it"), &[], "pod name `-it` must not start with `-`"),
            (Some("%2Dit"), &[], "contains `%`"),
            (Some("Pod"), &[], "contains `P`"),
            (Some("p;id"), &[], "contains `;`"),
            (Some("p_x"), &[], "contains `_`"),
            (Some("p/../x"), &[], "contains `/`"),
            (Some("p\nx"), &[], "control character"),
            (Some("p."), &[], "must start and end"),
            (Some(&long_pod), &[], "the limit is 253"),
            (
                Some("bk"),
                &[("namespace", "--kubeconfig=/tmp/evil")],
                "must not start with `-`",
            ),
            (Some("bk"), &[("namespace", "a.b")], "contains `.`"),
            (Some("bk"), &[("namespace", "kube system")], "contains ` `"),
            (Some("bk"), &[("namespace", &long_ns)], "the limit is 63"),
            (
                Some("bk"),
                &[("container", "-c")],
                "must not start with `-`",
            ),
            (Some("bk"), &[("container", "a$(id)")], "contains `$`"),
            (
                Some("bk"),
                &[("context", "--as=system:admin")],
                "must not start with `-`",
            ),
            (Some("bk"), &[("context", "a\tb")], "control character"),
            (Some("bk"), &[("context", "é")], "printable ASCII"),
            (
                Some("bk"),
                &[("kubeconfig", "/tmp/evil")],
                "unknown query parameter `kubeconfig`",
            ),
            (
                Some("bk"),
                &[("as", "system:admin")],
                "unknown query parameter `as`",
            ),
            (
                Some("bk"),
                &[("namespace", "a"), ("namespace", "b")],
                "more than once",
            ),
            (Some("bk"), &[("context", "")], "is empty"),
        ];
        for (host, query, needle) in cases {
            let err = run::<KubePod>(&address("kubepod", *host, query), &env()).unwrap_err();
            assert_eq!(err.kind(), "invalid-address", "{host:?} {query:?}: {err}");
            assert!(err.message().contains(needle), "{host:?} {query:?}: {err}");
            assert!(!err.message().contains('\n'), "{err}");
        }
    }
}
