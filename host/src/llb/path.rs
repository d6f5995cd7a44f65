//! Slash-separated path arithmetic with the exact results of Go's `path`
//! package, which BuildKit's builder uses to make paths absolute. Paths end
//! up inside hashed ops, so "nearly the same" would change digests.
//!
//! Purely lexical: it never looks at a filesystem.

/// Go's `path.Clean`: the shortest equivalent path, without `.`, `..` that
/// can be resolved, or repeated and trailing slashes. `""` becomes `"."`.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                // `..` above the root is the root.
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }

    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `path.Join`: the non-empty elements joined by `/`, then cleaned; `""`
/// when every element is empty.
pub(crate) fn join(elements: &[&str]) -> String {
    let parts: Vec<&str> = elements.iter().copied().filter(|e| !e.is_empty()).collect();
    if parts.is_empty() {
        return String::new();
    }
    clean(&parts.join("/"))
}

/// `value` as a working directory after `previous`: an absolute value is
/// taken as given (Go's builder does not clean it), a relative one is joined
/// onto the previous directory (`/` when there is none).
pub(crate) fn resolve_dir(previous: &str, value: &str) -> String {
    if value.starts_with('/') {
        return value.to_string();
    }
    let previous = if previous.is_empty() { "/" } else { previous };
    join(&[previous, value])
}

/// An absolute, cleaned path for a file action: relative paths are taken
/// from `dir`. With `keep_slash` (copy destinations) a trailing `/` or `/.`
/// of the input survives cleaning, because it tells "into this directory".
pub(crate) fn absolute_in(dir: &str, path: &str, keep_slash: bool) -> String {
    let mut out = clean(path);
    if !out.starts_with('/') {
        out = join(&["/", dir, &out]);
    }
    if keep_slash {
        if path.ends_with('/') && !out.ends_with('/') {
            out.push('/');
        } else if path.ends_with("/.") {
            if out != "/" {
                out.push('/');
            }
            out.push('.');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go_path_clean() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/b/../c", "a/c"),
            ("/../a", "/a"),
            ("../a/..", ".."),
            ("a/../..", ".."),
            ("//a//b/./", "/a/b"),
            ("./", "."),
            ("/a/b/../../..", "/"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn join_skips_empty_elements_and_cleans() {
        assert_eq!(join(&["", ""]), "");
        assert_eq!(join(&["/", "work", "sub/"]), "/work/sub");
        assert_eq!(join(&["/work", ""]), "/work");
        assert_eq!(join(&["/", "", "x"]), "/x");
    }

    #[test]
    fn relative_dir_joins_onto_previous_and_absolute_dir_is_kept() {
        assert_eq!(resolve_dir("/work", "sub"), "/work/sub");
        assert_eq!(resolve_dir("", "sub"), "/sub");
        assert_eq!(resolve_dir("/work", ""), "/work");
        assert_eq!(resolve_dir("/work", "/srv//x/"), "/srv//x/");
    }

    #[test]
    fn copy_destination_keeps_its_trailing_slash_or_dot() {
        assert_eq!(absolute_in("/work", "bin/", true), "/work/bin/");
        assert_eq!(absolute_in("/work", "bin/", false), "/work/bin");
        assert_eq!(absolute_in("/work", "data/.", true), "/work/data/.");
        assert_eq!(absolute_in("/", "/.", true), "/.");
        assert_eq!(absolute_in("/", "./x", false), "/x");
    }
}
