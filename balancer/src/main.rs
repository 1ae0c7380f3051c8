//! `pylon-balancer`: see `pylon-balancer --help` and the `pylon_balancer` library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pylon_balancer::Cli::parse();
    cli.log.init();
    pylon_service::process::exit_status("pylon-balancer", pylon_balancer::run(cli))
}
