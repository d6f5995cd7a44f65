//! The `copa` binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    match copa::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The one place an error reaches the user: the whole chain, once.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
