//! The graph itself: [`State`] (a filesystem produced by some op, plus the
//! settings later execs inherit: env, working directory, user, platform,
//! network), the shared op nodes behind it, and the per-op metadata every
//! op builder accepts.
//!
//! Nothing here is encoded: states are cheap immutable values that point at
//! op nodes, and `marshal` turns the nodes into bytes. A state never talks to
//! a daemon, so an image config has to be handed in by the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::buildkit::proto::pb;

use super::LlbError;
use super::exec::{ExecSpec, Network};
use super::file::FileSpec;
use super::path;
use super::platform;
use super::source::SourceSpec;

/// The `OpMetadata.description` key whose value names an op in progress
/// output.
pub const CUSTOM_NAME_KEY: &str = "llb.customname";

/// Metadata of one op that does not change its digest.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpOptions {
    pub(crate) ignore_cache: bool,
    pub(crate) description: BTreeMap<String, String>,
    pub(crate) progress_group: Option<pb::ProgressGroup>,
}

/// The metadata setters shared by every op builder (which must have an
/// `options: OpOptions` field).
macro_rules! op_options_methods {
    () => {
        /// Names the op in progress output (`llb.customname`).
        pub fn custom_name(mut self, name: impl Into<String>) -> Self {
            self.options
                .description
                .insert($crate::llb::CUSTOM_NAME_KEY.to_string(), name.into());
            self
        }

        /// Adds a free-form description entry; the daemon does not
        /// interpret it. An empty value is not sent (prost drops it).
        pub fn description(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
            self.options.description.insert(key.into(), value.into());
            self
        }

        /// Runs the op again even when the daemon has its result cached.
        pub fn ignore_cache(mut self) -> Self {
            self.options.ignore_cache = true;
            self
        }

        /// Shows the op under a shared progress group.
        pub fn progress_group(
            mut self,
            id: impl Into<String>,
            name: impl Into<String>,
            weak: bool,
        ) -> Self {
            self.options.progress_group = Some($crate::buildkit::proto::pb::ProgressGroup {
                id: id.into(),
                name: name.into(),
                weak,
            });
            self
        }
    };
}
pub(crate) use op_options_methods;

/// One op of the graph, shared by every state that uses one of its outputs.
#[derive(Debug)]
pub(crate) struct Vertex {
    pub(crate) op: VertexOp,
    pub(crate) options: OpOptions,
    /// LLB capabilities the op needs, decided when it was built.
    pub(crate) caps: BTreeSet<&'static str>,
}

#[derive(Debug)]
pub(crate) enum VertexOp {
    Source(SourceSpec),
    Exec(ExecSpec),
    File(FileSpec),
    Merge(Vec<Output>),
    Diff {
        lower: Output,
        upper: Option<Output>,
    },
}

/// One output of a vertex.
#[derive(Clone, Debug)]
pub(crate) struct Output {
    pub(crate) vertex: Arc<Vertex>,
    pub(crate) index: i64,
    /// The platform a state built on this output starts with (image sources
    /// that were given one), as given.
    pub(crate) platform: Option<pb::Platform>,
}

impl Output {
    pub(crate) fn new(vertex: Vertex, index: i64) -> Self {
        Output {
            vertex: Arc::new(vertex),
            index,
            platform: None,
        }
    }

    /// The same output object: same vertex node, same index.
    pub(crate) fn is(&self, other: &Output) -> bool {
        Arc::ptr_eq(&self.vertex, &other.vertex) && self.index == other.index
    }
}

/// A filesystem in the making (the output of some op, or scratch) and the
/// settings that execs run on it inherit.
///
/// States are immutable: every setter returns a new one. Cloning is cheap
/// apart from the env list.
#[derive(Clone, Debug)]
pub struct State {
    pub(crate) output: Option<Output>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) dir: String,
    pub(crate) user: String,
    pub(crate) platform: Option<pb::Platform>,
    pub(crate) network: Network,
}

/// The empty filesystem.
pub fn scratch() -> State {
    State::from_output(None)
}

impl State {
    /// A fresh state on `output`: working directory `/`, no env, and the
    /// output's platform if it has one.
    pub(crate) fn from_output(output: Option<Output>) -> State {
        let platform = output
            .as_ref()
            .and_then(|o| o.platform.clone())
            .map(platform::normalize);
        State {
            output,
            env: Vec::new(),
            dir: "/".to_string(),
            user: String::new(),
            platform,
            network: Network::Sandbox,
        }
    }

    /// This state's settings on another output.
    pub(crate) fn with_output(&self, output: Output) -> State {
        let mut next = self.clone();
        if let Some(p) = &output.platform {
            next.platform = Some(platform::normalize(p.clone()));
        }
        next.output = Some(output);
        next
    }

    /// Whether this is the empty filesystem.
    pub fn is_scratch(&self) -> bool {
        self.output.is_none()
    }

    /// Sets `key=value` for later execs. A key set before moves to the end
    /// of the list with its new value, as in Go's builder.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> State {
        set_env(&mut self.env, key.into(), value.into());
        self
    }

    /// Sets the working directory of later execs and the base of relative
    /// file-action paths; a relative `dir` is taken from the current one.
    pub fn with_dir(mut self, dir: &str) -> State {
        self.dir = path::resolve_dir(&self.dir, dir);
        self
    }

    /// Sets the user later execs run as (`name`, `uid` or `uid:gid`).
    pub fn with_user(mut self, user: impl Into<String>) -> State {
        self.user = user.into();
        self
    }

    /// Sets the platform later execs run on, normalised.
    pub fn with_platform(mut self, platform: pb::Platform) -> State {
        self.platform = Some(platform::normalize(platform));
        self
    }

    /// Sets the network later execs get.
    pub fn with_network(mut self, network: Network) -> State {
        self.network = network;
        self
    }

    /// Applies an OCI image config (its JSON): `config.Env` entries are added
    /// in order, `config.WorkingDir` becomes the directory, and `os` and
    /// `architecture` (with `variant`, `os.version`, `os.features`) the
    /// platform when both are set. The image's `User` is left alone, as Go's
    /// builder does. Keys match case-insensitively when there is no exact
    /// match, as Go's JSON decoding does.
    pub fn with_image_config(mut self, config: &[u8]) -> Result<State, LlbError> {
        let config: Value = serde_json::from_slice(config).map_err(LlbError::ImageConfig)?;
        let inner = field(&config, "config");

        let env = inner.and_then(|c| field(c, "Env"));
        for entry in env.and_then(Value::as_array).into_iter().flatten() {
            let Some(entry) = entry.as_str() else {
                continue;
            };
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            if !key.is_empty() {
                set_env(&mut self.env, key.to_string(), value.to_string());
            }
        }

        let working_dir = inner.and_then(|c| text(c, "WorkingDir")).unwrap_or("");
        self.dir = path::resolve_dir(&self.dir, working_dir);

        let os = text(&config, "os").unwrap_or("");
        let architecture = text(&config, "architecture").unwrap_or("");
        if !os.is_empty() && !architecture.is_empty() {
            let features = field(&config, "os.features").and_then(Value::as_array);
            self.platform = Some(platform::normalize(pb::Platform {
                os: os.to_string(),
                architecture: architecture.to_string(),
                variant: text(&config, "variant").unwrap_or("").to_string(),
                os_version: text(&config, "os.version").unwrap_or("").to_string(),
                os_features: features
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect(),
            }));
        }
        Ok(self)
    }

    /// The value of one env entry, if set.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every env entry, in the order execs get them.
    pub fn env_vars(&self) -> &[(String, String)] {
        &self.env
    }

    /// The working directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The platform execs on this state run on, if one was set.
    pub fn platform(&self) -> Option<&pb::Platform> {
        self.platform.as_ref()
    }
}

/// Adds or replaces `key`, moving it to the end of the list.
pub(crate) fn set_env(env: &mut Vec<(String, String)>, key: String, value: String) {
    env.retain(|(k, _)| *k != key);
    env.push((key, value));
}

/// A JSON object member by exact name, else by case-insensitive name.
fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    let map = object.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn text<'a>(object: &'a Value, name: &str) -> Option<&'a str> {
    field(object, name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_an_env_entry_moves_it_to_the_end() {
        let st = scratch()
            .with_env("A", "1")
            .with_env("B", "2")
            .with_env("A", "3");
        assert_eq!(
            st.env_vars(),
            [("B".into(), "2".into()), ("A".into(), "3".into())]
        );
        assert_eq!(st.env_var("A"), Some("3"));
        assert_eq!(st.env_var("C"), None);
    }

    #[test]
    fn relative_dirs_build_on_the_current_one() {
        let st = scratch().with_dir("work").with_dir("sub/../x");
        assert_eq!(st.dir(), "/work/x");
        assert_eq!(scratch().dir(), "/");
    }

    #[test]
    fn image_config_sets_env_dir_and_platform_but_not_user() {
        let config = concat!(
            r#"{"architecture":"aarch64","os":"linux","config":{"#,
            r#""env":["PATH=/bin","NOVALUE","=skipped","X=a=b"],"WorkingDir":"srv","User":"app"}}"#
        );
        let st = scratch().with_image_config(config.as_bytes()).unwrap();
        assert_eq!(
            st.env_vars(),
            [
                ("PATH".into(), "/bin".into()),
                ("NOVALUE".into(), "".into()),
                ("X".into(), "a=b".into())
            ]
        );
        assert_eq!(st.dir(), "/srv");
        assert_eq!(st.platform(), Some(&platform::new("linux", "arm64", "")));
        assert_eq!(st.user, "");
    }

    #[test]
    fn image_config_without_os_keeps_the_platform_unset() {
        let st = scratch()
            .with_image_config(br#"{"architecture":"amd64"}"#)
            .unwrap();
        assert_eq!(st.platform(), None);
        let err = scratch().with_image_config(b"{").unwrap_err();
        assert_eq!(err.to_string(), "failed to parse image config");
    }
}
