//! `igpt-onnx` command line: parses arguments, runs one command from [`cli`], and prints every
//! problem as one `error: …` line.
//!
//! Exit codes, the same in every command:
//! - 0: done (verify: every check passed);
//! - 1: a graph did not compute what it should: verify's failed checks, or a graph that a
//!   runtime failed to load or run (an adapter's time-out included) in any command;
//! - 2: the command could not start or finish for a reason outside the graph's computation:
//!   usage, an unreadable or invalid input, an unwritable output, a runtime missing here, a
//!   runtime that does not run the graph's profile;
//! - 130: stopped by SIGINT, SIGTERM or SIGHUP (half-written files and adapters are removed).

mod cli;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    // An interrupted command leaves no half-written file behind.
    igpt_onnx::base::files::remove_on_interrupt();
    let parsed = match cli::Cli::try_parse() {
        Ok(c) => c,
        // Help and version go to stdout as clap prints them.
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {}", cli::clap_line(&e));
            return ExitCode::from(2);
        }
    };
    if parsed.version {
        return match cli::print_out(&cli::version_text()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot print: {e}");
                ExitCode::from(2)
            }
        };
    }
    let Some(command) = parsed.command else {
        eprintln!("error: a command is needed (igpt-onnx --help lists them)");
        return ExitCode::from(2);
    };
    match command.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cli::one_line(&e));
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
