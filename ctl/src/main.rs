//! `pylonctl`: see `pylonctl --help`, and `pylon_ctl::cli` for the commands.

fn main() -> std::process::ExitCode {
    pylon_ctl::cli::main()
}
