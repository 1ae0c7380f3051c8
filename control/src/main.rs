//! `pylon-control`: see `pylon-control --help` and [`pylon_control::process`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pylon_control::process::Cli::parse();
    cli.log.init();
    pylon_service::process::exit_status("pylon-control", pylon_control::process::run(cli))
}
