//! `cargo xtask`: set-up, demo, tests and benchmarks for Pylon.

mod bench;
mod bench_app;
mod bench_control;
mod bench_ebpf;
mod build_ebpf;
mod calibrate;
mod chaos;
mod codegen;
mod demo;
mod dist;
mod procs;
mod profile;
mod skips;
mod system;

use clap::{Parser, Subcommand};
use std::time::Duration;

/// Pylon's developer tasks. Run from anywhere inside the repository.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// List what Pylon needs on this machine, found or missing, and how to install it.
    Doctor,
    /// Install what is missing, build, and run every test.
    Test {
        /// Stop the tests, and fail, when they run longer than this many minutes: a test
        /// that hangs fails the run instead of freezing it.
        #[arg(long, default_value_t = 45)]
        deadline_mins: u64,
        /// Extra arguments passed to `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Run the platform: edges plus a simulated fleet, with live session counts.
    Demo(demo::DemoArgs),
    /// Measure the edge against the reference server.
    Bench(bench::BenchArgs),
    /// Measure the control plane: dispatch, route push latency, snapshot size.
    BenchControl(bench_control::BenchControlArgs),
    /// Measure the charging business on SQLite and PostgreSQL: records/s, command latency.
    BenchApp(bench_app::BenchAppArgs),
    /// Measure the kernel programs: per-packet cost, connections during a SYN flood (root).
    BenchEbpf(bench_ebpf::BenchEbpfArgs),
    /// Kill and freeze each kind of process under charging fleets; report recovery and
    /// records lost (target/chaos/).
    Chaos(chaos::ChaosArgs),
    /// Build Debian packages (pylon-edge, pylon-control, pylon-app, pylon-balancer,
    /// pylon-backup, pylonctl) with hardened systemd units, into target/dist.
    Dist(dist::DistArgs),
    /// Compile the kernel programs (ebpf/src/bpf/*.bpf.c) into ebpf/obj, or --check them.
    BuildEbpf(build_ebpf::BuildEbpfArgs),
    /// Generate proto's gRPC code (proto/src/*.generated.rs) from proto/proto, or --check it.
    Codegen(codegen::CodegenArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Doctor => system::doctor(),
        Task::Test {
            deadline_mins,
            cargo_args,
        } => test(Duration::from_secs(deadline_mins * 60), &cargo_args),
        Task::Demo(args) => demo::run(args),
        Task::Bench(args) => bench::run(args),
        Task::BenchControl(args) => bench_control::run(args),
        Task::BenchApp(args) => bench_app::run(args),
        Task::BuildEbpf(args) => build_ebpf::run(args),
        Task::Codegen(args) => codegen::run(args),
        Task::BenchEbpf(args) => bench_ebpf::run(args),
        Task::Chaos(args) => chaos::run(args),
        Task::Dist(args) => dist::run(args),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn test(deadline: Duration, cargo_args: &[String]) -> anyhow::Result<()> {
    system::prepare("test", system::FOR_TEST)?;
    // Committed generated code must be what its sources give: kernel objects, gRPC code.
    build_ebpf::run(build_ebpf::BuildEbpfArgs::check())?;
    codegen::run(codegen::CodegenArgs::check())?;
    // Multi-process tests start the workspace's binaries, so build them first.
    procs::cargo(&["build", "--workspace", "--bins"])?;
    let mut args = vec!["test", "--workspace"];
    if !cargo_args.is_empty() {
        args.push("--");
        args.extend(cargo_args.iter().map(String::as_str));
    }
    // Tests that cannot run here (kernel tests without root, ...) say so in a file that is
    // summed up at the end, pass or fail, where nobody can miss it.
    let report = skips::Report::new()?;
    let result = procs::cargo_within(deadline, &args, &[(skips::ENV, report.path())]);
    report.print_summary();
    result
}
