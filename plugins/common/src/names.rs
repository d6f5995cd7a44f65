//! The naming rules of the tools that receive what a plugin passes on.
//!
//! Each check returns a one-line message naming the offending value (escaped
//! and shortened by [`shown`], since the value is untrusted) so the caller can
//! wrap it in the error kind that fits where the value came from: the address
//! (`invalid-address`) or the environment (`environment`).
//!
//! No rule here accepts a value that starts with `-`, holds a control
//! character or is longer than its limit, whatever the tool would accept.

/// The longest container name or ID accepted (Docker sets no limit; a full ID
/// is 64 characters).
pub const MAX_CONTAINER_NAME: usize = 255;

/// The longest containerd namespace (containerd's identifier limit).
pub const MAX_CONTAINERD_NAMESPACE: usize = 76;

/// The longest Kubernetes DNS label (RFC 1123): namespaces, container names.
pub const MAX_DNS_LABEL: usize = 63;

/// The longest Kubernetes DNS subdomain (RFC 1123): pod names.
pub const MAX_DNS_SUBDOMAIN: usize = 253;

/// The longest free-text name (a kubeconfig context, a Docker context, a
/// buildx builder or node, a host name).
pub const MAX_NAME: usize = 253;

/// The longest file path.
pub const MAX_PATH: usize = 4096;

/// How many characters of an untrusted value an error message shows.
const SHOWN_CHARS: usize = 64;

/// An untrusted value for an error message: in backticks, everything but
/// printable ASCII escaped (so the message stays one line and cannot steer a
/// terminal), cut after 64 characters.
pub fn shown(value: &str) -> String {
    let mut out = String::from("`");
    for (i, c) in value.chars().enumerate() {
        if i == SHOWN_CHARS {
            out.push('…');
            break;
        }
        match c {
            '`' => out.push_str("\\`"),
            ' ' => out.push(' '),
            c if c.is_ascii_graphic() => out.push(c),
            c => out.extend(c.escape_debug()),
        }
    }
    out.push('`');
    out
}

/// The checks every name gets: not empty, not too long, no control
/// character, no leading `-`.
pub fn basic(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > max {
        return Err(format!(
            "{what} {} is {} bytes long; the limit is {max}",
            shown(value),
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{what} {} contains a control character",
            shown(value)
        ));
    }
    if value.starts_with('-') {
        return Err(format!("{what} {} must not start with `-`", shown(value)));
    }
    Ok(())
}

/// Checks that every character of `value` satisfies `allowed`, naming the
/// first that does not; `rule` says in words what is allowed.
fn only(what: &str, value: &str, allowed: impl Fn(char) -> bool, rule: &str) -> Result<(), String> {
    match value.chars().find(|&c| !allowed(c)) {
        Some(c) => Err(format!(
            "{what} {} contains {}; {rule}",
            shown(value),
            shown(c.encode_utf8(&mut [0; 4]))
        )),
        None => Ok(()),
    }
}

/// A Docker, Podman or nerdctl container name or ID:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, which covers full and short hex IDs.
pub fn container_name(what: &str, value: &str) -> Result<(), String> {
    basic(what, value, MAX_CONTAINER_NAME)?;
    only(
        what,
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
        "a container name holds only letters, digits, `_`, `.` and `-`",
    )?;
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{what} {} must start with a letter or a digit",
            shown(value)
        ));
    }
    Ok(())
}

/// A containerd namespace: letters and digits in runs joined by single `.`,
/// `_` or `-`, at most 76 characters.
pub fn containerd_namespace(what: &str, value: &str) -> Result<(), String> {
    basic(what, value, MAX_CONTAINERD_NAMESPACE)?;
    only(
        what,
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
        "a containerd namespace holds only letters, digits, `_`, `.` and `-`",
    )?;
    let is_sep = |c: char| matches!(c, '_' | '.' | '-');
    let bad_run = value
        .as_bytes()
        .windows(2)
        .any(|w| is_sep(w[0] as char) && is_sep(w[1] as char));
    if value.starts_with(is_sep) || value.ends_with(is_sep) || bad_run {
        return Err(format!(
            "{what} {} must start and end with a letter or digit, with single `.`, `_` or `-` between them",
            shown(value)
        ));
    }
    Ok(())
}

/// A Kubernetes DNS label (RFC 1123): lower-case letters, digits and `-`,
/// starting and ending with a letter or digit, at most 63 characters.
pub fn dns_label(what: &str, value: &str) -> Result<(), String> {
    basic(what, value, MAX_DNS_LABEL)?;
    only(
        what,
        value,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "Kubernetes allows only lower-case letters, digits and `-` here",
    )?;
    label_edges(what, value, value)
}

/// A Kubernetes DNS subdomain (RFC 1123): DNS labels joined by `.`, at most
/// 253 characters.
pub fn dns_subdomain(what: &str, value: &str) -> Result<(), String> {
    basic(what, value, MAX_DNS_SUBDOMAIN)?;
    only(
        what,
        value,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'),
        "Kubernetes allows only lower-case letters, digits, `-` and `.` here",
    )?;
    for label in value.split('.') {
        if label.len() > MAX_DNS_LABEL {
            return Err(format!(
                "{what} {} has a part longer than {MAX_DNS_LABEL} characters",
                shown(value)
            ));
        }
        label_edges(what, value, label)?;
    }
    Ok(())
}

fn label_edges(what: &str, whole: &str, label: &str) -> Result<(), String> {
    let edge_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !label.starts_with(edge_ok) || !label.ends_with(edge_ok) {
        return Err(format!(
            "{what} {} must start and end with a lower-case letter or digit (around each `.` too)",
            shown(whole)
        ));
    }
    Ok(())
}

/// A buildx builder or node name: `[a-zA-Z][a-zA-Z0-9._-]*`. Returns it in
/// lower case, as buildx stores it.
pub fn buildx_name(what: &str, value: &str) -> Result<String, String> {
    basic(what, value, MAX_NAME)?;
    only(
        what,
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
        "a buildx name holds only letters, digits, `_`, `.` and `-`",
    )?;
    if !value.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("{what} {} must start with a letter", shown(value)));
    }
    Ok(value.to_ascii_lowercase())
}

/// A Docker context name: `[a-zA-Z0-9][a-zA-Z0-9_.+-]*`.
pub fn docker_context_name(what: &str, value: &str) -> Result<(), String> {
    basic(what, value, MAX_NAME)?;
    only(
        what,
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'),
        "a Docker context name holds only letters, digits, `_`, `.`, `+` and `-`",
    )?;
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{what} {} must start with a letter or a digit",
            shown(value)
        ));
    }
    Ok(())
}

/// Free text passed as the value of a single `--flag=value` argument (a
/// kubeconfig context): printable ASCII, spaces included.
pub fn printable(what: &str, value: &str, max: usize) -> Result<(), String> {
    basic(what, value, max)?;
    only(
        what,
        value,
        |c| c == ' ' || c.is_ascii_graphic(),
        "only printable ASCII is accepted",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_control_characters_and_backticks_and_cuts_long_values() {
        assert_eq!(shown("a\nb\0c"), "`a\\nb\\0c`");
        assert_eq!(shown("a`b"), "`a\\`b`");
        let long = "x".repeat(100);
        assert_eq!(shown(&long), format!("`{}…`", "x".repeat(64)));
    }

    #[test]
    fn container_names_follow_dockers_rule() {
        for ok in ["buildkitd", "a", "b1.2_3-4", &"f".repeat(64), "0abc"] {
            assert_eq!(container_name("container name", ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "container name is empty"),
            ("-x", "container name `-x` must not start with `-`"),
            (
                "_x",
                "container name `_x` must start with a letter or a digit",
            ),
            (
                ".x",
                "container name `.x` must start with a letter or a digit",
            ),
            (
                "a b",
                "container name `a b` contains ` `; a container name holds only letters, digits, `_`, `.` and `-`",
            ),
            (
                "a/../b",
                "container name `a/../b` contains `/`; a container name holds only letters, digits, `_`, `.` and `-`",
            ),
            (
                "a\nb",
                "container name `a\\nb` contains a control character",
            ),
        ];
        for (bad, message) in cases {
            assert_eq!(
                container_name("container name", bad),
                Err(message.to_owned())
            );
        }
        assert!(
            container_name("n", &"a".repeat(256))
                .unwrap_err()
                .contains("the limit is 255")
        );
    }

    #[test]
    fn containerd_namespaces_follow_containerds_rule() {
        for ok in ["default", "k8s.io", "a_b-c.d", "A1", &"a".repeat(76)] {
            assert_eq!(containerd_namespace("namespace", ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a.-b",
            ".a",
            "a b",
            "a/b",
            &"a".repeat(77),
        ] {
            assert!(containerd_namespace("namespace", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_labels_and_subdomains_follow_rfc_1123() {
        for ok in ["buildkitd", "a", "a-b", "0a", &"a".repeat(63)] {
            assert_eq!(dns_label("label", ok), Ok(()), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            assert!(dns_label("label", bad).is_err(), "{bad}");
        }
        for ok in ["buildkitd-0", "a.b.c", "buildkit-7d9f-x2"] {
            assert_eq!(dns_subdomain("pod", ok), Ok(()), "{ok}");
        }
        for bad in [
            "a..b",
            ".a",
            "a.",
            "a.-b",
            "Pod",
            &format!("{}.b", "a".repeat(64)),
        ] {
            assert!(dns_subdomain("pod", bad).is_err(), "{bad}");
        }
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        assert!(
            dns_subdomain("pod", &long)
                .unwrap_err()
                .contains("the limit is 253")
        );
    }

    #[test]
    fn buildx_names_start_with_a_letter_and_are_lowered() {
        assert_eq!(
            buildx_name("builder", "My.Builder_1-x"),
            Ok("my.builder_1-x".into())
        );
        for bad in ["", "1abc", "-a", "_a", "a+b", "a/b", "a b", "a\u{0}"] {
            assert!(buildx_name("builder", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_context_names_follow_dockers_rule() {
        for ok in ["default", "prod+1", "a_b.c-d", "0"] {
            assert_eq!(docker_context_name("context", ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "../x", "a b"] {
            assert!(docker_context_name("context", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn printable_text_refuses_control_and_non_ascii_characters() {
        assert_eq!(
            printable("context", "arn:aws:eks:x:1:cluster/a b", 253),
            Ok(())
        );
        for bad in ["", "-x", "a\tb", "a\u{202e}b", "é"] {
            assert!(printable("context", bad, 253).is_err(), "{bad}");
        }
    }
}
