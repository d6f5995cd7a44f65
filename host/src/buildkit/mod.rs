//! The BuildKit client: one gRPC channel to a daemon (over whatever byte
//! stream the dialer produced), the read-only calls copa makes before a
//! build, the reversed session, and gateway builds.
//!
//! This module speaks BuildKit's wire protocol and nothing else: it never
//! decides where the daemon is (that is `dial` and the connectors), never
//! encodes LLB ops (that is `llb`), and never prints to the user.

pub mod auth;
pub mod client;
pub mod error;
pub mod filesend;
pub mod gateway;
pub mod proto;
pub mod session;

#[cfg(test)]
pub(crate) mod tests;

pub use client::{Capabilities, Client, DaemonInfo, Worker};
