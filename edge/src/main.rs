//! `pylon-edge`: holds charger connections (YKC over TCP and TLS). See `pylon-edge --help`
//! and [`pylon_edge::process`].

use clap::Parser;

fn main() {
    let cli = pylon_edge::process::Cli::parse();
    cli.log.init();
    if let Err(e) = pylon_edge::process::run(cli) {
        eprintln!("pylon-edge: {e:#}");
        std::process::exit(1);
    }
}
