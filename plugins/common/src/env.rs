//! What a plugin may read while it resolves: environment variables and files.
//!
//! Plugin logic takes a `&dyn Env` instead of calling `std::env` and `std::fs`
//! directly, so tests can hand it a fake that also polices every read against
//! the plugin's declared capabilities. This module never writes anything.

use std::io::Read;
use std::path::Path;

/// The largest file a plugin reads whole (Docker's `config.json` can hold many
/// credentials; a buildx instance file can embed buildkitd config files).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The environment and files a plugin reads through.
pub trait Env {
    /// The value of a variable, or `None` when it is unset or empty.
    fn var(&self, name: &str) -> Option<String>;

    /// The contents of a file, `Ok(None)` when it does not exist; files larger
    /// than [`MAX_FILE_BYTES`] are refused. The error is one line.
    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, String>;

    /// Whether a folder exists at `path`.
    fn is_dir(&self, path: &Path) -> bool;
}

/// The real environment of the sandbox, limited to the declared variables.
///
/// Inside the sandbox only declared variables and folders are there anyway;
/// the limit here keeps a plugin honest in native tests and catches a
/// forgotten declaration before the host does.
#[derive(Debug, Clone, Copy)]
pub struct SystemEnv {
    declared: &'static [&'static str],
}

impl SystemEnv {
    /// An environment that reads only the variables in `declared`.
    pub fn new(declared: &'static [&'static str]) -> Self {
        SystemEnv { declared }
    }
}

impl Env for SystemEnv {
    fn var(&self, name: &str) -> Option<String> {
        debug_assert!(
            self.declared.contains(&name),
            "plugin reads undeclared variable `{name}`"
        );
        if !self.declared.contains(&name) {
            return None;
        }
        let value = std::env::var_os(name)?;
        let value = value.to_string_lossy().into_owned();
        (!value.is_empty()).then_some(value)
    }

    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, String> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("failed to open `{}`: {e}", path.display())),
        };

        let mut contents = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut contents)
            .map_err(|e| format!("failed to read `{}`: {e}", path.display()))?;
        if contents.len() as u64 > MAX_FILE_BYTES {
            return Err(format!(
                "`{}` is larger than {MAX_FILE_BYTES} bytes",
                path.display()
            ));
        }
        Ok(Some(contents))
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

/// A fake environment for tests: it holds variables and files in memory, and
/// panics when a plugin reads a variable it did not declare or a file outside
/// the folders it declared (expanded the way the host expands them).
#[cfg(any(test, feature = "testing"))]
pub mod fake {
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::Env;
    use crate::spec::Capabilities;

    /// See the [module documentation](self).
    #[derive(Debug, Default)]
    pub struct FakeEnv {
        declared_env: Vec<&'static str>,
        declared_folders: Vec<&'static str>,
        vars: BTreeMap<String, String>,
        files: BTreeMap<PathBuf, Vec<u8>>,
        dirs: BTreeSet<PathBuf>,
        unreadable: BTreeSet<PathBuf>,
        reads: RefCell<Vec<String>>,
    }

    impl FakeEnv {
        /// An empty environment policed by `capabilities`.
        pub fn new(capabilities: &Capabilities) -> Self {
            FakeEnv {
                declared_env: capabilities.env.to_vec(),
                declared_folders: capabilities.folders.to_vec(),
                ..FakeEnv::default()
            }
        }

        /// Sets a variable.
        pub fn var(mut self, name: &str, value: &str) -> Self {
            self.vars.insert(name.to_owned(), value.to_owned());
            self
        }

        /// Adds a file (and its parent folders).
        pub fn file(mut self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Self {
            let path = path.as_ref().to_path_buf();
            self.add_parents(&path);
            self.files.insert(path, contents.as_ref().to_vec());
            self
        }

        /// Adds a folder (and its parents).
        pub fn dir(mut self, path: impl AsRef<Path>) -> Self {
            let path = path.as_ref().to_path_buf();
            self.add_parents(&path);
            self.dirs.insert(path);
            self
        }

        /// Adds a file that exists but cannot be read.
        pub fn unreadable(mut self, path: impl AsRef<Path>) -> Self {
            self.unreadable.insert(path.as_ref().to_path_buf());
            self
        }

        /// Everything read so far, as `var NAME` or `file PATH` lines.
        pub fn reads(&self) -> Vec<String> {
            self.reads.borrow().clone()
        }

        fn add_parents(&mut self, path: &Path) {
            let mut parent = path.parent();
            while let Some(p) = parent {
                if p.as_os_str().is_empty() {
                    break;
                }
                self.dirs.insert(p.to_path_buf());
                parent = p.parent();
            }
        }

        /// The declared folders, expanded as the host expands them (every
        /// alternative of an `a|b` entry counts, whether it exists or not).
        fn granted_folders(&self) -> Vec<PathBuf> {
            self.declared_folders
                .iter()
                .flat_map(|entry| entry.split('|'))
                .filter_map(|alt| self.expand(alt))
                .collect()
        }

        fn expand(&self, folder: &str) -> Option<PathBuf> {
            let folder = folder.trim();
            let expanded = if let Some(inner) = folder
                .strip_prefix("${")
                .and_then(|rest| rest.strip_suffix('}'))
            {
                let (name, fallback) = inner.split_once(":-")?;
                assert!(
                    self.declared_env.contains(&name),
                    "folder `{folder}` expands `{name}`, which is not declared in env"
                );
                match self.vars.get(name).filter(|v| !v.is_empty()) {
                    Some(value) => value.clone(),
                    None => fallback.to_owned(),
                }
            } else {
                folder.to_owned()
            };
            match expanded.strip_prefix("~/") {
                Some(rest) => {
                    let home = self.vars.get("HOME").filter(|h| !h.is_empty())?;
                    Some(Path::new(home).join(rest))
                }
                None => Some(PathBuf::from(expanded)),
            }
        }

        fn police_path(&self, path: &Path) {
            assert!(
                !path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir)),
                "plugin reads `{}`, a path with a `..` component",
                path.display()
            );
            let granted = self.granted_folders();
            assert!(
                granted.iter().any(|root| path.starts_with(root)),
                "plugin reads `{}`, outside its granted folders {granted:?}",
                path.display()
            );
        }
    }

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            assert!(
                self.declared_env.contains(&name),
                "plugin reads undeclared variable `{name}`"
            );
            self.reads.borrow_mut().push(format!("var {name}"));
            self.vars.get(name).filter(|v| !v.is_empty()).cloned()
        }

        fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, String> {
            self.police_path(path);
            self.reads
                .borrow_mut()
                .push(format!("file {}", path.display()));
            if self.unreadable.contains(path) {
                return Err(format!(
                    "failed to open `{}`: permission denied",
                    path.display()
                ));
            }
            Ok(self.files.get(path).cloned())
        }

        fn is_dir(&self, path: &Path) -> bool {
            self.police_path(path);
            self.dirs.contains(path)
        }
    }
}
