//! `pylon-refserver`: see `pylon-refserver --help` and [`pylon_bench::process::refserver`].

use clap::Parser;
use pylon_bench::process::refserver;

fn main() -> std::process::ExitCode {
    let cli = refserver::Cli::parse();
    refserver::init_logging();
    pylon_service::process::exit_status("pylon-refserver", refserver::run(cli))
}
