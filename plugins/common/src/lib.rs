//! What copa's connector plugins share: the plain mirrors of the WIT types,
//! the naming rules of the tools that receive names, query parsing, Docker
//! endpoint and context resolution, and the glue that exports a plugin as a
//! `copa:connector` component.
//!
//! A plugin implements [`Connector`] in plain Rust and calls
//! [`export_connector!`]; its logic then builds and is tested natively, and
//! only the glue is compiled for `wasm32` alone. Nothing here dials, spawns
//! or writes: a plugin only reads what it declared and returns a dial spec.

#![forbid(unsafe_code)]

pub mod address;
pub mod docker;
pub mod env;
pub mod names;
pub mod spec;

pub use address::Query;
pub use env::Env;
pub use spec::{
    Address, Capabilities, DialSpec, DockerExecTarget, Origin, PluginInfo, ResolveError,
    SpawnTarget, TcpTarget, invalid,
};

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The command that turns a process's stdin and stdout into a BuildKit
/// connection, run in a container or on a remote host.
pub const DIAL_STDIO: [&str; 2] = ["buildctl", "dial-stdio"];

/// A connector plugin, in plain Rust.
pub trait Connector {
    /// What the plugin is and what it needs.
    const INFO: PluginInfo;

    /// Turns an address of one of [`INFO`](Self::INFO)'s schemes into a dial
    /// spec, reading only what `INFO` declares, through `env`.
    fn resolve(address: &Address, env: &dyn Env) -> Result<DialSpec, ResolveError>;
}

/// Resolves an address with connector `C` after the checks every plugin
/// makes: the scheme is one of `C`'s, and [`address::preflight`] passes.
pub fn run<C: Connector>(address: &Address, env: &dyn Env) -> Result<DialSpec, ResolveError> {
    if !C::INFO.schemes.contains(&address.scheme.as_str()) {
        return Err(invalid(format!(
            "the `{}` plugin does not serve `{}://` addresses",
            C::INFO.name,
            names::shown(&address.scheme).trim_matches('`')
        )));
    }
    address::preflight(address)?;
    C::resolve(address, env)
}

/// Exports a [`Connector`] as the `copa:connector/connector` interface of a
/// WebAssembly component. Expands to nothing outside `wasm32`, so the plugin
/// crate builds and tests natively.
///
/// The bindings come from `../../wit` relative to the plugin crate, which is
/// where `plugins/<name>/` finds the repository's `wit/` folder.
#[macro_export]
macro_rules! export_connector {
    ($connector:ident) => {
        #[cfg(target_arch = "wasm32")]
        mod wit_bindings {
            $crate::__wit_bindgen::generate!({
                path: "../../wit",
                world: "plugin",
                runtime_path: "::copa_plugin_common::__wit_bindgen::rt",
            });

            use self::copa::connector::types as wit;
            use $crate::spec as plain;

            struct Component;

            impl self::exports::copa::connector::connector::Guest for Component {
                fn describe() -> wit::PluginInfo {
                    let info = <super::$connector as $crate::Connector>::INFO;
                    let strings =
                        |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
                    wit::PluginInfo {
                        name: info.name.into(),
                        version: info.version.into(),
                        schemes: strings(info.schemes),
                        summary: info.summary.into(),
                        capabilities: wit::Capabilities {
                            env: strings(info.capabilities.env),
                            folders: strings(info.capabilities.folders),
                            programs: strings(info.capabilities.programs),
                            docker_engine: info.capabilities.docker_engine,
                        },
                    }
                }

                fn resolve(address: wit::Address) -> Result<wit::DialSpec, wit::ResolveError> {
                    let address = plain::Address {
                        raw: address.raw,
                        scheme: address.scheme,
                        username: address.username,
                        host: address.host,
                        port: address.port,
                        path: address.path,
                        query: address.query,
                    };
                    let declared = <super::$connector as $crate::Connector>::INFO.capabilities.env;
                    let env = $crate::env::SystemEnv::new(declared);
                    match $crate::run::<super::$connector>(&address, &env) {
                        Ok(spec) => Ok(dial_spec(spec)),
                        Err(error) => Err(resolve_error(error)),
                    }
                }
            }

            fn dial_spec(spec: plain::DialSpec) -> wit::DialSpec {
                match spec {
                    plain::DialSpec::Unix(path) => wit::DialSpec::Unix(path),
                    plain::DialSpec::Tcp(t) => wit::DialSpec::Tcp(wit::TcpTarget {
                        host: t.host,
                        port: t.port,
                    }),
                    plain::DialSpec::Spawn(s) => wit::DialSpec::Spawn(wit::SpawnTarget {
                        program: s.program,
                        args: s.args,
                        env: s.env,
                    }),
                    plain::DialSpec::DockerGrpc(endpoint) => wit::DialSpec::DockerGrpc(endpoint),
                    plain::DialSpec::DockerExec(e) => {
                        wit::DialSpec::DockerExec(wit::DockerExecTarget {
                            endpoint: e.endpoint,
                            container: e.container,
                            command: e.command,
                        })
                    }
                }
            }

            fn resolve_error(error: plain::ResolveError) -> wit::ResolveError {
                match error {
                    plain::ResolveError::InvalidAddress(m) => wit::ResolveError::InvalidAddress(m),
                    plain::ResolveError::NotFound(m) => wit::ResolveError::NotFound(m),
                    plain::ResolveError::Unsupported(m) => wit::ResolveError::Unsupported(m),
                    plain::ResolveError::Environment(m) => wit::ResolveError::Environment(m),
                }
            }

            export!(Component);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Connector for Echo {
        const INFO: PluginInfo = PluginInfo {
            name: "echo",
            version: "0",
            schemes: &["echo"],
            summary: "echoes",
            capabilities: Capabilities {
                env: &[],
                folders: &[],
                programs: &[],
                docker_engine: false,
            },
        };

        fn resolve(address: &Address, _env: &dyn Env) -> Result<DialSpec, ResolveError> {
            Ok(DialSpec::Unix(address.path.clone()))
        }
    }

    fn address(raw: &str, scheme: &str) -> Address {
        Address {
            raw: raw.into(),
            scheme: scheme.into(),
            path: "/p".into(),
            ..Address::default()
        }
    }

    #[test]
    fn run_refuses_a_scheme_the_plugin_does_not_serve() {
        let env = env::SystemEnv::new(&[]);
        assert_eq!(
            run::<Echo>(&address("other://x", "other"), &env),
            Err(invalid(
                "the `echo` plugin does not serve `other://` addresses"
            ))
        );
        assert_eq!(
            run::<Echo>(&address("echo:///p", "echo"), &env),
            Ok(DialSpec::Unix("/p".into()))
        );
    }

    #[test]
    fn run_applies_the_preflight_checks() {
        let env = env::SystemEnv::new(&[]);
        assert!(run::<Echo>(&address("echo:///p#frag", "echo"), &env).is_err());
    }
}
