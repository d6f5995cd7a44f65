//! `copa`: patch the OS packages of a container image through BuildKit.
//!
//! Data flows one way: address → connector → dial → buildkit (→ patch).

mod address;
mod buildkit;
mod cli;
mod connector;
mod dial;
mod llb;
mod patch;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The one place an error reaches the user: the whole chain, once.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
