//! Tests that could not run here: each one appends a line to the file named by
//! [`ENV`] (see `pylon_ebpf::netns::kernel_test_can_run`), and `cargo xtask test` sums
//! them up at the end of the run, loudly, pass or fail.

use std::path::{Path, PathBuf};

/// The variable naming the report file (keep in step with `pylon_ebpf::netns`).
pub const ENV: &str = "PYLON_SKIP_REPORT";

pub struct Report {
    path: PathBuf,
}

impl Report {
    /// An empty report file under `target/`.
    pub fn new() -> anyhow::Result<Report> {
        let path = crate::procs::root().join("target/test-skips.txt");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, "")?;
        Ok(Report { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Prints what was skipped and why, or that nothing was.
    pub fn print_summary(&self) {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let skipped: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .collect();
        let rule = "=".repeat(78);
        if skipped.is_empty() {
            println!("\nxtask test: no test was skipped (kernel tests included)");
            return;
        }
        println!("\n{rule}");
        println!(
            "  {} TEST(S) SKIPPED: they did not run here, so they did not pass",
            skipped.len()
        );
        println!("{rule}");
        for (test, reason) in &skipped {
            println!("  SKIPPED  {test}\n           {reason}");
        }
        println!("{rule}");
        println!("  Run `cargo xtask test` as root on a machine with 2+ CPUs to run them all.");
        println!("{rule}\n");
    }
}
