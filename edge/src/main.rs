//! `pylon-edge`: holds charger connections (YKC over TCP and TLS). See `pylon-edge --help`
//! and [`pylon_edge::process`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pylon_edge::process::Cli::parse();
    cli.log.init();
    pylon_service::process::exit_status("pylon-edge", pylon_edge::process::run(cli))
}
