//! The LLB builder: describes what BuildKit should do (image sources,
//! execs, file actions, merges and diffs) as a graph of immutable states,
//! and marshals it into the `pb::Definition` a solve request carries.
//!
//! ```ignore
//! let debian = Image::new("debian:bookworm")?.platform(platform::linux_amd64()).state();
//! let run = debian
//!     .run(["sh", "-c", "echo hi > /out/x"])
//!     .mount(Mount::scratch("/out"))
//!     .custom_name("Say hi")
//!     .finish();
//! let definition = run.mount("/out").unwrap().marshal_for(&platform::linux_amd64())?;
//! ```
//!
//! The output is byte for byte what BuildKit's Go builder produces for the
//! same graph (see `marshal` for the two encoding rules that takes), which
//! the golden tests check against definitions written by the Go builder
//! itself. This module is pure: it never talks to a daemon, never reads
//! the environment or the filesystem, and never resolves an image.

mod caps;
mod diff;
mod error;
mod exec;
mod file;
mod marshal;
mod merge;
mod path;
pub mod platform;
mod reference;
mod source;
mod state;

#[cfg(test)]
mod tests;

pub use diff::{Diff, diff};
pub use error::LlbError;
pub use exec::{Exec, ExecState, Mount, Network, ProxyEnv};
pub use file::{FileAction, FileOp, Owner};
pub use marshal::{digest_of, encode_op};
pub use merge::{Merge, merge};
pub use reference::normalize as normalize_reference;
pub use source::{ATTR_RESOLVE_MODE, Image, ResolveMode};
pub use state::{CUSTOM_NAME_KEY, State, scratch};
