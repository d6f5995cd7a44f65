//! `copa`: patch the OS packages of a container image through BuildKit.
//!
//! Data flows one way: address → connector → dial → buildkit → llb → patch.
//! The binary (`main.rs`) only runs [`cli::run`] and prints its error.

pub mod address;
pub mod buildkit;
pub mod cli;
pub mod connector;
pub mod dial;
pub mod llb;
pub mod patch;
