//! `pylonctl top`: a live view of one or more edges, read from their Prometheus metrics
//! (`GET /metrics` on the edge's admin API, `edge/src/admin.rs`; no token).
//!
//! Every `--interval` the edges are read at once (one thread each), and each gets a
//! block: sessions and connections by transport, connections by executor, and rates
//! (heartbeats, frames in, and the kernel's eBPF counts when the edge exports them)
//! from the change since the edge's previous sample. The text exposition format is
//! parsed here, as far as `top` needs it ([`parse_metrics`]); the blocks are printed by
//! [`crate::render::top`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;

use super::OutputFormat;
use crate::cli::Failure;
use crate::client::{Client, ClientError};
use crate::config::{self, Flags, Target};
use crate::render::top::render_refresh;
use crate::units::format_time;

pub const TOP_ABOUT: &str = "\
Watch one or more edges live, from their Prometheus metrics (GET /metrics on the edge's
admin API, which takes no token). Every --interval seconds (2 by default) pylonctl reads
every edge's metrics and prints one block per edge:

  sessions        logged-in charger sessions, in all and by transport
  connections     open charger connections, in all and by transport
  executors       open connections on each executor (thread), to show their spread
  heartbeats/s    heartbeats the edge answered
  frames in/s     frames received from chargers, of every type
  kernel (eBPF)   only for an edge that runs the kernel programs (pylon-edge --ebpf,
                  --syn-guard):
    placed/s      new connections the eBPF listener selection placed by the SYN's
                  CPU, and those it had to place elsewhere (fallback)
    tcp entries/s sockets on the edge's ports entering ESTABLISHED, CLOSE_WAIT and
                  SYN_RECV
    retransmits/s TCP retransmissions on the edge's ports
    syn guard/s   SYNs the SYN-flood guard passed, and dropped (rate or blocklist)

A rate (/s) is the change between two refreshes, so the first refresh shows \"-\" for
every rate; \"-\" also stands for a metric the edge does not export. An edge that
cannot be reached shows \"unreachable\", and is tried again at every refresh.

Give --edge-admin once per edge. Without it, the edge is PYLON_EDGE_ADMIN, else
`edge_admin` in the config file, else http://127.0.0.1:9100. Runs until Ctrl-C, or
for --count refreshes; with -o json, each refresh is one JSON object on a line of its
own. Exit status 3 when --count refreshes ran and no edge could be reached at all.

Examples:
  pylonctl top
  pylonctl top --edge-admin http://10.0.0.3:9100 --edge-admin http://10.0.0.4:9100
  pylonctl top --interval 10
  pylonctl top --count 2 -o json | tail -n1 | jq '.edges[] | {edge, heartbeats_per_sec}'";

/// The default `--interval`, in seconds.
pub const DEFAULT_INTERVAL: &str = "2";

/// The path of the edge's Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

// The metrics `top` reads (`edge/src/metrics.rs`; counters end in `_total`).
pub const SESSIONS: &str = "pylon_edge_sessions";
pub const CONNECTIONS: &str = "pylon_edge_connections";
pub const HEARTBEATS: &str = "pylon_edge_heartbeats_total";
pub const FRAMES_IN: &str = "pylon_edge_frames_in_total";
pub const EBPF_SELECTIONS: &str = "pylon_edge_ebpf_selections";
pub const TCP_STATE_ENTRIES: &str = "pylon_edge_tcp_state_entries";
/// Exported (as 0) by every edge, with or without the kernel programs: it is shown with
/// [`TCP_STATE_ENTRIES`], which only an edge running them exports.
pub const TCP_RETRANSMITS: &str = "pylon_edge_tcp_retransmits";
pub const SYN_GUARD: &str = "pylon_edge_syn_guard";

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct TopArgs {
    /// An edge's admin HTTP address; repeat for several edges [env: PYLON_EDGE_ADMIN] [default: http://127.0.0.1:9100]
    ///
    /// Without this flag: PYLON_EDGE_ADMIN, else `edge_admin` in the config
    /// file, else http://127.0.0.1:9100 (one edge). It is pylon-edge's
    /// --admin-listen, which is 127.0.0.1:9100 unless set otherwise.
    #[arg(
        long,
        value_name = "URL",
        help_heading = "Connection and output",
        verbatim_doc_comment
    )]
    pub edge_admin: Vec<String>,

    /// Seconds between refreshes, e.g. 2 or 0.5 (at least 0.1)
    #[arg(long, value_name = "SECS", default_value = DEFAULT_INTERVAL, value_parser = parse_interval)]
    pub interval: Duration,

    /// Stop after this many refreshes (the first shows no rates yet) [default: until Ctrl-C]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// The config file [env: PYLONCTL_CONFIG] [default: ~/.config/pylon/pylonctl.toml]
    ///
    /// TOML; `top` reads its keys `edge_admin`, `ca`, `cert` and `key`, e.g.
    ///     edge_admin = "http://10.0.0.3:9100"
    /// A file named by this flag or by PYLONCTL_CONFIG must exist.
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Connection and output",
        verbatim_doc_comment
    )]
    pub config: Option<PathBuf>,

    /// The cluster CA's certificate (PEM), for https:// edges [env: PYLON_CA]
    ///
    /// Edges with cluster TLS on serve their admin API over HTTPS: give
    /// https:// URLs and the cluster CA's certificate (ca.pem from `pylonctl
    /// certs init`), which each edge's certificate is checked against, with
    /// the URL's host name or IP address. Taken from, in order: this flag,
    /// PYLON_CA, `ca` in the config file.
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Connection and output",
        verbatim_doc_comment
    )]
    pub ca: Option<PathBuf>,

    /// A client certificate (PEM) of the cluster CA, shown over HTTPS [env: PYLON_CERT]
    ///
    /// Optional: edges take HTTPS clients with or without one. Needs --key.
    /// Taken from, in order: this flag, PYLON_CERT, `cert` in the config file.
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Connection and output",
        verbatim_doc_comment
    )]
    pub cert: Option<PathBuf>,

    /// The private key (PEM) of --cert [env: PYLON_KEY]
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Connection and output",
        verbatim_doc_comment
    )]
    pub key: Option<PathBuf>,

    /// How to print: `table` for people, `json` for scripts (one object per refresh)
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value_t = OutputFormat::Table,
        value_name = "FORMAT",
        help_heading = "Connection and output"
    )]
    pub output: OutputFormat,
}

/// `--interval`: seconds, decimals allowed, from 0.1 to a day.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (e.g. 2 or 0.5)"))?;
    if !(0.1..=86_400.0).contains(&secs) {
        return Err(format!(
            "{text} seconds is out of range: give from 0.1 to 86400"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

// ---------------------------------------------------------------------------------------
// The text exposition format

/// One sample: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of one `/metrics` reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

/// Reads the Prometheus / OpenMetrics text format, as far as `top` needs it: comments
/// (`# HELP`, `# TYPE`, `# EOF`) and blank lines are skipped, and so is any line that is
/// not a sample, so that one odd line does not hide the rest.
pub fn parse_metrics(text: &str) -> Metrics {
    Metrics {
        samples: text.lines().filter_map(parse_sample).collect(),
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `key="value",...}` -> the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = s.split_once('=')?;
        let quoted = after.trim_start().strip_prefix('"')?;
        let mut chars = quoted.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        let after = quoted[end + 1..].trim_start();
        s = after.strip_prefix(',').unwrap_or(after);
    }
}

impl Metrics {
    fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && filter.iter().all(|(k, v)| s.label(k) == Some(*v)))
    }

    /// Whether any sample of `name` is there.
    pub fn has(&self, name: &str) -> bool {
        self.matching(name, &[]).next().is_some()
    }

    /// The sum of the samples of `name` whose labels include `filter`; `None` when there
    /// is none.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, filter)
            .map(|s| s.value)
            .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }

    /// The samples of `name`, summed by the value of their label `key` (samples without
    /// it are left out).
    pub fn sum_by(&self, name: &str, key: &str) -> BTreeMap<String, f64> {
        let mut by = BTreeMap::new();
        for s in self.matching(name, &[]) {
            if let Some(v) = s.label(key) {
                *by.entry(v.to_owned()).or_insert(0.0) += s.value;
            }
        }
        by
    }

    /// Whether the reply is an edge's: it has some `pylon_edge_` metric.
    pub fn is_edge(&self) -> bool {
        self.samples
            .iter()
            .any(|s| s.name.starts_with("pylon_edge_"))
    }
}

// ---------------------------------------------------------------------------------------
// What a refresh shows

/// A gauge in all and by transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Split {
    pub total: i64,
    pub by_transport: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutorConnections {
    pub executor: String,
    pub connections: i64,
}

/// New connections placed per second by the eBPF listener selection (both transports).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placed {
    pub by_cpu: Option<f64>,
    pub fallback: Option<f64>,
}

/// The kernel's TCP counts of the edge's ports, per second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpRates {
    pub established: Option<f64>,
    pub close_wait: Option<f64>,
    pub syn_recv: Option<f64>,
    pub retransmits: Option<f64>,
}

/// SYNs per second by the SYN-flood guard's verdict; `dropped` is both kinds of drop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynGuardRates {
    pub passed: Option<f64>,
    pub dropped: Option<f64>,
    pub dropped_rate: Option<f64>,
    pub dropped_blocked: Option<f64>,
}

/// What the edge's eBPF programs counted; each part is there only when the edge
/// exports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kernel {
    pub placed_per_sec: Option<Placed>,
    pub tcp_per_sec: Option<TcpRates>,
    pub syn_guard_per_sec: Option<SynGuardRates>,
}

/// One edge's figures at one refresh. `None`: not exported, or (for a rate) no
/// earlier sample to compare with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeStats {
    pub sessions: Option<Split>,
    pub connections: Option<Split>,
    pub executors: Vec<ExecutorConnections>,
    pub heartbeats_per_sec: Option<f64>,
    pub frames_in_per_sec: Option<f64>,
    pub kernel: Option<Kernel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeStatus {
    Ok,
    /// No HTTP conversation: refused, timed out, unknown host.
    Unreachable,
    /// It answered, but not with an edge's metrics.
    Error,
}

/// One edge's block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeReport {
    pub edge: String,
    pub status: EdgeStatus,
    /// Why it is unreachable ("connection refused") or what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub stats: Option<EdgeStats>,
}

/// One refresh: one JSON object with `-o json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refresh {
    /// UTC, whole seconds.
    pub time: String,
    /// 1 for the first.
    pub refresh: u64,
    pub interval_secs: f64,
    pub edges: Vec<EdgeReport>,
    /// `--count`, for the header.
    #[serde(skip)]
    pub count: Option<u64>,
}

/// The figures of `cur`, with rates from the change since `prev` (`(sample, seconds
/// before cur)`). A rate is `None` without an earlier sample, without the metric in
/// both, or when it went down (the edge restarted).
pub fn edge_stats(cur: &Metrics, prev: Option<(&Metrics, f64)>) -> EdgeStats {
    let rate = |name: &str, filter: &[(&str, &str)]| -> Option<f64> {
        let (before, secs) = prev?;
        let delta = cur.sum(name, filter)? - before.sum(name, filter)?;
        (secs > 0.0 && delta >= 0.0).then(|| round3(delta / secs))
    };
    let split = |name: &str| -> Option<Split> {
        Some(Split {
            total: count(cur.sum(name, &[])?),
            by_transport: cur
                .sum_by(name, "transport")
                .into_iter()
                .map(|(k, v)| (k, count(v)))
                .collect(),
        })
    };
    let mut executors: Vec<ExecutorConnections> = cur
        .sum_by(CONNECTIONS, "executor")
        .into_iter()
        .map(|(executor, v)| ExecutorConnections {
            executor,
            connections: count(v),
        })
        .collect();
    // By number where they are numbers (10 after 9), else by name.
    executors.sort_by(|a, b| {
        let n = |e: &ExecutorConnections| e.executor.parse::<u64>().ok();
        n(a).cmp(&n(b)).then_with(|| a.executor.cmp(&b.executor))
    });

    let placed = cur.has(EBPF_SELECTIONS).then(|| Placed {
        by_cpu: rate(EBPF_SELECTIONS, &[("outcome", "by_cpu")]),
        fallback: rate(EBPF_SELECTIONS, &[("outcome", "fallback")]),
    });
    let state = |s: &str| rate(TCP_STATE_ENTRIES, &[("state", s)]);
    let tcp = cur.has(TCP_STATE_ENTRIES).then(|| TcpRates {
        established: state("established"),
        close_wait: state("close_wait"),
        syn_recv: state("syn_recv"),
        retransmits: rate(TCP_RETRANSMITS, &[]),
    });
    let verdict = |v: &str| rate(SYN_GUARD, &[("verdict", v)]);
    let guard = cur.has(SYN_GUARD).then(|| {
        let (dropped_rate, dropped_blocked) = (verdict("dropped_rate"), verdict("dropped_blocked"));
        SynGuardRates {
            passed: verdict("passed"),
            dropped: match (dropped_rate, dropped_blocked) {
                (Some(a), Some(b)) => Some(round3(a + b)),
                (a, b) => a.or(b),
            },
            dropped_rate,
            dropped_blocked,
        }
    });
    let kernel = (placed.is_some() || tcp.is_some() || guard.is_some()).then_some(Kernel {
        placed_per_sec: placed,
        tcp_per_sec: tcp,
        syn_guard_per_sec: guard,
    });

    EdgeStats {
        sessions: split(SESSIONS),
        connections: split(CONNECTIONS),
        executors,
        heartbeats_per_sec: rate(HEARTBEATS, &[]),
        frames_in_per_sec: rate(FRAMES_IN, &[]),
        kernel,
    }
}

fn count(v: f64) -> i64 {
    v.round() as i64
}

/// To a thousandth, so that JSON shows 41.5 rather than 41.49999999.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------------------------------
// Running

/// The edges' admin URLs: every `--edge-admin`, checked (duplicates once), else the one
/// from PYLON_EDGE_ADMIN, the config file or the default.
pub fn resolve_edges(
    args: &TopArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Failure> {
    let one = |edge_admin: Option<String>| -> Result<String, Failure> {
        let flags = Flags {
            config: args.config.clone(),
            edge_admin,
            ca: args.ca.clone(),
            cert: args.cert.clone(),
            key: args.key.clone(),
            target: Target::EdgeAdmin,
            ..Flags::default()
        };
        Ok(config::resolve(&flags, env)?.edge_admin)
    };
    if args.edge_admin.is_empty() {
        return Ok(vec![one(None)?]);
    }
    let mut edges = Vec::new();
    for given in &args.edge_admin {
        if given.trim().is_empty() {
            return Err(Failure::BadInput(
                "--edge-admin is empty: give an http:// URL such as http://127.0.0.1:9100".into(),
            ));
        }
        let edge = one(Some(given.clone()))?;
        if !edges.contains(&edge) {
            edges.push(edge);
        }
    }
    Ok(edges)
}

/// One edge's `/metrics`, read as the edge's: a reply without any `pylon_edge_` metric
/// is not from an edge's admin server.
fn fetch(client: &Client) -> Result<Metrics, ClientError> {
    let metrics = parse_metrics(&client.get_text(METRICS_PATH)?);
    if metrics.is_edge() {
        Ok(metrics)
    } else {
        Err(client.bad_reply("GET", METRICS_PATH, "it holds no pylon_edge_ metric".into()))
    }
}

/// Every edge's metrics, read at once, each with the moment its reply came.
fn fetch_all(clients: &[Client]) -> Vec<(Instant, Result<Metrics, ClientError>)> {
    std::thread::scope(|scope| {
        let readers: Vec<_> = clients
            .iter()
            .map(|client| {
                scope.spawn(move || {
                    let result = fetch(client);
                    (Instant::now(), result)
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|reader| reader.join().expect("a metrics reader panicked"))
            .collect()
    })
}

fn now_text() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    format_time(ms)
}

/// Runs `pylonctl top`.
pub fn run_top(
    args: TopArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let edges = resolve_edges(&args, env)?;
    // A slow edge holds up a refresh by at most this much.
    let timeout = args
        .interval
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    // The cluster CA, when an edge is https (resolving it again checks it is given).
    let trust = match edges.iter().find(|e| config::is_https(e)) {
        Some(https) => {
            let flags = Flags {
                config: args.config.clone(),
                edge_admin: Some(https.clone()),
                ca: args.ca.clone(),
                cert: args.cert.clone(),
                key: args.key.clone(),
                target: Target::EdgeAdmin,
                ..Flags::default()
            };
            config::resolve(&flags, env)?.trust_for(https)?
        }
        None => None,
    };
    let clients: Vec<Client> = edges
        .iter()
        .map(|edge| {
            Client::edge_admin(edge)
                .with_timeouts(timeout, timeout)
                .with_trust(trust.clone())
        })
        .collect();
    let mut previous: Vec<Option<(Instant, Metrics)>> = vec![None; clients.len()];
    let mut ever_read = false;
    // The first failure of each kind, for the exit status when no edge was ever read.
    let mut first_unreachable: Option<ClientError> = None;
    let mut first_error: Option<ClientError> = None;

    let mut next = Instant::now();
    let mut refresh = 0u64;
    loop {
        refresh += 1;
        if refresh > 1 {
            next += args.interval;
            let now = Instant::now();
            match next.checked_duration_since(now) {
                Some(wait) => std::thread::sleep(wait),
                // Reading took longer than the interval: start again from now.
                None => next = now,
            }
        }
        let time = now_text();
        let mut reports = Vec::with_capacity(clients.len());
        for ((edge, (at, result)), prev) in edges
            .iter()
            .zip(fetch_all(&clients))
            .zip(previous.iter_mut())
        {
            let report = match result {
                Ok(metrics) => {
                    ever_read = true;
                    let before = prev
                        .as_ref()
                        .map(|(t, m)| (m, at.saturating_duration_since(*t).as_secs_f64()));
                    let stats = edge_stats(&metrics, before);
                    *prev = Some((at, metrics));
                    EdgeReport {
                        edge: edge.clone(),
                        status: EdgeStatus::Ok,
                        error: None,
                        stats: Some(stats),
                    }
                }
                Err(e) => {
                    // Rates start afresh once it is back (it may have restarted).
                    *prev = None;
                    let (status, error) = match &e {
                        ClientError::Unreachable { reason, .. } => {
                            (EdgeStatus::Unreachable, reason.clone())
                        }
                        other => (EdgeStatus::Error, other.to_string()),
                    };
                    let first = match status {
                        EdgeStatus::Unreachable => &mut first_unreachable,
                        _ => &mut first_error,
                    };
                    if first.is_none() {
                        *first = Some(e);
                    }
                    EdgeReport {
                        edge: edge.clone(),
                        status,
                        error: Some(error),
                        stats: None,
                    }
                }
            };
            reports.push(report);
        }
        let shown = Refresh {
            time,
            refresh,
            interval_secs: args.interval.as_secs_f64(),
            edges: reports,
            count: args.count,
        };
        match args.output {
            OutputFormat::Json => {
                let line = serde_json::to_string(&shown)
                    .map_err(|e| Failure::Other(anyhow::anyhow!("cannot print JSON: {e}")))?;
                writeln!(out, "{line}")?;
            }
            OutputFormat::Table => {
                out.write_all(render_refresh(&shown, args.interval).as_bytes())?
            }
        }
        out.flush()?;
        if args.count == Some(refresh) {
            break;
        }
    }

    if ever_read {
        return Ok(());
    }
    let several = |e: ClientError| {
        if edges.len() > 1 {
            format!("no edge gave its metrics; the first: {e}")
        } else {
            e.to_string()
        }
    };
    match (first_error, first_unreachable) {
        // Something answered, but not with an edge's metrics.
        (Some(e), _) => Err(Failure::Other(anyhow::anyhow!(several(e)))),
        (None, Some(e)) => Err(Failure::Unreachable(several(e))),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
