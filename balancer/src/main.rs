//! `pylon-balancer`: see `pylon-balancer --help` and the `pylon_balancer` library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pylon_balancer::Cli::parse();
    cli.log.init();
    match pylon_balancer::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pylon-balancer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
