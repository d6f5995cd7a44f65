//! Patching an image, once copa is connected to BuildKit: read the report,
//! build the update graph, check the result, deliver the image.
//!
//! This module drives the work; it never speaks BuildKit's wire protocol
//! itself (that is `buildkit`), never encodes LLB (that is `llb`), and never
//! prints to the user (that is the CLI).

pub mod build;
pub mod deliver;
pub mod dpkg;
pub mod report;
pub mod vex;
