//! Plugin runtime: compiles connector components (with an on-disk cache of
//! native code), and calls `describe` and `resolve` inside a sandbox with a
//! deadline and a memory limit.
//!
//! A plugin gets no network, no stdin, and only the variables and read-only
//! folders the sandbox grants. This module never dials what a plugin returns.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::policy::Policy;
use super::sandbox::{Capabilities, Grants};
use crate::address::Address;
use crate::dial::DialSpec;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
    });
}

use bindings::copa::connector::types as wit;

/// How often the engine's epoch advances; plugin deadlines are counted in these.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// At most this many linear memories per plugin instance (their sizes count
/// together against the memory limit).
const MAX_MEMORIES: usize = 4;

/// What a plugin says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub schemes: Vec<String>,
    pub summary: String,
    pub capabilities: Capabilities,
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// Compiled into copa.
    BuiltIn,
    /// Loaded from a file in a plugin folder.
    File { path: PathBuf },
}

/// A compiled plugin and its description.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub origin: Origin,
    component: Component,
}

/// Why a plugin could not be loaded or could not resolve an address.
#[derive(Debug, Error)]
pub enum PluginError {
    #[error("failed to compile plugin `{plugin}`")]
    Compile {
        plugin: String,
        #[source]
        source: BoxError,
    },
    #[error("failed to instantiate plugin `{plugin}`")]
    Instantiate {
        plugin: String,
        #[source]
        source: BoxError,
    },
    #[error("plugin `{plugin}` ran past its deadline of {} ms in `{call}`", deadline.as_millis())]
    Deadline {
        plugin: String,
        call: &'static str,
        deadline: Duration,
    },
    #[error("plugin `{plugin}` tried to grow its memory past the limit of {} MiB in `{call}`", limit >> 20)]
    Memory {
        plugin: String,
        call: &'static str,
        limit: usize,
    },
    #[error("plugin `{plugin}` failed in `{call}`")]
    Trap {
        plugin: String,
        call: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{message}")]
    Resolve {
        kind: ResolveErrorKind,
        message: String,
    },
}

/// The kinds of `resolve-error` a plugin can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResolveErrorKind {
    InvalidAddress,
    NotFound,
    Unsupported,
    Environment,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn boxed(error: wasmtime::Error) -> BoxError {
    anyhow::Error::from(error).into()
}

/// The digest a policy names a plugin by: `sha256:<hex>` of its bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Per-call state: the WASI context and the memory limiter.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses memory growth past a limit, counting all of an instance's memories
/// together, and remembers that it did, so the trap that follows in the guest
/// can be reported as what it is.
struct MemoryLimiter {
    limit: usize,
    used: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_add(desired.saturating_sub(current));
        if total > self.limit {
            self.refused = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The engine shared by all plugins of one copa run.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache_dir: Option<PathBuf>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Creates the engine; `cache_dir` holds precompiled plugins (`None`
    /// compiles in memory every time).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // A trap is reported by its cause; wasm backtraces mean nothing to
        // the user and span many lines.
        config.wasm_backtrace_max_frames(None);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("copa-plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;

        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            ticker_stop,
        })
    }

    /// Compiles a component (or takes it from the cache) and asks it what it is.
    pub fn load(
        &self,
        label: &str,
        bytes: &[u8],
        origin: Origin,
        policy: &Policy,
    ) -> Result<LoadedPlugin, PluginError> {
        let digest = digest(bytes);
        let component = self.compile(label, bytes, &digest)?;

        let (mut store, instance) =
            self.instantiate(label, &component, &Grants::default(), policy)?;
        let connector = instance.copa_connector_connector();
        let info = connector.call_describe(&mut store);
        let info = self.finish(label, "describe", &store, policy, info)?;

        Ok(LoadedPlugin {
            info: info.into(),
            digest,
            origin,
            component,
        })
    }

    /// Calls the plugin's `resolve` with exactly the grants its declaration
    /// earns.
    pub fn resolve(
        &self,
        plugin: &LoadedPlugin,
        address: &Address,
        policy: &Policy,
    ) -> Result<DialSpec, PluginError> {
        let name = &plugin.info.name;
        let grants = plugin
            .info
            .capabilities
            .grants(|var| std::env::var(var).ok());
        tracing::debug!(plugin = %name, env = ?grants.env.iter().map(|(k, _)| k).collect::<Vec<_>>(), folders = ?grants.folders, "granting");

        let (mut store, instance) = self.instantiate(name, &plugin.component, &grants, policy)?;
        let connector = instance.copa_connector_connector();
        let result = connector.call_resolve(&mut store, &to_wit(address));
        let result = self.finish(name, "resolve", &store, policy, result)?;

        match result {
            Ok(spec) => Ok(spec.into()),
            Err(error) => Err(error.into()),
        }
    }

    fn compile(&self, label: &str, bytes: &[u8], digest: &str) -> Result<Component, PluginError> {
        let compile_error = |source| PluginError::Compile {
            plugin: label.to_string(),
            source,
        };
        let Some(cache_path) = self.cache_path(digest) else {
            return Component::new(&self.engine, bytes).map_err(|e| compile_error(boxed(e)));
        };

        if cache_path.exists() {
            // SAFETY: the file is native code that this same engine version
            // wrote into the user's own cache folder (the name carries the
            // component digest and the engine's compatibility hash). Anyone
            // who can write there can already run code as this user.
            match unsafe { Component::deserialize_file(&self.engine, &cache_path) } {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::debug!(path = %cache_path.display(), %error, "discarding unusable cached plugin");
                }
            }
        }

        let native = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| compile_error(boxed(e)))?;
        if let Err(error) = write_atomically(&cache_path, &native) {
            tracing::debug!(path = %cache_path.display(), %error, "cannot cache compiled plugin");
        }
        // SAFETY: `native` was produced just now by this engine.
        unsafe { Component::deserialize(&self.engine, &native) }
            .map_err(|e| compile_error(boxed(e)))
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let hex = digest.trim_start_matches("sha256:");
        Some(dir.join(format!("{hex}-{:016x}.cwasm", hasher.finish())))
    }

    fn instantiate(
        &self,
        label: &str,
        component: &Component,
        grants: &Grants,
        policy: &Policy,
    ) -> Result<(Store<CallState>, bindings::Plugin), PluginError> {
        let mut wasi = WasiCtxBuilder::new();
        // A plugin's stderr is discarded, except with `--debug`, when it is
        // passed through so plugin authors can see what their code printed.
        if tracing::enabled!(tracing::Level::DEBUG) {
            wasi.inherit_stderr();
        }
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (name, value) in &grants.env {
            wasi.env(name, value);
        }
        for folder in &grants.folders {
            let guest = folder.to_string_lossy();
            if let Err(error) = wasi.preopened_dir(folder, guest, FsPerms::ReadOnly) {
                tracing::debug!(folder = %folder.display(), %error, "cannot grant folder");
            }
        }

        let state = CallState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: policy.memory_limit(),
                used: 0,
                refused: false,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(policy.call_deadline()));

        let instance =
            bindings::Plugin::instantiate(&mut store, component, &self.linker).map_err(|e| {
                match classify(label, "instantiate", &store, policy, e) {
                    PluginError::Trap { plugin, source, .. } => {
                        PluginError::Instantiate { plugin, source }
                    }
                    other => other,
                }
            })?;
        Ok((store, instance))
    }

    fn finish<T>(
        &self,
        label: &str,
        call: &'static str,
        store: &Store<CallState>,
        policy: &Policy,
        result: wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        result.map_err(|e| classify(label, call, store, policy, e))
    }
}

fn classify(
    label: &str,
    call: &'static str,
    store: &Store<CallState>,
    policy: &Policy,
    error: wasmtime::Error,
) -> PluginError {
    let plugin = label.to_string();
    if store.data().limiter.refused {
        return PluginError::Memory {
            plugin,
            call,
            limit: policy.memory_limit(),
        };
    }
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return PluginError::Deadline {
            plugin,
            call,
            deadline: policy.call_deadline(),
        };
    }
    tracing::debug!(plugin = %plugin, call, error = ?error, "plugin trapped");
    let source: BoxError = match error.downcast_ref::<Trap>() {
        Some(trap) => Box::new(*trap),
        None => boxed(error),
    };
    PluginError::Trap {
        plugin,
        call,
        source,
    }
}

fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn to_wit(address: &Address) -> wit::Address {
    wit::Address {
        raw: address.raw.clone(),
        scheme: address.scheme.clone(),
        username: address.username.clone(),
        host: address.host.clone(),
        port: address.port,
        path: address.path.clone(),
        query: address.query.clone(),
    }
}

impl From<wit::PluginInfo> for PluginInfo {
    fn from(info: wit::PluginInfo) -> Self {
        PluginInfo {
            name: info.name,
            version: info.version,
            schemes: info.schemes,
            summary: info.summary,
            capabilities: Capabilities {
                env: info.capabilities.env,
                folders: info.capabilities.folders,
                programs: info.capabilities.programs,
                docker_engine: info.capabilities.docker_engine,
            },
        }
    }
}

impl From<wit::DialSpec> for DialSpec {
    fn from(spec: wit::DialSpec) -> Self {
        match spec {
            wit::DialSpec::Unix(path) => DialSpec::Unix { path },
            wit::DialSpec::Tcp(t) => DialSpec::Tcp {
                host: t.host,
                port: t.port,
            },
            wit::DialSpec::Spawn(s) => DialSpec::Spawn {
                program: s.program,
                args: s.args,
                env: s.env,
            },
            wit::DialSpec::DockerGrpc(endpoint) => DialSpec::DockerGrpc { endpoint },
            wit::DialSpec::DockerExec(e) => DialSpec::DockerExec {
                endpoint: e.endpoint,
                container: e.container,
                command: e.command,
            },
        }
    }
}

impl From<wit::ResolveError> for PluginError {
    fn from(error: wit::ResolveError) -> Self {
        let (kind, message) = match error {
            wit::ResolveError::InvalidAddress(m) => (ResolveErrorKind::InvalidAddress, m),
            wit::ResolveError::NotFound(m) => (ResolveErrorKind::NotFound, m),
            wit::ResolveError::Unsupported(m) => (ResolveErrorKind::Unsupported, m),
            wit::ResolveError::Environment(m) => (ResolveErrorKind::Environment, m),
        };
        // A plugin's message is printed on one line; keep it that way.
        let message = message.replace(['\n', '\r'], " ");
        PluginError::Resolve { kind, message }
    }
}
