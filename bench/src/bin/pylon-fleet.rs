//! `pylon-fleet`: see `pylon-fleet --help` and [`pylon_bench::process::fleet`].

use clap::Parser;
use pylon_bench::process::fleet;

fn main() -> std::process::ExitCode {
    let cli = fleet::Cli::parse();
    fleet::init_logging();
    pylon_service::process::exit_status("pylon-fleet", fleet::run(cli))
}
