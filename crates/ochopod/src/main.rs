//! `ochopod`: the coordination runtime (`ochopod run`, a container's entrypoint) and its tools.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT, child torn down, session closed);
//! 1 when the runtime cannot run (control port taken, TLS files unreadable…); 2 for bad usage, a
//! bad declaration or missing platform data, reported before anything touches ZooKeeper.

mod cli;
mod logging;
mod portal;
mod render;
mod run;
mod tools;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `ochopod run` re-executes itself as its keeper (see ochopod_proc::keeper): before clap, so
    // the keeper stays tiny and the argument stays out of the help.
    if std::env::args_os().nth(1).is_some_and(|a| a == ochopod_proc::keeper::ARG) {
        return ochopod_proc::keeper::main();
    }
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => run::main(args, cli.verbose, cli.log_format),
        cli::Command::Validate(args) => render::validate(args),
        cli::Command::Render(args) => render::render(args),
        cli::Command::Portal(args) => portal::main(args, cli.verbose, cli.log_format),
        cli::Command::Deploy(args) => portal::deploy::deploy_main(args),
        cli::Command::Scale(args) => portal::deploy::scale_main(args, false),
        cli::Command::Delete(args) => portal::deploy::scale_main(args, true),
        cli::Command::Dashboard(args) => portal::dashboard::main(args),
        cli::Command::Tool(tool) => tools::main(tool),
    }
}
