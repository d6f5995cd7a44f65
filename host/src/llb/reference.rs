//! Image references in the fully qualified form BuildKit's Go builder puts
//! into `docker-image://` identifiers: `debian` becomes
//! `docker.io/library/debian:latest`, a digest-only reference gets no tag.
//!
//! This is the grammar of the `distribution/reference` package (normalised
//! names, then "tag name only"), checked by hand. It never resolves anything
//! against a registry.

use super::LlbError;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// `reference` as `domain/path[:tag][@digest]`, with `:latest` added when it
/// has neither tag nor digest.
pub fn normalize(reference: &str) -> Result<String, LlbError> {
    let invalid = |reason: &str| LlbError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };

    if reference.len() == 64 && is_lower_hex(reference) {
        return Err(invalid(
            "a 64-character hexadecimal string is an id, not a name",
        ));
    }

    let (domain, remainder) = split_domain(reference);
    let (name_and_tag, digest) = match remainder.split_once('@') {
        Some((before, digest)) => (before, Some(digest)),
        None => (remainder.as_str(), None),
    };
    let (path, tag) = match name_and_tag.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (name_and_tag, None),
    };

    if path.to_lowercase() != path {
        return Err(invalid("the repository name must be lowercase"));
    }
    if !is_domain(&domain) {
        return Err(invalid("the registry host is malformed"));
    }
    if path.is_empty() || !path.split('/').all(is_path_component) {
        return Err(invalid("the repository name is malformed"));
    }
    if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(invalid("the name is longer than 255 characters"));
    }
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return Err(invalid("the tag is malformed"));
    }
    if let Some(digest) = digest
        && !is_digest(digest)
    {
        return Err(invalid(
            "the digest is malformed or of an unsupported algorithm",
        ));
    }

    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (None, None) => {
            out.push(':');
            out.push_str(DEFAULT_TAG);
        }
        (tag, digest) => {
            if let Some(tag) = tag {
                out.push(':');
                out.push_str(tag);
            }
            if let Some(digest) = digest {
                out.push('@');
                out.push_str(digest);
            }
        }
    }
    Ok(out)
}

/// Splits off the registry host; Docker Hub names get `docker.io` and, when
/// they have a single path component, the `library/` prefix.
fn split_domain(reference: &str) -> (String, String) {
    let (domain, remainder) = match reference.split_once('/') {
        None => (DEFAULT_DOMAIN, reference),
        Some(("localhost", rest)) => ("localhost", rest),
        Some((LEGACY_DEFAULT_DOMAIN, rest)) => (DEFAULT_DOMAIN, rest),
        Some((first, rest)) if first.contains(['.', ':']) => (first, rest),
        // A namespace cannot have capitals, so this must be a host name.
        Some((first, rest)) if first.to_lowercase() != first => (first, rest),
        Some(_) => (DEFAULT_DOMAIN, reference),
    };

    let mut remainder = remainder.to_string();
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder.insert_str(0, OFFICIAL_REPO_PREFIX);
    }
    (domain.to_string(), remainder)
}

/// Host name or bracketed IPv6 address, with an optional numeric port.
fn is_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("ipv6", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };

    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    port_ok && host_ok
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }

    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
    true
}

/// A word character, then up to 127 word characters, `.` or `-`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex` for the algorithms a registry digest can use, with the
/// hex part of the right length and in lower case.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == length && is_lower_hex(hex)
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";

    #[test]
    fn short_names_get_docker_hub_library_and_latest() {
        for (input, want) in [
            ("debian", "docker.io/library/debian:latest"),
            ("debian:bookworm", "docker.io/library/debian:bookworm"),
            ("index.docker.io/debian", "docker.io/library/debian:latest"),
            ("docker.io/debian", "docker.io/library/debian:latest"),
            ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b:1.0", "localhost:5000/a/b:1.0"),
            (
                "127.0.0.1:5000/copa-test/hello",
                "127.0.0.1:5000/copa-test/hello:latest",
            ),
            ("Registry/app", "Registry/app:latest"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            (
                "ghcr.io/project-copacetic/copacetic/debian:12-slim",
                "ghcr.io/project-copacetic/copacetic/debian:12-slim",
            ),
            ("a__b/c---d.e_f", "docker.io/a__b/c---d.e_f:latest"),
        ] {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn digest_references_get_no_tag_but_keep_one_given() {
        assert_eq!(
            normalize(&format!("busybox@{DIGEST}")).unwrap(),
            format!("docker.io/library/busybox@{DIGEST}")
        );
        assert_eq!(
            normalize(&format!("busybox:1.36@{DIGEST}")).unwrap(),
            format!("docker.io/library/busybox:1.36@{DIGEST}")
        );
    }

    #[test]
    fn malformed_references_are_rejected_with_the_reference_named() {
        for bad in [
            "",
            "Debian",
            "debian:",
            "debian:-tag",
            "debian@sha256:abc",
            "debian@md5:0123456789abcdef0123456789abcdef",
            "a//b",
            "a/-b",
            "a/b_",
            "a/b.-c",
            "exa_mple.com/app",
            "example.com:port/app",
            "abababababababababababababababababababababababababababababababab",
        ] {
            let err = normalize(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
        let long = format!("example.com/{}", "a".repeat(250));
        assert!(normalize(&long).is_err());
    }
}
