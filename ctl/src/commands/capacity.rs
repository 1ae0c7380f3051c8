//! `pylonctl capacity plan|forecast`: how many machines a fleet needs, and when the
//! current deployment runs out.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use pylon_proto::api::control::EdgeInfo;
use pylon_proto::api::monitor::FleetSample;
use serde::Serialize;

use super::{ConnectOptions, Ctx, OutputFormat};
use crate::capacity::forecast::{forecast, Forecast};
use crate::capacity::model::{plan, Demand, Hardware, Plan};
use crate::capacity::pods::{pods, Pods};
use crate::cli::Failure;

pub(super) const CAPACITY_ABOUT: &str = "\
Plan capacity: `plan` says what a fleet of a given size needs (edge hosts and cores,
memory, app instances, store writes, registry load, network), with the headroom to
lose one host, or a whole site with --sites 2; `forecast` fits the growth of piles
online from the store's hourly history and says when the deployment runs out.

`plan` multiplies the fleet's rates by unit costs measured by `cargo xtask bench
--calibrate` (capacity/calibration.json, built in; --calibration for another). Those
costs are per core of the machine they were measured on: scale them when your cores
are faster or slower.

Examples:
  pylonctl capacity plan --piles 1500000 --tls-share 0.8 --charging-share 0.15 --heartbeat 10
  pylonctl capacity plan --piles 1500000 --sites 2 --edge-cores 32 --edge-memory-gib 128
  pylonctl capacity forecast --horizon-days 365";

#[derive(Debug, Args)]
pub struct CapacityArgs {
    #[command(subcommand)]
    pub command: CapacityCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, Subcommand)]
pub enum CapacityCommand {
    /// What a fleet of a given size needs (no cluster needed).
    Plan(PlanArgs),
    /// When the current deployment runs out, from the growth of piles online.
    Forecast(ForecastArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Piles (chargers) to carry.
    #[arg(long)]
    pub piles: u64,
    /// Share of piles on TLS (0 to 1).
    #[arg(long, default_value_t = 0.8)]
    pub tls_share: f64,
    /// Share of piles charging at the busy hour (0 to 1).
    #[arg(long, default_value_t = 0.15)]
    pub charging_share: f64,
    /// Seconds between a pile's heartbeats.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub heartbeat: f64,
    /// Seconds between an idle pile's status frames (0x13).
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub idle_status: f64,
    /// Seconds between a charging gun's frames (0x13, 0x23, 0x25).
    #[arg(long, default_value_t = 15.0, value_name = "SECS")]
    pub charging_frames: f64,
    /// Mean length of a charge, in minutes.
    #[arg(long, default_value_t = 60.0, value_name = "MINUTES")]
    pub charge_minutes: f64,
    /// Cores of an edge host.
    #[arg(long, default_value_t = 16)]
    pub edge_cores: u32,
    /// Memory of an edge host, GiB.
    #[arg(long, default_value_t = 64.0)]
    pub edge_memory_gib: f64,
    /// Cores of an app host.
    #[arg(long, default_value_t = 8)]
    pub app_cores: u32,
    /// Busy share of cores and memory not to exceed in normal running (0 to 1).
    #[arg(long, default_value_t = 0.6)]
    pub utilization: f64,
    /// Sites; with 2, each site carries the whole fleet on its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
    pub sites: u32,
    /// Seconds within which a lost edge host's chargers must be set up again.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub reconnect: f64,
    /// Sessions one edge host may hold (the unit's LimitNOFILE, less some).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_sessions_per_host: u64,
    /// Unit costs to use instead of the built-in calibration.
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// Days of history to fit.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// How far ahead to project, in days.
    #[arg(long, default_value_t = 365)]
    pub horizon_days: u32,
}

pub fn run_capacity(
    args: CapacityArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match args.command {
        CapacityCommand::Plan(p) => run_plan(&p, args.connect.output, out),
        CapacityCommand::Forecast(f) => {
            let ctx = Ctx::new(&args.connect, None, env)?;
            run_forecast(&ctx, &f, out)
        }
    }
}

#[derive(Serialize)]
struct PlanReply<'a> {
    calibrated_on: &'a str,
    plan: &'a Plan,
    /// Kubernetes resources per pod (`deploy/k8s`).
    pods: &'a Pods,
}

fn run_plan(args: &PlanArgs, output: OutputFormat, out: &mut dyn Write) -> Result<(), Failure> {
    let share = |name: &str, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(Failure::BadInput(format!(
                "--{name} must be between 0 and 1, not {v}"
            )))
        }
    };
    let demand = Demand {
        piles: args.piles,
        tls_share: share("tls-share", args.tls_share)?,
        charging_share: share("charging-share", args.charging_share)?,
        heartbeat_secs: args.heartbeat,
        idle_status_secs: args.idle_status,
        charging_frame_secs: args.charging_frames,
        charge_minutes: args.charge_minutes,
    };
    let hardware = Hardware {
        edge_cores: args.edge_cores,
        edge_memory_gib: args.edge_memory_gib,
        app_cores: args.app_cores,
        utilization: share("utilization", args.utilization)?,
        sites: args.sites,
        reconnect_secs: args.reconnect,
        max_sessions_per_host: args.max_sessions_per_host,
    };
    let calibration =
        crate::capacity::calibration(args.calibration.as_deref()).map_err(Failure::Other)?;
    let p = plan(&calibration, &demand, &hardware);
    let per_pod = pods(&calibration, &demand, &hardware, &p);
    let machine = format!(
        "{} ({} cores), {} sessions",
        calibration.machine.cpu, calibration.machine.cores, calibration.sessions
    );
    if output == OutputFormat::Json {
        let reply = PlanReply {
            calibrated_on: &machine,
            plan: &p,
            pods: &per_pod,
        };
        let json = serde_json::to_string_pretty(&reply)
            .map_err(|e| Failure::Other(anyhow::anyhow!("cannot print JSON: {e}")))?;
        writeln!(out, "{json}")?;
        return Ok(());
    }
    out.write_all(render_plan(&p, &per_pod, &demand, &hardware, &machine).as_bytes())?;
    Ok(())
}

fn render_plan(p: &Plan, pods: &Pods, d: &Demand, hw: &Hardware, machine: &str) -> String {
    let sites = if p.sites == 2 {
        " per site (two sites, each able to carry every pile)"
    } else {
        ""
    };
    let mut s = format!(
        "{} piles, {:.0} % on TLS, {:.0} % charging at the busy hour, heartbeat every {} s\n\n",
        group(d.piles as f64),
        d.tls_share * 100.0,
        d.charging_share * 100.0,
        d.heartbeat_secs
    );
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<28}{v}\n"));
    row("heartbeats", format!("{}/s", group(p.heartbeats_per_sec)));
    row(
        "business frames",
        format!("{}/s", group(p.business_frames_per_sec)),
    );
    row("transaction records", format!("{:.1}/s", p.records_per_sec));
    row(
        "edge hosts",
        format!(
            "{}{sites}: {} cores and {} GiB each; {:.1} cores and {:.1} GiB in use \
             (bound by {}); {} sessions per host with one host down",
            p.edge_hosts_per_site,
            hw.edge_cores,
            hw.edge_memory_gib,
            p.edge_cpu_cores,
            p.edge_memory_gib,
            p.edge_bound_by,
            group(p.sessions_per_host_after_loss as f64)
        ),
    );
    row(
        "reconnect after a host loss",
        format!(
            "{:.1} cores for {:.0} s on the others",
            p.reconnect_cpu_cores, hw.reconnect_secs
        ),
    );
    row(
        "app instances",
        format!(
            "{}{sites}: {} cores each; {:.1} cores in use, one instance to spare",
            p.app_instances_per_site, hw.app_cores, p.app_cpu_cores
        ),
    );
    row(
        "store",
        format!(
            "{} row writes/s in {} transactions/s",
            group(p.store_row_writes_per_sec),
            group(p.store_transactions_per_sec)
        ),
    );
    row(
        "registry (etcd)",
        format!(
            "{} members, {:.1} writes/s",
            p.registry_members, p.registry_writes_per_sec
        ),
    );
    row(
        "network (chargers)",
        format!(
            "{:.0} Mbit/s in both directions together",
            p.network_mbit_per_sec
        ),
    );
    row(
        "kubernetes, edge pod",
        format!(
            "requests cpu {}, memory {}; limits memory {}",
            pods.edge.cpu_request,
            pods.edge.memory_request.as_deref().unwrap_or("-"),
            pods.edge.memory_limit.as_deref().unwrap_or("-")
        ),
    );
    row(
        "kubernetes, app pod",
        format!(
            "requests cpu {} (memory not calibrated)",
            pods.app.cpu_request
        ),
    );
    s.push_str(&format!(
        "\nHeadroom: normal running stays within {:.0} % of cores and memory with one edge \
         host down. Unit costs measured on {machine}.\n",
        hw.utilization * 100.0
    ));
    s
}

/// 1234567.8 -> "1,234,568".
fn group(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Serialize)]
struct ForecastReply {
    forecast: Forecast,
    edges: usize,
    /// Sessions the live edges take with the largest one down.
    capacity_with_one_edge_down: u64,
    registered_piles: u64,
}

fn run_forecast(ctx: &Ctx, args: &ForecastArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let since = (now_ms - i64::from(args.days) * 86_400_000).to_string();
    let history: Vec<FleetSample> = ctx
        .client
        .get("/v1/fleet/history", &[("since", since.as_str())])?;
    let edges: Vec<EdgeInfo> = ctx.client.get("/v1/admin/edges", &[])?;
    let live: Vec<u64> = edges
        .iter()
        .filter(|e| e.live)
        .map(|e| u64::from(e.capacity))
        .collect();
    let capacity = match live.len() {
        0 => 0,
        1 => live[0],
        _ => live.iter().sum::<u64>() - live.iter().max().copied().unwrap_or(0),
    };
    let points: Vec<(f64, f64)> = history
        .iter()
        .map(|s| (s.at as f64 / 86_400_000.0, s.online as f64))
        .collect();
    let f = forecast(&points, capacity as f64, f64::from(args.horizon_days))
        .map_err(|e| Failure::Other(anyhow::anyhow!(e)))?;
    let reply = ForecastReply {
        forecast: f,
        edges: live.len(),
        capacity_with_one_edge_down: capacity,
        registered_piles: history.last().map_or(0, |s| s.piles),
    };
    ctx.emit(out, &reply, |r| render_forecast(r, now_ms))
}

fn render_forecast(r: &ForecastReply, now_ms: i64) -> String {
    let f = &r.forecast;
    let date = |days: f64| {
        let at = now_ms / 1000 + (days * 86_400.0) as i64;
        time::OffsetDateTime::from_unix_timestamp(at)
            .map(|t| t.date().to_string())
            .unwrap_or_else(|_| "-".into())
    };
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<24}{v}\n"));
    row(
        "piles online now",
        format!(
            "{} (of {} registered)",
            group(f.online_now),
            group(r.registered_piles as f64)
        ),
    );
    row(
        "growth",
        format!(
            "{:+.1} piles/day ({} fit of {} samples over {:.1} days)",
            f.per_day,
            f.model.name(),
            f.samples,
            f.span_days
        ),
    );
    row(
        &format!("in {} days", f.horizon_days),
        format!("{} online", group(f.online_at_horizon)),
    );
    row(
        "capacity",
        format!(
            "{} sessions with one of {} edges down",
            group(r.capacity_with_one_edge_down as f64),
            r.edges
        ),
    );
    row(
        "runs out",
        match f.runs_out_in_days {
            Some(d) if d <= 0.0 => "now: add edges (pylonctl capacity plan)".into(),
            Some(d) => format!("in {:.0} days ({})", d, date(d)),
            None => "not at this growth".into(),
        },
    );
    if f.span_days < 7.0 {
        s.push_str("\nThe history covers less than a week: take the projection lightly.\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(group(0.0), "0");
        assert_eq!(group(999.4), "999");
        assert_eq!(group(1_500_000.0), "1,500,000");
        assert_eq!(group(12_345.6), "12,346");
    }
}
