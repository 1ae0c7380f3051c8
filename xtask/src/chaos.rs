//! `cargo xtask chaos`: the whole system losing one process at a time under charging
//! fleets (the `chaos` test in `tests/tests/chaos.rs`, which `cargo xtask test` leaves
//! out). Writes `target/chaos/chaos.md` and `chaos.json`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::{procs, system};

#[derive(Args)]
pub struct ChaosArgs {
    /// Chargers in all (a quarter of them over TLS), each charging in a loop.
    #[arg(long, default_value_t = 1000)]
    sessions: u64,
    /// Use debug builds (quicker to build; slower to run).
    #[arg(long)]
    debug: bool,
    /// Only the faults whose names hold one of these words (comma-separated: `kill`,
    /// `freeze`, `edge`, `app`, `control`, `etcd`, `postgres`, `restore`).
    #[arg(long, default_value = "")]
    only: String,
    /// Give up (and fail) after this many minutes.
    #[arg(long, default_value_t = 40)]
    deadline_mins: u64,
}

pub fn run(args: ChaosArgs) -> anyhow::Result<()> {
    system::prepare("chaos", system::FOR_TEST)?;
    let release: &[&str] = if args.debug { &[] } else { &["--release"] };
    let mut build = vec!["build", "--workspace", "--bins"];
    build.extend(release);
    procs::cargo(&build)?;
    let out = procs::root().join("target/chaos");
    std::fs::create_dir_all(&out)?;
    let sessions = PathBuf::from(args.sessions.to_string());
    let only = PathBuf::from(&args.only);
    let mut test = vec!["test"];
    test.extend(release);
    test.extend([
        "-p",
        "pylon-tests",
        "--test",
        "chaos",
        "--",
        "--ignored",
        "--nocapture",
    ]);
    procs::cargo_within(
        Duration::from_secs(args.deadline_mins * 60),
        &test,
        &[
            ("PYLON_CHAOS_SESSIONS", sessions.as_path()),
            ("PYLON_CHAOS_OUT", out.as_path()),
            ("PYLON_CHAOS_ONLY", only.as_path()),
        ],
    )?;
    println!("xtask chaos: {}", out.join("chaos.md").display());
    Ok(())
}
