//! The `ssh://[USER@]HOST[:PORT][/SOCKET]` connector: a buildkitd on another
//! host, reached by having the host spawn the ssh client, which runs
//! `buildctl [--addr 'unix://SOCKET'] dial-stdio` there:
//! `ssh [-l USER] [-p PORT] -T -- HOST buildctl [--addr 'unix://SOCKET'] dial-stdio`.
//!
//! ssh hands the remote command to the remote user's shell as one line, so
//! the socket path is checked against a plain charset (no quote, no shell
//! metacharacter, no `..`) and single-quoted as well; BuildKit's own helper
//! appends it unquoted. The host and user can never become ssh options: they
//! may not start with `-`, follow `--` and `-l`, and hold only name
//! characters (an IPv6 literal is accepted as such).
//!
//! It must never return anything but a spawn of `ssh` with those arguments,
//! never accept a password, query parameters or a fragment, and it reads
//! nothing: no variable, no file.

use std::net::Ipv6Addr;

use copa_plugin_common::names::{self, MAX_NAME, shown};
use copa_plugin_common::{
    Address, Capabilities, Connector, DialSpec, Env, PluginInfo, Query, ResolveError,
    export_connector, invalid,
};

/// The `ssh://` connector.
pub struct Ssh;

/// The program the host spawns.
const SSH: &str = "ssh";

/// The longest user name accepted.
pub const MAX_USER: usize = 256;

/// The longest unix socket path (the size of `sun_path` on Linux).
pub const MAX_SOCKET_PATH: usize = 108;

impl Connector for Ssh {
    const INFO: PluginInfo = PluginInfo {
        name: "ssh",
        version: env!("CARGO_PKG_VERSION"),
        schemes: &["ssh"],
        summary: "a buildkitd on another host, through the ssh client and `buildctl dial-stdio`",
        capabilities: Capabilities {
            env: &[],
            folders: &[],
            programs: &[SSH],
            docker_engine: false,
        },
    };

    fn resolve(address: &Address, _env: &dyn Env) -> Result<DialSpec, ResolveError> {
        Query::parse(address, &[])?;
        refuse_password(&address.raw)?;
        let Some(host) = address.host() else {
            return Err(invalid(
                "`ssh://` needs a host, as in `ssh://me@build-host`",
            ));
        };
        let host = check_host(host)?;
        let user = address.username();
        if let Some(user) = user {
            check_user(user)?;
        }
        if address.port == Some(0) {
            return Err(invalid("ssh port `0` is not a port"));
        }
        let socket = socket_path(&address.path)?;

        let mut args = Vec::new();
        if let Some(user) = user {
            args.extend(["-l".to_owned(), user.to_owned()]);
        }
        if let Some(port) = address.port {
            args.extend(["-p".to_owned(), port.to_string()]);
        }
        args.extend(["-T", "--", &host, "buildctl"].map(String::from));
        if let Some(socket) = socket {
            args.extend(["--addr".to_owned(), format!("'unix://{socket}'")]);
        }
        args.push("dial-stdio".to_owned());
        Ok(DialSpec::spawn(SSH, args))
    }
}

/// Refuses `ssh://user:password@host`: the host's parsed address has no
/// password field, so the raw text is checked.
fn refuse_password(raw: &str) -> Result<(), ResolveError> {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        return Err(invalid(
            "`ssh://` addresses take no password; use a key or an ssh agent",
        ));
    }
    Ok(())
}

/// Checks the host: an IPv6 literal (with or without brackets), or a host
/// name or ssh_config alias of letters, digits, `.`, `-` and `_` not starting
/// with `-`. Returns it as ssh takes it (IPv6 without brackets).
fn check_host(host: &str) -> Result<String, ResolveError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.contains(':') {
        return match bare.parse::<Ipv6Addr>() {
            Ok(_) => Ok(bare.to_owned()),
            Err(_) => Err(invalid(format!(
                "ssh host {} is not a valid IPv6 address",
                shown(host)
            ))),
        };
    }

    names::basic("ssh host", bare, MAX_NAME).map_err(invalid)?;
    match bare
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        Some(c) => Err(invalid(format!(
            "ssh host {} contains {}; a host holds only letters, digits, `.`, `-` and `_`",
            shown(bare),
            shown(c.encode_utf8(&mut [0; 4]))
        ))),
        None => Ok(bare.to_owned()),
    }
}

/// Checks the user: letters, digits, `.`, `_`, `-` and `@`, not starting
/// with `-`.
fn check_user(user: &str) -> Result<(), ResolveError> {
    names::basic("ssh user", user, MAX_USER).map_err(invalid)?;
    match user
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@')))
    {
        Some(c) => Err(invalid(format!(
            "ssh user {} contains {}; a user holds only letters, digits, `.`, `_`, `-` and `@`",
            shown(user),
            shown(c.encode_utf8(&mut [0; 4]))
        ))),
        None => Ok(()),
    }
}

/// The remote socket path, `None` when the address has no path (or `/`).
/// Absolute, at most 108 bytes, only `[A-Za-z0-9._/+-]`, no `.` or `..`
/// component: safe inside single quotes in a remote shell command.
fn socket_path(path: &str) -> Result<Option<&str>, ResolveError> {
    if path.is_empty() || path == "/" {
        return Ok(None);
    }
    let what = "remote socket path";
    names::basic(what, path, MAX_SOCKET_PATH).map_err(invalid)?;
    if !path.starts_with('/') {
        return Err(invalid(format!("{what} {} is not absolute", shown(path))));
    }
    if let Some(c) = path
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '-')))
    {
        return Err(invalid(format!(
            "{what} {} contains {}; a socket path holds only letters, digits, `.`, `_`, `/`, `+` and `-`",
            shown(path),
            shown(c.encode_utf8(&mut [0; 4]))
        )));
    }
    if path.split('/').any(|part| part == "." || part == "..") {
        return Err(invalid(format!(
            "{what} {} has a `.` or `..` component",
            shown(path)
        )));
    }
    Ok(Some(path))
}

export_connector!(Ssh);

#[cfg(test)]
mod tests {
    use super::*;
    use copa_plugin_common::env::fake::FakeEnv;
    use copa_plugin_common::run;

    /// A user, host, port, path and a fragment of the expected message.
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<u16>,
        &'a str,
        &'a str,
    );

    fn address(
        raw: &str,
        user: Option<&str>,
        host: Option<&str>,
        port: Option<u16>,
        path: &str,
    ) -> Address {
        Address {
            raw: raw.into(),
            scheme: "ssh".into(),
            username: user.map(String::from),
            host: host.map(String::from),
            port,
            path: path.into(),
            query: Vec::new(),
        }
    }

    fn args(spec: DialSpec) -> Vec<String> {
        match spec {
            DialSpec::Spawn(s) => {
                assert_eq!(s.program, "ssh");
                assert!(s.env.is_empty());
                s.args
            }
            other => panic!("not a spawn: {other:?}"),
        }
    }

    fn env() -> FakeEnv {
        FakeEnv::new(&Ssh::INFO.capabilities)
    }

    #[test]
    fn a_bare_host_runs_dial_stdio_after_a_flag_terminator() {
        let spec = run::<Ssh>(
            &address("ssh://build", None, Some("build"), None, ""),
            &env(),
        );
        assert_eq!(
            args(spec.unwrap()),
            ["-T", "--", "build", "buildctl", "dial-stdio"]
        );
    }

    #[test]
    fn user_port_and_socket_are_passed_on_with_the_socket_quoted() {
        let a = address(
            "ssh://me@build:2222/run/buildkit/buildkitd.sock",
            Some("me"),
            Some("build"),
            Some(2222),
            "/run/buildkit/buildkitd.sock",
        );
        assert_eq!(
            args(run::<Ssh>(&a, &env()).unwrap()),
            [
                "-l",
                "me",
                "-p",
                "2222",
                "-T",
                "--",
                "build",
                "buildctl",
                "--addr",
                "'unix:///run/buildkit/buildkitd.sock'",
                "dial-stdio"
            ]
        );
    }

    #[test]
    fn ipv6_literals_are_passed_without_brackets() {
        for host in ["[::1]", "::1"] {
            let a = address("ssh://[::1]:22", None, Some(host), Some(22), "/");
            assert_eq!(
                args(run::<Ssh>(&a, &env()).unwrap()),
                ["-p", "22", "-T", "--", "::1", "buildctl", "dial-stdio"]
            );
        }
    }

    #[test]
    fn describe_declares_only_the_ssh_program() {
        let caps = Ssh::INFO.capabilities;
        assert_eq!(caps.programs, ["ssh"]);
        assert!(caps.env.is_empty() && caps.folders.is_empty() && !caps.docker_engine);
    }

    #[test]
    fn hostile_addresses_are_refused() {
        let long_host = "h".repeat(254);
        let long_path = format!("/{}", "s".repeat(108));
        let cases: &[Case] = &[
            (None, None, None, "", "needs a host"),
            (
                None,
                Some("-oProxyCommand=sh"),
                None,
                "",
                "ssh host `-oProxyCommand=sh` must not start with `-`",
            ),
            (None, Some("h;reboot"), None, "", "contains `;`"),
            (None, Some("h|id"), None, "", "contains `|`"),
            (None, Some("h&id"), None, "", "contains `&`"),
            (None, Some("h$(id)"), None, "", "contains `$`"),
            (None, Some("h`id`"), None, "", "contains `\\``"),
            (None, Some("h id"), None, "", "contains ` `"),
            (None, Some("h\nid"), None, "", "control character"),
            (None, Some("h\0"), None, "", "control character"),
            (None, Some("a@b"), None, "", "contains `@`"),
            (None, Some("[::g]"), None, "", "not a valid IPv6"),
            (None, Some("h%"), None, "", "contains `%`"),
            (None, Some(&long_host), None, "", "the limit is 253"),
            (
                Some("-oProxyCommand=x"),
                Some("h"),
                None,
                "",
                "ssh user `-oProxyCommand=x` must not start with `-`",
            ),
            (Some("me;id"), Some("h"), None, "", "contains `;`"),
            (Some("me id"), Some("h"), None, "", "contains ` `"),
            (Some("me'"), Some("h"), None, "", "contains `'`"),
            (None, Some("h"), Some(0), "", "not a port"),
            (None, Some("h"), None, "/run/x';reboot;'", "contains `'`"),
            (None, Some("h"), None, "/run/x sock", "contains ` `"),
            (None, Some("h"), None, "/run/$(id).sock", "contains `$`"),
            (None, Some("h"), None, "/run/x\n.sock", "control character"),
            (
                None,
                Some("h"),
                None,
                "/run/../etc/x.sock",
                "`..` component",
            ),
            (None, Some("h"), None, "/run/./x.sock", "`.` or `..`"),
            (None, Some("h"), None, "/run/x\\y", "contains `\\`"),
            (None, Some("h"), None, &long_path, "the limit is 108"),
        ];
        for (user, host, port, path, needle) in cases {
            let a = address("ssh://x", *user, *host, *port, path);
            let err = run::<Ssh>(&a, &env()).unwrap_err();
            assert_eq!(err.kind(), "invalid-address", "{a:?}: {err}");
            assert!(err.message().contains(needle), "{a:?}: {err}");
            assert!(!err.message().contains('\n'), "{err}");
        }
    }

    #[test]
    fn passwords_query_parameters_and_fragments_are_refused() {
        let a = address("ssh://me:secret@h", Some("me"), Some("h"), None, "");
        let err = run::<Ssh>(&a, &env()).unwrap_err();
        assert!(err.message().contains("no password"), "{err}");

        let mut a = address("ssh://h?o=ProxyCommand", None, Some("h"), None, "");
        a.query = vec![("o".into(), "ProxyCommand=x".into())];
        let err = run::<Ssh>(&a, &env()).unwrap_err();
        assert!(err.message().contains("take no query parameters"), "{err}");

        let a = address("ssh://h#x", None, Some("h"), None, "");
        assert!(
            run::<Ssh>(&a, &env())
                .unwrap_err()
                .message()
                .contains("fragment")
        );

        // A colon after the `@` is a port, not a password.
        let a = address(
            "ssh://me@h:22/run/x.sock",
            Some("me"),
            Some("h"),
            Some(22),
            "/run/x.sock",
        );
        assert!(run::<Ssh>(&a, &env()).is_ok());
    }
}
