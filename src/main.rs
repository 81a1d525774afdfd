//! The `ankisyncd` binary: everything lives in the library; this prints the error, if any.

use std::process::ExitCode;

fn main() -> ExitCode {
    match ankisyncd::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every error's message already carries its cause.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
