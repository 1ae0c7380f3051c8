//! `pylon-backup`: see `pylon-backup --help` and the `pylon_backup` library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pylon_backup::schedule::Cli::parse();
    cli.log.init();
    pylon_service::process::exit_status("pylon-backup", pylon_backup::schedule::run(cli))
}
