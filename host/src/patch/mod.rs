//! Patching an image, once copa is connected to BuildKit: read the report,
//! build the update graph, check the result, deliver the image.
//!
//! This module drives the work; it never speaks BuildKit's wire protocol
//! itself (that is `buildkit`), never encodes LLB (that is `llb`), and never
//! prints to the user (that is the CLI), apart from `progress`, which renders
//! the build's progress on the writer the CLI hands it.

pub mod build;
pub mod deliver;
pub mod dpkg;
pub mod progress;
pub mod report;
pub mod vex;
