//! `copa`: patch the OS packages of a container image through BuildKit.

mod buildkit;
mod dial;

fn main() {}
