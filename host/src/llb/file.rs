//! FileOp: making directories and files, copying between states and
//! removing paths, as a chain of actions in one op where each action works
//! on the result of the one before.
//!
//! Paths are made absolute against the state's working directory when the
//! op is built, as Go's builder does; this module never touches a real
//! filesystem.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::buildkit::proto::pb;
use crate::buildkit::proto::pb::file_action::Action;

use super::caps;
use super::path;
use super::state::{OpOptions, Output, State, Vertex, VertexOp, op_options_methods};

/// Who owns what a file action creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Numeric ids.
    Ids { uid: u32, gid: u32 },
    /// `user[:group]`, each a name (looked up in the state's `/etc/passwd`
    /// and `/etc/group`) or a number; `root` is 0.
    Spec(String),
}

/// One step of a FileOp.
#[derive(Clone, Debug)]
pub struct FileAction {
    kind: ActionKind,
}

#[derive(Clone, Debug)]
enum ActionKind {
    Mkdir {
        path: String,
        mode: u32,
        parents: bool,
        owner: Option<Owner>,
        created: Option<SystemTime>,
    },
    Mkfile {
        path: String,
        mode: u32,
        data: Vec<u8>,
        owner: Option<Owner>,
        created: Option<SystemTime>,
    },
    Rm {
        path: String,
        allow_not_found: bool,
        allow_wildcard: bool,
    },
    Copy(Box<CopySpec>),
}

#[derive(Clone, Debug)]
struct CopySpec {
    from: State,
    src: String,
    dest: String,
    mode: Option<u32>,
    follow_symlinks: bool,
    contents_only: bool,
    attempt_unpack: bool,
    create_dest_path: bool,
    allow_wildcard: bool,
    allow_empty_wildcard: bool,
    include: Vec<String>,
    exclude: Vec<String>,
    owner: Option<Owner>,
    created: Option<SystemTime>,
}

impl FileAction {
    /// Creates directory `path` with permission bits `mode`.
    pub fn mkdir(path: impl Into<String>, mode: u32) -> FileAction {
        FileAction {
            kind: ActionKind::Mkdir {
                path: path.into(),
                mode,
                parents: false,
                owner: None,
                created: None,
            },
        }
    }

    /// Creates file `path` holding `data`, with permission bits `mode`.
    pub fn mkfile(path: impl Into<String>, mode: u32, data: impl Into<Vec<u8>>) -> FileAction {
        FileAction {
            kind: ActionKind::Mkfile {
                path: path.into(),
                mode,
                data: data.into(),
                owner: None,
                created: None,
            },
        }
    }

    /// Removes `path`.
    pub fn rm(path: impl Into<String>) -> FileAction {
        FileAction {
            kind: ActionKind::Rm {
                path: path.into(),
                allow_not_found: false,
                allow_wildcard: false,
            },
        }
    }

    /// Copies `src` of state `from` (relative to its directory) to `dest`.
    /// A `dest` ending in `/` means "into this directory".
    pub fn copy(from: &State, src: impl Into<String>, dest: impl Into<String>) -> FileAction {
        FileAction {
            kind: ActionKind::Copy(Box::new(CopySpec {
                from: from.clone(),
                src: src.into(),
                dest: dest.into(),
                mode: None,
                follow_symlinks: false,
                contents_only: false,
                attempt_unpack: false,
                create_dest_path: false,
                allow_wildcard: false,
                allow_empty_wildcard: false,
                include: Vec::new(),
                exclude: Vec::new(),
                owner: None,
                created: None,
            })),
        }
    }

    /// mkdir: creates missing parents too.
    pub fn parents(mut self) -> FileAction {
        if let ActionKind::Mkdir { parents, .. } = &mut self.kind {
            *parents = true;
        }
        self
    }

    /// mkdir, mkfile, copy: the owner of what is created.
    pub fn owner(mut self, new_owner: Owner) -> FileAction {
        match &mut self.kind {
            ActionKind::Mkdir { owner, .. } | ActionKind::Mkfile { owner, .. } => {
                *owner = Some(new_owner)
            }
            ActionKind::Copy(copy) => copy.owner = Some(new_owner),
            ActionKind::Rm { .. } => {}
        }
        self
    }

    /// mkdir, mkfile, copy: the modification time of what is created,
    /// instead of the time of the build.
    pub fn created(mut self, time: SystemTime) -> FileAction {
        match &mut self.kind {
            ActionKind::Mkdir { created, .. } | ActionKind::Mkfile { created, .. } => {
                *created = Some(time)
            }
            ActionKind::Copy(copy) => copy.created = Some(time),
            ActionKind::Rm { .. } => {}
        }
        self
    }

    /// rm: succeeds when the path does not exist.
    pub fn allow_not_found(mut self) -> FileAction {
        if let ActionKind::Rm {
            allow_not_found, ..
        } = &mut self.kind
        {
            *allow_not_found = true;
        }
        self
    }

    /// rm, copy: the path may be a wildcard pattern.
    pub fn allow_wildcard(mut self) -> FileAction {
        match &mut self.kind {
            ActionKind::Rm { allow_wildcard, .. } => *allow_wildcard = true,
            ActionKind::Copy(copy) => copy.allow_wildcard = true,
            _ => {}
        }
        self
    }

    /// copy: a wildcard that matches nothing is not an error.
    pub fn allow_empty_wildcard(self) -> FileAction {
        self.with_copy(|c| c.allow_empty_wildcard = true)
    }

    /// copy: sets these permission bits on the copies.
    pub fn mode(self, mode: u32) -> FileAction {
        self.with_copy(|c| c.mode = Some(mode))
    }

    /// copy: follows a symlink at `src`.
    pub fn follow_symlinks(self) -> FileAction {
        self.with_copy(|c| c.follow_symlinks = true)
    }

    /// copy: copies what is inside directory `src`, not the directory.
    pub fn contents_only(self) -> FileAction {
        self.with_copy(|c| c.contents_only = true)
    }

    /// copy: creates missing parents of `dest`.
    pub fn create_dest_path(self) -> FileAction {
        self.with_copy(|c| c.create_dest_path = true)
    }

    /// copy: unpacks `src` when it is an archive, as Dockerfile `ADD` does.
    pub fn attempt_unpack(self) -> FileAction {
        self.with_copy(|c| c.attempt_unpack = true)
    }

    /// copy: copies only paths matching these patterns.
    pub fn include_patterns(self, patterns: impl IntoIterator<Item = String>) -> FileAction {
        self.with_copy(|c| c.include.extend(patterns))
    }

    /// copy: skips paths matching these patterns.
    pub fn exclude_patterns(self, patterns: impl IntoIterator<Item = String>) -> FileAction {
        self.with_copy(|c| c.exclude.extend(patterns))
    }

    fn with_copy(mut self, change: impl FnOnce(&mut CopySpec)) -> FileAction {
        if let ActionKind::Copy(copy) = &mut self.kind {
            change(copy);
        }
        self
    }
}

/// A FileOp being set up: actions applied in order to one state.
#[derive(Clone, Debug)]
pub struct FileOp {
    base: State,
    actions: Vec<FileAction>,
    options: OpOptions,
}

/// What a file vertex carries.
#[derive(Debug)]
pub(crate) struct FileSpec {
    pub(crate) base: Option<Output>,
    pub(crate) actions: Vec<ResolvedAction>,
}

/// One action with its paths made absolute. `copy_from` is the copy
/// source's output (`None` also for a copy from scratch).
#[derive(Debug)]
pub(crate) struct ResolvedAction {
    pub(crate) action: Action,
    pub(crate) copy_from: Option<Output>,
}

impl State {
    /// Starts a FileOp on this state with its first action.
    pub fn file(&self, action: FileAction) -> FileOp {
        FileOp {
            base: self.clone(),
            actions: vec![action],
            options: OpOptions::default(),
        }
    }
}

impl FileOp {
    /// Adds an action working on the result of the previous one.
    pub fn then(mut self, action: FileAction) -> FileOp {
        self.actions.push(action);
        self
    }

    op_options_methods!();

    /// Creates the op; the result keeps the state's settings.
    pub fn state(self) -> State {
        // A user or group looked up by name is looked up in the base state,
        // which is always the op's first input when there is one.
        let base_input = if self.base.is_scratch() { -1 } else { 0 };
        let dir = self.base.dir.clone();

        let actions = self
            .actions
            .into_iter()
            .map(|a| resolve(a, &dir, base_input))
            .collect();
        let spec = FileSpec {
            base: self.base.output.clone(),
            actions,
        };
        // Go's builder also means to claim caps for copy patterns, but never
        // does (it walks its action list before filling it); copying it
        // keeps the metadata identical.
        let vertex = Vertex {
            op: VertexOp::File(spec),
            options: self.options,
            caps: BTreeSet::from([caps::FILE_BASE]),
        };
        self.base.with_output(Output::new(vertex, 0))
    }
}

fn resolve(action: FileAction, dir: &str, base_input: i64) -> ResolvedAction {
    let chown = |owner: Option<Owner>| owner.map(|o| chown_opt(o, base_input));
    match action.kind {
        ActionKind::Mkdir {
            path,
            mode,
            parents,
            owner,
            created,
        } => ResolvedAction {
            action: Action::Mkdir(pb::FileActionMkDir {
                path: path::absolute_in(dir, &path, false),
                mode: (mode & 0o777) as i32,
                make_parents: parents,
                owner: chown(owner),
                timestamp: timestamp(created),
            }),
            copy_from: None,
        },
        ActionKind::Mkfile {
            path,
            mode,
            data,
            owner,
            created,
        } => ResolvedAction {
            action: Action::Mkfile(pb::FileActionMkFile {
                path: path::absolute_in(dir, &path, false),
                mode: (mode & 0o777) as i32,
                data,
                owner: chown(owner),
                timestamp: timestamp(created),
            }),
            copy_from: None,
        },
        ActionKind::Rm {
            path,
            allow_not_found,
            allow_wildcard,
        } => ResolvedAction {
            action: Action::Rm(pb::FileActionRm {
                path: path::absolute_in(dir, &path, false),
                allow_not_found,
                allow_wildcard,
            }),
            copy_from: None,
        },
        ActionKind::Copy(copy) => {
            let CopySpec {
                from,
                src,
                dest,
                mode,
                follow_symlinks,
                contents_only,
                attempt_unpack,
                create_dest_path,
                allow_wildcard,
                allow_empty_wildcard,
                include,
                exclude,
                owner,
                created,
            } = *copy;
            let src = path::clean(&src);
            let src = if src.starts_with('/') {
                src
            } else {
                path::join(&[&from.dir, &src])
            };
            ResolvedAction {
                action: Action::Copy(pb::FileActionCopy {
                    src,
                    dest: path::absolute_in(dir, &dest, true),
                    owner: chown(owner),
                    mode: mode.map_or(-1, |m| m as i32),
                    follow_symlink: follow_symlinks,
                    dir_copy_contents: contents_only,
                    attempt_unpack_docker_compatibility: attempt_unpack,
                    create_dest_path,
                    allow_wildcard,
                    allow_empty_wildcard,
                    timestamp: timestamp(created),
                    include_patterns: include,
                    exclude_patterns: exclude,
                }),
                copy_from: from.output,
            }
        }
    }
}

fn chown_opt(owner: Owner, base_input: i64) -> pb::ChownOpt {
    use pb::user_opt::User;

    let by_id = |id: u32| pb::UserOpt {
        user: Some(User::ById(id)),
    };
    match owner {
        Owner::Ids { uid, gid } => pb::ChownOpt {
            user: Some(by_id(uid)),
            group: Some(by_id(gid)),
        },
        Owner::Spec(spec) => {
            // Numbers (and `root`) are ids, anything else a name; an empty
            // user is id 0, an empty group is left out.
            let user_opt = |part: &str| {
                let id = match part {
                    "root" => Some(0),
                    _ => part.parse::<i32>().ok().map(|id| id as u32),
                };
                match id {
                    Some(id) => by_id(id),
                    None if part.is_empty() => by_id(0),
                    None => pb::UserOpt {
                        user: Some(User::ByName(pb::NamedUserOpt {
                            name: part.to_string(),
                            input: base_input,
                        })),
                    },
                }
            };
            let (user, group) = match spec.split_once(':') {
                Some((user, group)) => (user, Some(group).filter(|g| !g.is_empty())),
                None => (spec.as_str(), None),
            };
            pb::ChownOpt {
                user: Some(user_opt(user)),
                group: group.map(user_opt),
            }
        }
    }
}

/// Nanoseconds since the epoch, or -1 for "the time of the build".
fn timestamp(time: Option<SystemTime>) -> i64 {
    match time {
        None => -1,
        Some(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_nanos() as i64,
            Err(before) => -(before.duration().as_nanos() as i64),
        },
    }
}
