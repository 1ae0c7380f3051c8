//! `pylon-app`: see `pylon-app --help` and [`pylon_app::process`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pylon_app::process::Cli::parse();
    cli.log.init();
    match pylon_app::process::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pylon-app: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
