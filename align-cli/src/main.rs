//! The `align` binary. Its commands arrive with the server and CLI issues (#6, #8); until then it
//! says so plainly and exits with status 2 rather than pretending to work.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "align {}: no commands are available yet (the server and CLI are still being built)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
