//! A `pylon-fleet` that charges (card starts, records), for tests that count records:
//! its report file is read while it runs, and SIGINT makes it write the final one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{binary, wait_for};

/// Where the fleet's chargers connect.
pub enum Reach<'a> {
    /// One edge's address.
    Edge(std::net::SocketAddr),
    /// The control plane's dispatch URL, asked again after every disconnect.
    Dispatch(&'a str),
}

pub struct ChargingFleet {
    child: Child,
    report: PathBuf,
    /// The trade number of every record the platform confirmed, one per line.
    confirmed_log: PathBuf,
}

impl ChargingFleet {
    /// `sessions` piles from `first_pile`, each charging `charge_secs` at a time and
    /// waiting `confirm_timeout_secs` for its record's confirmation before resending.
    pub fn start(
        dir: &Path,
        reach: Reach<'_>,
        first_pile: u64,
        sessions: u64,
        charge_secs: u32,
        confirm_timeout_secs: u32,
    ) -> ChargingFleet {
        let report = dir.join("fleet.json");
        let confirmed_log = dir.join("fleet-confirmed.txt");
        let log = std::fs::File::create(dir.join("fleet.log")).expect("fleet log");
        let mut command = Command::new(binary("pylon-fleet"));
        match reach {
            Reach::Edge(addr) => command.args(["--target", &addr.to_string()]),
            Reach::Dispatch(url) => command.args(["--dispatch", url]),
        };
        let child = command
            .args(["--sessions", &sessions.to_string()])
            .args(["--pile-base", &first_pile.to_string(), "--ramp", "500"])
            .args(["--charge", "--card-start-secs", "1"])
            .args(["--charge-secs", &charge_secs.to_string()])
            .args(["--confirm-timeout-secs", &confirm_timeout_secs.to_string()])
            .args(["--progress-secs", "1", "--quiet"])
            .arg("--report")
            .arg(&report)
            .arg("--confirmed-log")
            .arg(&confirmed_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting pylon-fleet");
        ChargingFleet {
            child,
            report,
            confirmed_log,
        }
    }

    pub fn report(&self) -> Value {
        std::fs::read_to_string(&self.report)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn confirmed(&self) -> u64 {
        self.report()["records_confirmed"].as_u64().unwrap_or(0)
    }

    pub fn wait_confirmed(&self, at_least: u64, limit: Duration) {
        wait_for(&format!("{at_least} confirmed records"), limit, || {
            (self.confirmed() >= at_least).then_some(())
        });
    }

    /// The trade numbers of the records the platform confirmed so far.
    pub fn confirmed_trades(&self) -> Vec<String> {
        std::fs::read_to_string(&self.confirmed_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Stops the fleet and returns its final report.
    pub fn stop(mut self) -> Value {
        // SAFETY: kill(2) has no memory effects.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.child.wait();
        self.report()
    }
}

impl Drop for ChargingFleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
