//! Checks on the parts of an address that most plugins share: the raw text,
//! the parts a scheme does not use, and the query parameters.
//!
//! Everything here treats the address as hostile: a part a scheme has no use
//! for is refused rather than ignored, so nothing the user typed is silently
//! dropped, and every query parameter must be one the plugin knows.

use crate::names::{self, shown};
use crate::spec::{Address, ResolveError, invalid};

/// The longest address accepted.
pub const MAX_ADDRESS: usize = 8192;

/// The most query parameters accepted.
pub const MAX_QUERY_PARAMS: usize = 16;

/// The longest query parameter value accepted.
pub const MAX_QUERY_VALUE: usize = 1024;

/// The first checks on any address: a bounded length, no control character,
/// no fragment (`#…`), which no scheme uses.
pub fn preflight(address: &Address) -> Result<(), ResolveError> {
    let raw = &address.raw;
    if raw.len() > MAX_ADDRESS {
        return Err(invalid(format!(
            "address is {} bytes long; the limit is {MAX_ADDRESS}",
            raw.len()
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(invalid(format!(
            "address {} contains a control character",
            shown(raw)
        )));
    }
    if let Some((_, fragment)) = raw.split_once('#') {
        return Err(invalid(format!(
            "address {} has a fragment {}, which `{}://` does not use",
            shown(raw),
            shown(&format!("#{fragment}")),
            address.scheme
        )));
    }
    Ok(())
}

/// Refuses a user name (`USER@`) on a scheme that takes none.
pub fn no_username(address: &Address) -> Result<(), ResolveError> {
    match address.username() {
        Some(user) => Err(invalid(format!(
            "`{}://` addresses take no user name, but {} was given",
            address.scheme,
            shown(user)
        ))),
        None => Ok(()),
    }
}

/// Refuses a port (`:PORT`) on a scheme that takes none.
pub fn no_port(address: &Address) -> Result<(), ResolveError> {
    match address.port {
        Some(port) => Err(invalid(format!(
            "`{}://` addresses take no port, but `{port}` was given",
            address.scheme
        ))),
        None => Ok(()),
    }
}

/// Refuses a path on a scheme that takes none (a lone `/` is allowed).
pub fn no_path(address: &Address) -> Result<(), ResolveError> {
    if address.path.is_empty() || address.path == "/" {
        return Ok(());
    }
    Err(invalid(format!(
        "`{}://` addresses take no path, but {} was given",
        address.scheme,
        shown(&address.path)
    )))
}

/// The query parameters of an address, each known to the plugin and given
/// at most once.
#[derive(Debug, Default)]
pub struct Query<'a> {
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    /// Parses `address.query`, accepting only the names in `known`. Every
    /// value must be non-empty, at most 1024 bytes and free of control
    /// characters; checking it further is up to the caller.
    pub fn parse(address: &'a Address, known: &[&str]) -> Result<Self, ResolveError> {
        let scheme = &address.scheme;
        if address.query.len() > MAX_QUERY_PARAMS {
            return Err(invalid(format!(
                "address has {} query parameters; the limit is {MAX_QUERY_PARAMS}",
                address.query.len()
            )));
        }

        let mut params: Vec<(&str, &str)> = Vec::new();
        for (name, value) in &address.query {
            if !known.contains(&name.as_str()) {
                return Err(invalid(unknown_parameter(scheme, name, known)));
            }
            if params.iter().any(|(seen, _)| seen == name) {
                return Err(invalid(format!(
                    "query parameter `{name}` is given more than once"
                )));
            }
            names::basic(&format!("query parameter `{name}`"), value, MAX_QUERY_VALUE)
                .map_err(invalid)?;
            params.push((name, value));
        }
        Ok(Query { params })
    }

    /// The value of a parameter, if given.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

fn unknown_parameter(scheme: &str, name: &str, known: &[&str]) -> String {
    if known.is_empty() {
        return format!(
            "`{scheme}://` addresses take no query parameters, but {} was given",
            shown(name)
        );
    }
    let known: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    format!(
        "unknown query parameter {} (`{scheme}://` knows {})",
        shown(name),
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(raw: &str, query: &[(&str, &str)]) -> Address {
        Address {
            raw: raw.to_owned(),
            scheme: "kubepod".to_owned(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Address::default()
        }
    }

    #[test]
    fn known_parameters_are_returned_by_name() {
        let a = address("kubepod://p?namespace=n", &[("namespace", "n")]);
        let q = Query::parse(&a, &["context", "namespace"]).unwrap();
        assert_eq!(q.get("namespace"), Some("n"));
        assert_eq!(q.get("context"), None);
    }

    #[test]
    fn unknown_repeated_empty_and_hostile_parameters_are_refused() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("exec", "x")],
                "unknown query parameter `exec` (`kubepod://` knows `context`, `namespace`)",
            ),
            (
                &[("namespace", "a"), ("namespace", "b")],
                "query parameter `namespace` is given more than once",
            ),
            (&[("namespace", "")], "query parameter `namespace` is empty"),
            (
                &[("namespace", "--kubeconfig=/x")],
                "query parameter `namespace` `--kubeconfig=/x` must not start with `-`",
            ),
            (
                &[("context", "a\nb")],
                "query parameter `context` `a\\nb` contains a control character",
            ),
        ];
        for (query, message) in cases {
            let a = address("kubepod://p", query);
            let err = Query::parse(&a, &["context", "namespace"]).unwrap_err();
            assert_eq!(err, invalid(*message));
        }
    }

    #[test]
    fn a_scheme_without_parameters_says_so() {
        let a = address("ssh://h?x=1", &[("x", "1")]);
        let err = Query::parse(&a, &[]).unwrap_err();
        assert_eq!(
            err.message(),
            "`kubepod://` addresses take no query parameters, but `x` was given"
        );
    }

    #[test]
    fn too_many_parameters_are_refused() {
        let many: Vec<(&str, &str)> = (0..17).map(|_| ("a", "b")).collect();
        let a = address("x://", &many);
        assert!(
            Query::parse(&a, &["a"])
                .unwrap_err()
                .message()
                .contains("limit is 16")
        );
    }

    #[test]
    fn preflight_refuses_fragments_control_characters_and_huge_addresses() {
        assert!(preflight(&address("kubepod://p", &[])).is_ok());
        let fragment = preflight(&address("kubepod://p#x", &[])).unwrap_err();
        assert_eq!(
            fragment.message(),
            "address `kubepod://p#x` has a fragment `#x`, which `kubepod://` does not use"
        );
        assert!(preflight(&address("kubepod://p\n", &[])).is_err());
        let huge = format!("kubepod://{}", "a".repeat(MAX_ADDRESS));
        assert!(preflight(&address(&huge, &[])).is_err());
    }
}
