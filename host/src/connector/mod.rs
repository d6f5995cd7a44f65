//! Connector: decide who serves an address's scheme and get a dial spec from
//! it. `unix://` and `tcp://` are resolved here; every other scheme by a
//! WebAssembly plugin, built in or loaded from a plugin folder.
//!
//! This module never dials. It hands the dial spec on only after checking it
//! against the plugin's declaration and the administrator's policy.

pub mod plugin;
pub mod policy;
pub mod sandbox;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use thiserror::Error;

use crate::address::{Address, AddressError};
use crate::dial::DialSpec;
use plugin::{LoadedPlugin, Origin, PluginError, Runtime};
use policy::{Denied, Policy};
use sandbox::SpecRefused;

/// Schemes the host resolves itself.
pub const NATIVE_SCHEMES: &[&str] = &["unix", "tcp"];

/// A plugin compiled into copa.
struct BuiltIn {
    name: &'static str,
    schemes: &'static [&'static str],
    bytes: &'static [u8],
}

macro_rules! built_in {
    ($name:literal, [$($scheme:literal),+]) => {
        BuiltIn {
            name: $name,
            schemes: &[$($scheme),+],
            bytes: include_bytes!(concat!(env!("OUT_DIR"), "/plugins/", $name, ".wasm")),
        }
    };
}

/// The bundled plugins and the schemes they serve (a test checks that each
/// plugin's own `describe` agrees).
const BUILT_INS: &[BuiltIn] = &[
    built_in!("docker", ["docker"]),
    built_in!("docker-container", ["docker-container"]),
    built_in!("podman-container", ["podman-container"]),
    built_in!("nerdctl-container", ["nerdctl-container"]),
    built_in!("ssh", ["ssh"]),
    built_in!("kubepod", ["kubepod", "kube-pod"]),
    built_in!("buildx", ["buildx"]),
];

/// Who turned an address into a dial spec.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ServedBy {
    /// copa itself (`unix`, `tcp`).
    Native,
    /// A plugin.
    Plugin {
        name: String,
        version: String,
        digest: String,
        origin: Origin,
    },
}

/// The outcome of resolving an address.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub address: Address,
    pub served_by: ServedBy,
    pub spec: DialSpec,
}

/// Why an address could not be resolved.
#[derive(Debug, Error)]
pub enum ConnectorError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("unknown scheme `{scheme}` in `{address}`; installed schemes: {installed}")]
    UnknownScheme {
        address: String,
        scheme: String,
        installed: String,
    },
    #[error("invalid address `{address}`: {reason}")]
    Invalid { address: String, reason: String },
    #[error("scheme `{scheme}` may not be used")]
    SchemeDenied {
        scheme: String,
        #[source]
        source: Denied,
    },
    #[error("failed to resolve `{address}` with plugin `{plugin}`")]
    Plugin {
        address: String,
        plugin: String,
        #[source]
        source: PluginError,
    },
    #[error("refused the dial spec for `{address}`")]
    Refused {
        address: String,
        #[source]
        source: SpecRefused,
    },
    #[error("failed to load plugin `{}`", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: PluginError,
    },
    #[error("failed to read plugin `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no plugin serves `{0}`, and no such plugin file exists")]
    NoSuchPlugin(String),
    #[error("failed to start the plugin runtime")]
    Runtime(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A plugin found in a plugin folder, loaded or refused.
pub struct External {
    pub path: PathBuf,
    pub digest: String,
    pub state: ExternalState,
}

/// Whether an external plugin could be used.
pub enum ExternalState {
    Loaded(Arc<LoadedPlugin>),
    Denied(Denied),
    Failed(String),
}

/// How copa finds and runs connectors.
pub struct Settings {
    pub policy: Policy,
    /// Plugin folders, in search order.
    pub plugin_dirs: Vec<PathBuf>,
    /// Schemes whose built-in connector the user lets a plugin replace.
    pub overrides: Vec<String>,
    /// Where compiled plugins are cached (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
}

impl Settings {
    /// Settings from copa's environment: `COPA_PLUGIN_PATH`, then
    /// `$XDG_DATA_HOME/copa/plugins` (default `~/.local/share/copa/plugins`);
    /// the cache in `COPA_CACHE_DIR` or `$XDG_CACHE_HOME/copa` (default
    /// `~/.cache/copa`).
    pub fn from_env(policy: Policy, overrides: Vec<String>) -> Settings {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);

        let mut plugin_dirs: Vec<PathBuf> = var("COPA_PLUGIN_PATH")
            .map(|paths| std::env::split_paths(&paths).collect())
            .unwrap_or_default();
        let data = var("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".local/share")));
        if let Some(data) = data {
            plugin_dirs.push(data.join("copa/plugins"));
        }

        let cache_dir = var("COPA_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("copa")))
            .or_else(|| home.as_ref().map(|h| h.join(".cache/copa")))
            .map(|dir| dir.join("plugins"));

        Settings {
            policy,
            plugin_dirs,
            overrides,
            cache_dir,
        }
    }
}

/// Every connector copa knows, ready to resolve addresses.
pub struct Connectors {
    settings: Settings,
    runtime: OnceLock<Runtime>,
    externals: Vec<External>,
    built_ins: Mutex<BTreeMap<&'static str, Arc<LoadedPlugin>>>,
    /// Things worth telling the user (an ignored plugin), said once by the CLI.
    pub warnings: Vec<String>,
}

impl Connectors {
    /// Finds the plugins in the plugin folders and asks each what it serves.
    pub fn new(settings: Settings) -> Result<Connectors, ConnectorError> {
        let mut connectors = Connectors {
            settings,
            runtime: OnceLock::new(),
            externals: Vec::new(),
            built_ins: Default::default(),
            warnings: Vec::new(),
        };
        let files = plugin_files(&connectors.settings.plugin_dirs);
        for path in files {
            let external = connectors.load_external(&path)?;
            connectors.externals.push(external);
        }
        connectors.warnings = connectors.conflicts();
        Ok(connectors)
    }

    /// The plugins found in plugin folders.
    pub fn externals(&self) -> &[External] {
        &self.externals
    }

    fn runtime(&self) -> Result<&Runtime, ConnectorError> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = Runtime::new(self.settings.cache_dir.clone())
            .map_err(|e| ConnectorError::Runtime(e.into()))?;
        Ok(self.runtime.get_or_init(|| runtime))
    }

    fn load_external(&self, path: &Path) -> Result<External, ConnectorError> {
        let bytes = std::fs::read(path).map_err(|source| ConnectorError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let digest = plugin::digest(&bytes);
        let origin = Origin::File {
            path: path.to_path_buf(),
        };
        // The policy is checked before the plugin runs at all.
        let state = match self.settings.policy.check_external_plugin(&digest) {
            Err(denied) => ExternalState::Denied(denied),
            Ok(()) => {
                let label = path.display().to_string();
                match self
                    .runtime()?
                    .load(&label, &bytes, origin, &self.settings.policy)
                {
                    Ok(plugin) => ExternalState::Loaded(Arc::new(plugin)),
                    Err(error) => {
                        ExternalState::Failed(format!("{:#}", anyhow::Error::from(error)))
                    }
                }
            }
        };
        Ok(External {
            path: path.to_path_buf(),
            digest,
            state,
        })
    }

    /// Loads a built-in plugin (compiled once per run).
    pub fn built_in(&self, name: &str) -> Result<Arc<LoadedPlugin>, ConnectorError> {
        let built_in = BUILT_INS
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| ConnectorError::NoSuchPlugin(name.to_string()))?;
        if let Some(plugin) = self.built_ins.lock().unwrap().get(built_in.name) {
            return Ok(plugin.clone());
        }
        let plugin = self
            .runtime()?
            .load(
                built_in.name,
                built_in.bytes,
                Origin::BuiltIn,
                &self.settings.policy,
            )
            .map_err(|source| ConnectorError::Load {
                path: PathBuf::from(format!("(built-in) {}", built_in.name)),
                source,
            })?;
        let plugin = Arc::new(plugin);
        self.built_ins
            .lock()
            .unwrap()
            .insert(built_in.name, plugin.clone());
        Ok(plugin)
    }

    /// Every scheme that can be used, sorted.
    pub fn schemes(&self) -> Vec<String> {
        let mut schemes: Vec<String> = NATIVE_SCHEMES.iter().map(|s| s.to_string()).collect();
        schemes.extend(
            BUILT_INS
                .iter()
                .flat_map(|b| b.schemes.iter().map(|s| s.to_string())),
        );
        for external in &self.externals {
            if let ExternalState::Loaded(plugin) = &external.state {
                schemes.extend(plugin.info.schemes.iter().cloned());
            }
        }
        schemes.sort();
        schemes.dedup();
        schemes
    }

    /// The first loaded external plugin that serves `scheme`.
    fn external_for(&self, scheme: &str) -> Option<&Arc<LoadedPlugin>> {
        self.externals.iter().find_map(|e| match &e.state {
            ExternalState::Loaded(p) if p.info.schemes.iter().any(|s| s == scheme) => Some(p),
            _ => None,
        })
    }

    fn built_in_for(scheme: &str) -> Option<&'static BuiltIn> {
        BUILT_INS.iter().find(|b| b.schemes.contains(&scheme))
    }

    /// Which plugin serves `scheme`, or `None` for a native or unknown scheme.
    pub fn plugin_for(&self, scheme: &str) -> Result<Option<Arc<LoadedPlugin>>, ConnectorError> {
        let overridden = self.settings.overrides.iter().any(|o| o == scheme);
        let external = self.external_for(scheme);
        let taken = NATIVE_SCHEMES.contains(&scheme) || Self::built_in_for(scheme).is_some();

        if let Some(plugin) = external
            && (!taken || overridden)
        {
            return Ok(Some(plugin.clone()));
        }
        match Self::built_in_for(scheme) {
            Some(built_in) => self.built_in(built_in.name).map(Some),
            None => Ok(None),
        }
    }

    /// Resolves an address to a dial spec.
    pub fn resolve(&self, raw: &str) -> Result<Resolution, ConnectorError> {
        let address = Address::parse(raw)?;
        let scheme = address.scheme.clone();
        self.settings
            .policy
            .check_scheme(&scheme)
            .map_err(|source| ConnectorError::SchemeDenied {
                scheme: scheme.clone(),
                source,
            })?;

        let Some(plugin) = self.plugin_for(&scheme)? else {
            if NATIVE_SCHEMES.contains(&scheme.as_str()) {
                let spec = resolve_native(&address)?;
                return Ok(Resolution {
                    address,
                    served_by: ServedBy::Native,
                    spec,
                });
            }
            return Err(self.unknown_scheme(&address));
        };

        let runtime = self.runtime()?;
        let spec = runtime
            .resolve(&plugin, &address, &self.settings.policy)
            .map_err(|source| ConnectorError::Plugin {
                address: address.raw.clone(),
                plugin: plugin.info.name.clone(),
                source,
            })?;
        plugin
            .info
            .capabilities
            .check(&plugin.info.name, &spec, &self.settings.policy)
            .map_err(|source| ConnectorError::Refused {
                address: address.raw.clone(),
                source,
            })?;
        tracing::debug!(scheme = %scheme, plugin = %plugin.info.name, spec = %spec, "resolved");

        Ok(Resolution {
            address,
            served_by: ServedBy::Plugin {
                name: plugin.info.name.clone(),
                version: plugin.info.version.clone(),
                digest: plugin.digest.clone(),
                origin: plugin.origin.clone(),
            },
            spec,
        })
    }

    fn unknown_scheme(&self, address: &Address) -> ConnectorError {
        let mut message = self.schemes().join(", ");
        let refused: Vec<String> = self
            .externals
            .iter()
            .filter_map(|e| match &e.state {
                ExternalState::Denied(d) => Some(format!("{} ({d})", e.path.display())),
                ExternalState::Failed(f) => Some(format!("{} ({f})", e.path.display())),
                ExternalState::Loaded(_) => None,
            })
            .collect();
        if !refused.is_empty() {
            message.push_str("; plugins not loaded: ");
            message.push_str(&refused.join("; "));
        }
        ConnectorError::UnknownScheme {
            address: address.raw.clone(),
            scheme: address.scheme.clone(),
            installed: message,
        }
    }

    /// Finds a plugin by scheme, or loads one from a file, for inspection.
    pub fn inspect(&self, what: &str) -> Result<Inspected, ConnectorError> {
        if let Some(plugin) = self.plugin_for(what)? {
            return Ok(Inspected::Plugin(plugin));
        }
        let path = Path::new(what);
        if path.is_file() {
            let external = self.load_external(path)?;
            return Ok(Inspected::File(Box::new(external)));
        }
        Err(ConnectorError::NoSuchPlugin(what.to_string()))
    }

    /// Plugins in plugin folders that claim a scheme they may not take.
    fn conflicts(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
        for external in &self.externals {
            let ExternalState::Loaded(plugin) = &external.state else {
                continue;
            };
            for scheme in &plugin.info.schemes {
                let overridden = self.settings.overrides.iter().any(|o| o == scheme);
                let taken = NATIVE_SCHEMES.contains(&scheme.as_str())
                    || Self::built_in_for(scheme).is_some();
                if let Some(first) = seen.get(scheme.as_str()) {
                    warnings.push(format!(
                        "plugin `{}` also serves `{scheme}`; `{}` comes first in the plugin path and is used",
                        external.path.display(),
                        first.display()
                    ));
                } else if taken && !overridden {
                    warnings.push(format!(
                        "plugin `{}` serves `{scheme}`, which copa has built in; the built-in one is used (allow the replacement with --plugin-override {scheme})",
                        external.path.display()
                    ));
                } else {
                    seen.insert(scheme, &external.path);
                }
            }
        }
        warnings
    }
}

/// A plugin found by `inspect`.
pub enum Inspected {
    Plugin(Arc<LoadedPlugin>),
    File(Box<External>),
}

/// The `*.wasm` files in the plugin folders, folder by folder, sorted by name.
fn plugin_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// `unix://PATH` and `tcp://HOST:PORT`.
fn resolve_native(address: &Address) -> Result<DialSpec, ConnectorError> {
    let invalid = |reason: String| ConnectorError::Invalid {
        address: address.raw.clone(),
        reason,
    };
    if !address.query.is_empty() {
        return Err(invalid(format!(
            "`{}://` takes no query parameters",
            address.scheme
        )));
    }
    if address.username.is_some() {
        return Err(invalid(format!(
            "`{}://` takes no user name",
            address.scheme
        )));
    }

    match address.scheme.as_str() {
        "unix" => {
            // `unix:///abs/path` or, as buildctl allows, `unix://relative/path`.
            let path = match &address.host {
                None => address.path.clone(),
                Some(_) => address.rest().to_string(),
            };
            if path.is_empty() {
                return Err(invalid("the socket path is empty".into()));
            }
            Ok(DialSpec::Unix { path })
        }
        "tcp" => {
            let host = address
                .host
                .clone()
                .ok_or_else(|| invalid("the host is missing".into()))?;
            let port = address
                .port
                .ok_or_else(|| invalid(format!("the port is missing; use `tcp://{host}:1234`")))?;
            if !matches!(address.path.as_str(), "" | "/") {
                return Err(invalid(format!(
                    "`tcp://` takes no path, found `{}`",
                    address.path
                )));
            }
            Ok(DialSpec::Tcp { host, port })
        }
        other => Err(invalid(format!("`{other}` is not a native scheme"))),
    }
}

#[cfg(test)]
mod tests;
