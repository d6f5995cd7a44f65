//! Address: parse an `--addr` value into the parts a connector needs.
//!
//! This module only reads text. It decides nothing about which connector
//! serves a scheme and never touches the network or the file system.

use std::fmt;

use thiserror::Error;
use url::Url;

/// The longest address accepted, in bytes. Nothing legitimate comes close; a
/// longer one is refused before any parsing.
pub const MAX_ADDRESS_LEN: usize = 4096;

/// An `--addr` value split into its parts; every text part is percent-decoded
/// exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The address as given.
    pub raw: String,
    /// The scheme, lower case.
    pub scheme: String,
    pub username: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The path with its leading `/`, or empty.
    pub path: String,
    pub query: Vec<(String, String)>,
}

/// Why an address could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address is {len} bytes long; the limit is {MAX_ADDRESS_LEN}")]
    TooLong { len: usize },
    #[error(
        "address `{address}` has no scheme; expected a form like `unix:///run/buildkit/buildkitd.sock`"
    )]
    NoScheme { address: String },
    #[error("address `{address}` has an invalid scheme `{scheme}`")]
    BadScheme { address: String, scheme: String },
    #[error("address `{address}` contains a control character or whitespace in its {part}")]
    ControlCharacter { address: String, part: &'static str },
    #[error("address `{address}` is not a valid URL: {reason}")]
    Malformed { address: String, reason: String },
    #[error(
        "address `{address}` has a password; put credentials in the transport's own configuration"
    )]
    Password { address: String },
    #[error("address `{address}` has a fragment (`#…`), which no scheme uses")]
    Fragment { address: String },
    #[error("address `{address}` has a `..` path segment; give the path without traversal")]
    PathTraversal { address: String },
    #[error("address `{address}` has an invalid percent-encoding in its {part}")]
    BadEncoding { address: String, part: &'static str },
}

impl Address {
    /// Parses an address such as `ssh://me@host:22/run/buildkit.sock`.
    pub fn parse(raw: &str) -> Result<Address, AddressError> {
        if raw.is_empty() {
            return Err(AddressError::Empty);
        }
        if raw.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong { len: raw.len() });
        }
        let address = raw.to_string();
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(AddressError::ControlCharacter {
                address,
                part: "text",
            });
        }

        let Some((scheme, _)) = raw.split_once("://") else {
            return Err(AddressError::NoScheme { address });
        };
        let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !valid_scheme {
            let scheme = scheme.to_string();
            return Err(AddressError::BadScheme { address, scheme });
        }

        // URL parsing would silently fold `a/../b` (and `%2E%2E`) into `b`;
        // an address that climbs out of a folder is refused instead.
        let traverses = raw.split(['/', '?', '#']).any(|segment| {
            percent_decode(segment).is_some_and(|s| s == ".." || s.eq_ignore_ascii_case("%2e%2e"))
        });
        if traverses {
            return Err(AddressError::PathTraversal { address });
        }

        let url = Url::parse(raw).map_err(|e| AddressError::Malformed {
            address: address.clone(),
            reason: e.to_string(),
        })?;
        if url.password().is_some() {
            return Err(AddressError::Password { address });
        }
        if url.fragment().is_some() {
            return Err(AddressError::Fragment { address });
        }

        let decode = |text: &str, part: &'static str| -> Result<String, AddressError> {
            let decoded = percent_decode(text).ok_or_else(|| AddressError::BadEncoding {
                address: address.clone(),
                part,
            })?;
            if decoded.chars().any(char::is_control) {
                return Err(AddressError::ControlCharacter {
                    address: address.clone(),
                    part,
                });
            }
            Ok(decoded)
        };

        let username = match url.username() {
            "" => None,
            user => Some(decode(user, "user name")?),
        };
        let host = match url.host_str() {
            None | Some("") => None,
            Some(host) => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some(decode(host, "host")?)
            }
        };
        let path = decode(url.path(), "path")?;
        let mut query = Vec::new();
        if let Some(text) = url.query() {
            for pair in text.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                query.push((decode(key, "query")?, decode(value, "query")?));
            }
        }

        Ok(Address {
            raw: address.clone(),
            scheme: url.scheme().to_string(),
            username,
            host,
            port: url.port(),
            path,
            query,
        })
    }

    /// The text after `scheme://`, as given.
    pub fn rest(&self) -> &str {
        self.raw
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or_default()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Decodes `%XX` escapes once; `None` when an escape is cut short or the
/// result is not UTF-8. A `+` stays a `+`: addresses are not form data.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_address_splits_into_user_host_port_and_socket() {
        let a = Address::parse("ssh://me@build.example:2222/run/buildkit/buildkitd.sock").unwrap();
        assert_eq!(a.scheme, "ssh");
        assert_eq!(a.username.as_deref(), Some("me"));
        assert_eq!(a.host.as_deref(), Some("build.example"));
        assert_eq!(a.port, Some(2222));
        assert_eq!(a.path, "/run/buildkit/buildkitd.sock");
    }

    #[test]
    fn query_parameters_are_kept_in_order_and_decoded_once() {
        let a = Address::parse("kubepod://pod?context=a%2525b&namespace=ns").unwrap();
        assert_eq!(
            a.query,
            vec![
                ("context".to_string(), "a%25b".to_string()),
                ("namespace".to_string(), "ns".to_string())
            ]
        );
    }

    #[test]
    fn scheme_is_lower_cased() {
        assert_eq!(Address::parse("SSH://h").unwrap().scheme, "ssh");
    }

    #[test]
    fn empty_host_is_none() {
        let a = Address::parse("buildx://").unwrap();
        assert_eq!(a.host, None);
        assert_eq!(a.path, "");
        assert_eq!(a.rest(), "");
    }

    #[test]
    fn ipv6_host_loses_its_brackets() {
        let a = Address::parse("ssh://[::1]:22").unwrap();
        assert_eq!(a.host.as_deref(), Some("::1"));
    }

    #[test]
    fn nested_docker_endpoint_is_available_verbatim() {
        let a = Address::parse("docker://tcp://127.0.0.1:2375").unwrap();
        assert_eq!(a.rest(), "tcp://127.0.0.1:2375");
    }

    #[test]
    fn percent_encoded_dash_is_decoded_so_plugins_see_it() {
        let a = Address::parse("docker-container://%2Dprivileged").unwrap();
        assert_eq!(a.host.as_deref(), Some("-privileged"));
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_bad_part_named() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("/run/buildkit.sock", "has no scheme"),
            ("1ssh://h", "invalid scheme `1ssh`"),
            ("ssh://h ost", "whitespace"),
            ("ssh://h\nost", "control character"),
            (
                "ssh://h%0Aost",
                "control character or whitespace in its host",
            ),
            ("ssh://h%00", "control character or whitespace in its host"),
            ("ssh://u:pw@h", "password"),
            ("ssh://h#frag", "fragment"),
            ("ssh://h/%zz", "invalid percent-encoding in its path"),
            ("ssh://h/%ff", "invalid percent-encoding in its path"),
            ("ssh://h:99999", "not a valid URL"),
            ("ssh://h/run/../etc/shadow", "`..` path segment"),
            ("ssh://h/run/%2E%2E/x", "`..` path segment"),
            ("ssh://h/run/%252E%252E/x", "`..` path segment"),
            ("unix:///run/../x.sock", "`..` path segment"),
        ];
        for (raw, expected) in cases {
            let err = Address::parse(raw).unwrap_err().to_string();
            assert!(err.contains(expected), "{raw:?}: {err}");
        }
    }

    #[test]
    fn absurdly_long_address_is_refused_before_parsing() {
        let raw = format!("ssh://{}", "a".repeat(MAX_ADDRESS_LEN));
        assert!(matches!(
            Address::parse(&raw),
            Err(AddressError::TooLong { .. })
        ));
    }
}
