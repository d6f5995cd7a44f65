//! The `copa` binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    match copa::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The one place an error reaches the user: the whole chain, once,
            // on one line (a daemon's message may span several).
            let text = format!("{error:#}");
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", lines.join("; "));
            ExitCode::FAILURE
        }
    }
}
