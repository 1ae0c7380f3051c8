//! `pylonctl`: see `pylonctl --help`, and `pylon_control::cli` for the commands.

fn main() -> std::process::ExitCode {
    pylon_control::cli::main()
}
