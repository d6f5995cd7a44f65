//! ExecOp: running a command on a state, with extra mounts (read-only binds
//! of other states, tmpfs, empty scratch directories whose contents become
//! outputs), proxy settings and network mode.
//!
//! Mount order and output numbering follow Go's builder exactly (mounts
//! sorted by destination; outputs counted over the writable, non-tmpfs
//! ones), because both are hashed. Commands are argv lists: this module never
//! splits a shell string.

use std::collections::BTreeSet;

use crate::buildkit::proto::pb;

use super::caps;
use super::path;
use super::state::{OpOptions, Output, State, Vertex, VertexOp, op_options_methods, set_env};

/// The network an exec gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// The daemon's sandboxed network (BuildKit's `UNSET`).
    #[default]
    Sandbox,
    /// The host's network; needs the `network.host` entitlement.
    Host,
    /// No network at all (BuildKit's `NONE`).
    Disabled,
}

impl Network {
    fn to_pb(self) -> pb::NetMode {
        match self {
            Network::Sandbox => pb::NetMode::Unset,
            Network::Host => pb::NetMode::Host,
            Network::Disabled => pb::NetMode::None,
        }
    }
}

/// Proxy variables the daemon hands to the process. Unlike env entries they
/// are not part of the cache key. Setting one, even all empty, sends the
/// message (as copa's Go code does for every apt call).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http_proxy: String,
    pub https_proxy: String,
    pub ftp_proxy: String,
    pub no_proxy: String,
    pub all_proxy: String,
}

/// A filesystem mounted into an exec besides its root.
#[derive(Clone, Debug)]
pub struct Mount {
    dest: String,
    source: Option<Output>,
    readonly: bool,
    selector: String,
    /// `Some(size)` for tmpfs; 0 is the daemon's default size.
    tmpfs: Option<i64>,
}

impl Mount {
    /// `state` mounted at `dest`; writable unless [`Mount::readonly`], in
    /// which case its changes become an output of the exec.
    pub fn bind(dest: impl Into<String>, state: &State) -> Mount {
        Mount {
            dest: dest.into(),
            source: state.output.clone(),
            readonly: false,
            selector: String::new(),
            tmpfs: None,
        }
    }

    /// An empty directory at `dest` whose contents after the exec are an
    /// output ([`ExecState::mount`]).
    pub fn scratch(dest: impl Into<String>) -> Mount {
        Mount {
            dest: dest.into(),
            source: None,
            readonly: false,
            selector: String::new(),
            tmpfs: None,
        }
    }

    /// A tmpfs at `dest`: nothing written there is kept.
    pub fn tmpfs(dest: impl Into<String>) -> Mount {
        Mount {
            tmpfs: Some(0),
            ..Mount::scratch(dest)
        }
    }

    /// Limits a tmpfs mount to `bytes`.
    pub fn size(mut self, bytes: i64) -> Mount {
        if self.tmpfs.is_some() {
            self.tmpfs = Some(bytes);
        }
        self
    }

    /// Mounts read-only; the mount then has no output.
    pub fn readonly(mut self) -> Mount {
        self.readonly = true;
        self
    }

    /// Mounts only `path` of the source instead of its root.
    pub fn source_path(mut self, path: impl Into<String>) -> Mount {
        self.selector = path.into();
        self
    }

    fn has_output(&self) -> bool {
        !self.readonly && self.tmpfs.is_none()
    }
}

/// An exec being set up; [`Exec::root`] or [`Exec::finish`] creates the op.
///
/// Env, directory and user start from the state it was made from and
/// changes here apply to this exec only.
#[derive(Clone, Debug)]
pub struct Exec {
    base: State,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: String,
    user: String,
    network: Network,
    proxy_env: Option<ProxyEnv>,
    valid_exit_codes: Option<Vec<i32>>,
    mounts: Vec<Mount>,
    options: OpOptions,
}

/// What an exec vertex carries.
#[derive(Debug)]
pub(crate) struct ExecSpec {
    pub(crate) meta: pb::Meta,
    pub(crate) network: pb::NetMode,
    /// As on the state; `None` takes the marshal default.
    pub(crate) platform: Option<pb::Platform>,
    /// Sorted by destination, with output indexes assigned.
    pub(crate) mounts: Vec<MountSpec>,
}

#[derive(Debug)]
pub(crate) struct MountSpec {
    pub(crate) source: Option<Output>,
    pub(crate) mount: pb::Mount,
}

/// A finished exec: its root filesystem and its other mounts as states.
#[derive(Clone, Debug)]
pub struct ExecState {
    root: State,
    mounts: Vec<(String, Option<State>)>,
}

impl State {
    /// Runs `args` (an argv list, not a shell string) on this state.
    pub fn run<I, S>(&self, args: I) -> Exec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec {
            base: self.clone(),
            args: args.into_iter().map(Into::into).collect(),
            env: self.env.clone(),
            dir: self.dir.clone(),
            user: self.user.clone(),
            network: self.network,
            proxy_env: None,
            valid_exit_codes: None,
            mounts: Vec::new(),
            options: OpOptions::default(),
        }
    }
}

impl Exec {
    /// Sets `key=value` for this exec only.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Exec {
        set_env(&mut self.env, key.into(), value.into());
        self
    }

    /// The working directory; a relative one is taken from the state's.
    pub fn dir(mut self, dir: &str) -> Exec {
        self.dir = path::resolve_dir(&self.dir, dir);
        self
    }

    /// The user to run as (`name`, `uid` or `uid:gid`).
    pub fn user(mut self, user: impl Into<String>) -> Exec {
        self.user = user.into();
        self
    }

    /// The network the process gets.
    pub fn network(mut self, network: Network) -> Exec {
        self.network = network;
        self
    }

    /// Proxy variables for the process.
    pub fn proxy_env(mut self, proxy: ProxyEnv) -> Exec {
        self.proxy_env = Some(proxy);
        self
    }

    /// Exit codes that count as success (newer daemons only; the cap makes
    /// an older one refuse the graph rather than ignore the setting).
    pub fn valid_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Exec {
        self.valid_exit_codes = Some(codes.into_iter().collect());
        self
    }

    /// Adds a mount besides the root.
    pub fn mount(mut self, mount: Mount) -> Exec {
        self.mounts.push(mount);
        self
    }

    op_options_methods!();

    /// Creates the op and returns its root filesystem.
    pub fn root(self) -> State {
        self.finish().root
    }

    /// Creates the op.
    pub fn finish(self) -> ExecState {
        let root = Mount {
            dest: "/".to_string(),
            source: self.base.output.clone(),
            readonly: false,
            selector: String::new(),
            tmpfs: None,
        };
        let mut sorted: Vec<(Option<usize>, &Mount)> = std::iter::once((None, &root))
            .chain(self.mounts.iter().enumerate().map(|(i, m)| (Some(i), m)))
            .collect();
        sorted.sort_by(|a, b| a.1.dest.cmp(&b.1.dest));

        let mut caps = BTreeSet::from([caps::EXEC_META_BASE]);
        if self.network != Network::Sandbox {
            caps.insert(caps::EXEC_META_NETWORK);
        }
        if self.proxy_env.is_some() {
            caps.insert(caps::EXEC_META_PROXY);
        }
        if self.valid_exit_codes.is_some() {
            caps.insert(caps::EXEC_VALID_EXIT_CODE);
        }

        // Output indexes count the mounts that have one, in sorted order.
        let mut next_output = 0;
        let mut mounts = Vec::with_capacity(sorted.len());
        let mut output_of = vec![-1; self.mounts.len()];
        let mut root_output = 0;
        for (user_index, mount) in &sorted {
            if !mount.selector.is_empty() {
                caps.insert(caps::EXEC_MOUNT_SELECTOR);
            }
            match mount.tmpfs {
                Some(size) => {
                    caps.insert(caps::EXEC_MOUNT_TMPFS);
                    if size > 0 {
                        caps.insert(caps::EXEC_MOUNT_TMPFS_SIZE);
                    }
                }
                None if mount.source.is_some() => {
                    caps.insert(caps::EXEC_MOUNT_BIND);
                }
                None => {}
            }

            let output = if mount.has_output() {
                next_output += 1;
                next_output - 1
            } else {
                -1
            };
            match user_index {
                Some(i) => output_of[*i] = output,
                None => root_output = output,
            }

            mounts.push(MountSpec {
                source: mount.source.clone(),
                mount: pb::Mount {
                    // Filled in when marshalling, from the de-duplicated inputs.
                    input: -1,
                    selector: mount.selector.clone(),
                    dest: mount.dest.clone(),
                    output,
                    readonly: mount.readonly,
                    mount_type: if mount.tmpfs.is_some() {
                        pb::MountType::Tmpfs as i32
                    } else {
                        pb::MountType::Bind as i32
                    },
                    tmpfs_opt: mount.tmpfs.map(|size| pb::TmpfsOpt { size }),
                },
            });
        }

        let meta = pb::Meta {
            args: self.args,
            env: self.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: self.dir,
            user: self.user,
            proxy_env: self.proxy_env.map(|p| pb::ProxyEnv {
                http_proxy: p.http_proxy,
                https_proxy: p.https_proxy,
                ftp_proxy: p.ftp_proxy,
                no_proxy: p.no_proxy,
                all_proxy: p.all_proxy,
            }),
            remove_mount_stubs_recursive: true,
            valid_exit_codes: self.valid_exit_codes.unwrap_or_default(),
        };
        let spec = ExecSpec {
            meta,
            network: self.network.to_pb(),
            platform: self.base.platform.clone(),
            mounts,
        };
        let vertex = std::sync::Arc::new(Vertex {
            op: VertexOp::Exec(spec),
            options: self.options,
            caps,
        });

        let output = |index: i64| Output {
            vertex: vertex.clone(),
            index,
            platform: None,
        };
        let mounts = self
            .mounts
            .iter()
            .zip(&output_of)
            .map(|(mount, &index)| {
                let state = if mount.readonly {
                    Some(State::from_output(mount.source.clone()))
                } else if index >= 0 {
                    Some(State::from_output(Some(output(index))))
                } else {
                    None
                };
                (mount.dest.clone(), state)
            })
            .collect();
        ExecState {
            root: self.base.with_output(output(root_output)),
            mounts,
        }
    }
}

impl ExecState {
    /// The root filesystem after the exec, with the settings of the state
    /// the exec was made from.
    pub fn root(&self) -> State {
        self.root.clone()
    }

    /// The filesystem of the mount at `dest` after the exec, as a fresh
    /// state (directory `/`, no env). A read-only mount gives its unchanged
    /// source; a tmpfs mount, or no mount at `dest`, gives `None`.
    pub fn mount(&self, dest: &str) -> Option<State> {
        self.mounts
            .iter()
            .find(|(d, _)| d == dest)
            .and_then(|(_, state)| state.clone())
    }
}
