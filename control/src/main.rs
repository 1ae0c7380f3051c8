//! `pylon-control`: see `pylon-control --help` and [`pylon_control::process`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pylon_control::process::Cli::parse();
    cli.log.init();
    match pylon_control::process::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pylon-control: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
