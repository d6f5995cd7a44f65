//! Image sources: the `docker-image://` SourceOp that starts every graph
//! copa builds.
//!
//! The reference is normalised here, once; resolving it (config, digest) is
//! the gateway's job, never this module's.

use std::collections::{BTreeMap, BTreeSet};

use crate::buildkit::proto::pb;

use super::LlbError;
use super::caps;
use super::reference;
use super::state::{OpOptions, Output, State, Vertex, VertexOp, op_options_methods};

/// The SourceOp attribute that selects where the image comes from.
pub const ATTR_RESOLVE_MODE: &str = "image.resolvemode";

/// Where the daemon looks for an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResolveMode {
    /// The daemon's default (no attribute is sent).
    #[default]
    Default,
    /// Always ask the registry (`pull`).
    ForcePull,
    /// Use a local copy when there is one (`local`).
    PreferLocal,
}

impl ResolveMode {
    /// The attribute value, or `None` for the default.
    fn attr(self) -> Option<&'static str> {
        match self {
            ResolveMode::Default => None,
            ResolveMode::ForcePull => Some("pull"),
            ResolveMode::PreferLocal => Some("local"),
        }
    }
}

/// A container image as the root of a graph.
///
/// ```ignore
/// let debian = Image::new("debian:bookworm")?
///     .platform(platform::linux_amd64())
///     .custom_name("Resolving image debian:bookworm")
///     .state();
/// ```
#[derive(Clone, Debug)]
pub struct Image {
    reference: String,
    platform: Option<pb::Platform>,
    resolve_mode: ResolveMode,
    options: OpOptions,
}

/// What a source vertex carries.
#[derive(Debug)]
pub(crate) struct SourceSpec {
    pub(crate) identifier: String,
    pub(crate) attrs: BTreeMap<String, String>,
    /// As given to [`Image::platform`]; `None` takes the marshal default.
    pub(crate) platform: Option<pb::Platform>,
}

impl Image {
    /// An image by reference; short names are qualified as Docker does
    /// (`debian` is `docker.io/library/debian:latest`).
    pub fn new(reference: &str) -> Result<Image, LlbError> {
        Ok(Image {
            reference: reference::normalize(reference)?,
            platform: None,
            resolve_mode: ResolveMode::Default,
            options: OpOptions::default(),
        })
    }

    /// Pulls the image for this platform; later execs run on it too. The
    /// source op carries the platform as given, the state a normalised copy.
    pub fn platform(mut self, platform: pb::Platform) -> Image {
        self.platform = Some(platform);
        self
    }

    /// Where the daemon looks for the image.
    pub fn resolve_mode(mut self, mode: ResolveMode) -> Image {
        self.resolve_mode = mode;
        self
    }

    op_options_methods!();

    /// The normalised reference, e.g. `docker.io/library/debian:bookworm`.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The image's filesystem as a state (working directory `/`, no env:
    /// apply the image config with [`State::with_image_config`]).
    pub fn state(self) -> State {
        let mut caps = BTreeSet::from([caps::SOURCE_IMAGE]);
        let mut attrs = BTreeMap::new();
        if let Some(mode) = self.resolve_mode.attr() {
            attrs.insert(ATTR_RESOLVE_MODE.to_string(), mode.to_string());
        }
        // Only the mode that enforces something needs the daemon to know it.
        if self.resolve_mode == ResolveMode::ForcePull {
            caps.insert(caps::SOURCE_IMAGE_RESOLVE_MODE);
        }

        let spec = SourceSpec {
            identifier: format!("docker-image://{}", self.reference),
            attrs,
            platform: self.platform.clone(),
        };
        let vertex = Vertex {
            op: VertexOp::Source(spec),
            options: self.options,
            caps,
        };
        let mut output = Output::new(vertex, 0);
        output.platform = self.platform;
        State::from_output(Some(output))
    }
}
