//! `pylon-control-bench`: see `pylon-control-bench --help` and
//! [`pylon_bench::process::control_bench`].

use clap::Parser;
use pylon_bench::process::control_bench;

fn main() -> std::process::ExitCode {
    let cli = control_bench::Cli::parse();
    pylon_service::process::exit_status("pylon-control-bench", control_bench::run(cli))
}
