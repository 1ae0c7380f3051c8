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
    /// The control plane's dispatch URL (or several replicas', comma-separated), asked
    /// again after every disconnect.
    Dispatch(&'a str),
}

/// A fleet beyond [`ChargingFleet::start`]'s defaults.
pub struct FleetOptions<'a> {
    /// Names its report and log files (`<name>.json`, `<name>.log`) in the directory.
    pub name: &'a str,
    pub reach: Reach<'a>,
    /// Over TLS, trusting this CA (the edges' certificates name `pylon-edge`).
    pub tls_ca: Option<&'a Path>,
    pub first_pile: u64,
    pub sessions: u64,
    pub charge_secs: u32,
    /// Seconds an idle charger waits before its next charge (by card).
    pub idle_secs: f64,
    pub confirm_timeout_secs: u32,
    /// New chargers per second while the fleet starts.
    pub ramp: u32,
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
        Self::start_with(
            dir,
            FleetOptions {
                name: "fleet",
                reach,
                tls_ca: None,
                first_pile,
                sessions,
                charge_secs,
                idle_secs: 1.0,
                confirm_timeout_secs,
                ramp: 500,
            },
        )
    }

    pub fn start_with(dir: &Path, options: FleetOptions<'_>) -> ChargingFleet {
        let name = options.name;
        let report = dir.join(format!("{name}.json"));
        let confirmed_log = dir.join(format!("{name}-confirmed.txt"));
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("fleet log");
        let mut command = Command::new(binary("pylon-fleet"));
        match options.reach {
            Reach::Edge(addr) => command.args(["--target", &addr.to_string()]),
            Reach::Dispatch(url) => command.args(["--dispatch", url]),
        };
        if let Some(ca) = options.tls_ca {
            command.arg("--tls-ca").arg(ca);
        }
        let child = command
            .args(["--sessions", &options.sessions.to_string()])
            .args(["--pile-base", &options.first_pile.to_string()])
            .args(["--ramp", &options.ramp.to_string()])
            .args(["--charge", "--card-start-secs"])
            .arg(options.idle_secs.to_string())
            .args(["--charge-secs", &options.charge_secs.to_string()])
            .args([
                "--confirm-timeout-secs",
                &options.confirm_timeout_secs.to_string(),
            ])
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
