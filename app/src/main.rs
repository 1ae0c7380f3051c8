//! `pylon-app`: see `pylon-app --help` and [`pylon_app::process`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pylon_app::process::Cli::parse();
    cli.log.init();
    pylon_service::process::exit_status("pylon-app", pylon_app::process::run(cli))
}
