//! The LLB capability ids the builder puts into `OpMetadata.caps`, spelled
//! as BuildKit's `solver/pb/caps.go` spells them. The daemon refuses a graph
//! that claims a cap it does not have, so an op lists a cap exactly when it
//! uses the feature, as Go's builder does.
//!
//! Only ids; which op claims which is decided by the op builders.

pub const SOURCE_IMAGE: &str = "source.image";
pub const SOURCE_IMAGE_RESOLVE_MODE: &str = "source.image.resolvemode";

pub const EXEC_META_BASE: &str = "exec.meta.base";
pub const EXEC_META_NETWORK: &str = "exec.meta.network";
pub const EXEC_META_PROXY: &str = "exec.meta.proxyenv";
pub const EXEC_MOUNT_BIND: &str = "exec.mount.bind";
pub const EXEC_MOUNT_SELECTOR: &str = "exec.mount.selector";
pub const EXEC_MOUNT_TMPFS: &str = "exec.mount.tmpfs";
pub const EXEC_MOUNT_TMPFS_SIZE: &str = "exec.mount.tmpfs.size";
pub const EXEC_VALID_EXIT_CODE: &str = "exec.validexitcode";

pub const FILE_BASE: &str = "file.base";

pub const MERGE_OP: &str = "mergeop";
pub const DIFF_OP: &str = "diffop";

/// On the terminal op, always.
pub const CONSTRAINTS: &str = "constraints";
/// On the terminal op, always.
pub const PLATFORM: &str = "platform";
/// On the terminal op when any op ignores the cache.
pub const META_IGNORE_CACHE: &str = "meta.ignorecache";
/// On the terminal op when any op has a description.
pub const META_DESCRIPTION: &str = "meta.description";
