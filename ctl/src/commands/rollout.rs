//! `pylonctl rollout edges|apps|control`: a rolling restart (an upgrade, a new setting that needs
//! a restart) without losing chargers or records. The steps are [`plan::Rollout`]'s; this
//! module watches the control plane, runs the restart hook and keeps the time.

pub mod plan;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use pylon_proto::api::control::{AppInfo, EdgeInfo, StatusReply};

use super::{ConnectOptions, Ctx};
use crate::cli::Failure;
use crate::client::{Client, ClientError};
use plan::{Action, Kind, Member, Observation, Rollout, Settings};

pub(super) const ROLLOUT_ABOUT: &str = "\
Restart edges, app instances or control-plane replicas one batch at a time, through a
command you give (the restart hook), without losing a charger or a record.

Edges, for each batch: drain (dispatch sends their chargers to the other edges), wait
until the chargers have moved (--move-timeout), run the hook, wait until each edge has
registered again (--ready-timeout), undrain. App instances, for each batch: run the hook
(a stopping instance hands its shards over), wait until each has registered again and
every shard has an owner. Control-plane replicas: the followers first and the leader
last, so leadership moves once (a stopping leader hands it over at once); for each, run
the hook and wait until it has registered again and a leader is elected. While the
replica pylonctl talks to restarts, it asks the others (as they list themselves: set
--http-advertise on replicas that listen on 0.0.0.0).

The hook is run by `sh -c` with {id} replaced by the member's id and {host} by the host
of its address (PYLON_ROLLOUT_ID and PYLON_ROLLOUT_HOST are set too). It must return
once the member has been restarted (systemctl restart does). A hook that fails, or a
member that does not come back, stops the rollout and says what state is left.

Examples:
  pylonctl rollout edges --restart 'ssh {host} sudo systemctl restart pylon-edge'
  pylonctl rollout edges --batch 2 --restart 'ssh {host} sudo systemctl restart pylon-edge'
  pylonctl rollout apps --restart 'kubectl -n pylon delete pod {id} --wait'
  pylonctl rollout control --restart 'ssh {host} sudo systemctl restart pylon-control'
  pylonctl rollout edges --only edge-3 --restart './restart-edge.sh {id}'";

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Drain, restart and undrain edges, a batch at a time.
    Edges(RolloutOptions),
    /// Restart app instances a batch at a time; shards hand over and come back.
    Apps(RolloutOptions),
    /// Restart control-plane replicas, followers first and the leader last.
    Control(RolloutOptions),
}

#[derive(Debug, Args)]
pub struct RolloutOptions {
    /// The command that restarts one member; {id} and {host} are replaced.
    #[arg(long, value_name = "COMMAND")]
    pub restart: String,
    /// Members restarted together (the others must be able to take their load).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Only these members (comma-separated ids); default: every registered one.
    #[arg(long, value_delimiter = ',', value_name = "ID")]
    pub only: Vec<String>,
    /// Seconds chargers may take to move off a drained edge before it is restarted
    /// anyway (its own drain then closes the rest).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub move_timeout: u64,
    /// Seconds a restarted member may take to register again.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub ready_timeout: u64,
    /// Seconds the restart hook may run.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub hook_timeout: u64,
}

/// How often the control plane is asked while waiting.
const POLL: Duration = Duration::from_millis(500);

pub fn run_rollout(
    args: RolloutArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    let (kind, options) = match args.command {
        RolloutCommand::Edges(o) => (Kind::Edges, o),
        RolloutCommand::Apps(o) => (Kind::Apps, o),
        RolloutCommand::Control(o) => (Kind::Control, o),
    };
    let settings = Settings {
        batch: options.batch,
        move_timeout_ms: options.move_timeout * 1000,
        ready_timeout_ms: options.ready_timeout * 1000,
    };
    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;
    let mut control = Replicas::new();
    let (first, _) = observe(&ctx, &mut control, kind)?;
    let mut rollout =
        Rollout::new(kind, settings, &first, &options.only).map_err(Failure::BadInput)?;
    loop {
        let (seen, hosts) = observe(&ctx, &mut control, kind)?;
        let action = rollout.next(now_ms(), &seen);
        for note in rollout.take_notes() {
            writeln!(out, "{:>5} s  {note}", now_ms() / 1000)?;
        }
        out.flush()?;
        match action {
            Action::Wait => std::thread::sleep(POLL),
            Action::Drain(ids) => set_draining(&ctx, &ids, true)?,
            Action::Undrain(ids) => set_draining(&ctx, &ids, false)?,
            Action::Restart(ids) => {
                writeln!(
                    out,
                    "{:>5} s  {}: running the restart hook",
                    now_ms() / 1000,
                    ids.join(", ")
                )?;
                out.flush()?;
                let timeout = Duration::from_secs(options.hook_timeout);
                // The hooks of a batch run side by side.
                let outcomes = std::thread::scope(|scope| {
                    let running: Vec<_> = ids
                        .iter()
                        .map(|id| {
                            let host = hosts
                                .iter()
                                .find(|(h, _)| h == id)
                                .map(|(_, host)| host.clone())
                                .unwrap_or_default();
                            let template = options.restart.as_str();
                            scope.spawn(move || hook(template, id, &host, timeout))
                        })
                        .collect();
                    ids.iter()
                        .zip(running)
                        .map(|(id, run)| {
                            let outcome = run
                                .join()
                                .unwrap_or_else(|_| Err("the hook's thread failed".into()));
                            (id.clone(), outcome)
                        })
                        .collect()
                });
                rollout.restarted(now_ms(), outcomes);
            }
            Action::Done => {
                writeln!(
                    out,
                    "{:>5} s  done: {} {}s restarted",
                    now_ms() / 1000,
                    rollout.restarted_count(),
                    kind.noun()
                )?;
                return Ok(());
            }
            Action::Failed(why) => {
                return Err(Failure::Other(anyhow::anyhow!("rollout stopped: {why}")));
            }
        }
    }
}

/// The control plane's replicas as clients: the endpoint given first, then the others
/// as they list themselves, so that a rollout of the replicas goes on while the one it
/// talks to restarts.
struct Replicas {
    /// The others, besides `ctx.client`.
    others: Vec<Client>,
}

impl Replicas {
    fn new() -> Self {
        Replicas { others: Vec::new() }
    }

    /// Adds the replicas a status lists that are not known yet (keeping the first).
    fn learn(&mut self, ctx: &Ctx, status: &StatusReply) {
        for replica in &status.replicas {
            let known = std::iter::once(&ctx.client)
                .chain(&self.others)
                .any(|c| c.endpoint().trim_end_matches('/') == replica.http_address);
            if known || replica.http_address.is_empty() {
                continue;
            }
            // A replica whose address needs a CA pylonctl lacks is simply not asked.
            if let Ok(trust) = ctx.settings.trust_for(&replica.http_address) {
                self.others.push(
                    Client::new(
                        &replica.http_address,
                        ctx.settings.token.clone(),
                        ctx.settings.token_hint(),
                    )
                    .with_trust(trust),
                );
            }
        }
    }

    /// The status from the first replica that answers with its registry reachable.
    fn status(&mut self, ctx: &Ctx) -> Result<StatusReply, Failure> {
        let mut first_error: Option<ClientError> = None;
        let mut answer = None;
        for client in std::iter::once(&ctx.client).chain(&self.others) {
            match client.get::<StatusReply>("/v1/admin/status", &[]) {
                Ok(status) if status.registry_ok => {
                    answer = Some(status);
                    break;
                }
                Ok(_) => continue,
                Err(e @ ClientError::Unreachable { .. }) => {
                    first_error.get_or_insert(e);
                }
                Err(e) if e.status().is_some_and(|s| s >= 500) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(status) = answer {
            self.learn(ctx, &status);
            return Ok(status);
        }
        Err(match first_error {
            Some(e) => e.into(),
            None => Failure::Other(anyhow::anyhow!(
                "no control-plane replica can read its registry"
            )),
        })
    }
}

/// The members as the control plane lists them, and each one's host (for {host}).
fn observe(
    ctx: &Ctx,
    control: &mut Replicas,
    kind: Kind,
) -> Result<(Observation, Vec<(String, String)>), Failure> {
    match kind {
        Kind::Edges => {
            let edges: Vec<EdgeInfo> = ctx.client.get("/v1/admin/edges", &[])?;
            let hosts = edges
                .iter()
                .map(|e| {
                    let address = if e.tcp_address.is_empty() {
                        &e.tls_address
                    } else {
                        &e.tcp_address
                    };
                    (e.id.clone(), host_of(address))
                })
                .collect();
            let members = edges
                .into_iter()
                .map(|e| Member {
                    id: e.id,
                    live: e.live,
                    draining: e.draining,
                    sessions: e.sessions,
                    registration: e.registration,
                    shards: 0,
                })
                .collect();
            Ok((
                Observation {
                    members,
                    unowned_shards: 0,
                    leader: None,
                    leader_term: 0,
                },
                hosts,
            ))
        }
        Kind::Apps => {
            let apps: Vec<AppInfo> = ctx.client.get("/v1/admin/apps", &[])?;
            let status: StatusReply = ctx.client.get("/v1/admin/status", &[])?;
            let hosts = apps
                .iter()
                .map(|a| (a.id.clone(), host_of(&a.grpc_address)))
                .collect();
            let members = apps
                .into_iter()
                .map(|a| Member {
                    id: a.id,
                    live: !a.leaving,
                    draining: false,
                    sessions: a.sessions,
                    registration: a.registration,
                    shards: a.shards,
                })
                .collect();
            Ok((
                Observation {
                    members,
                    unowned_shards: status.shards_unowned,
                    leader: None,
                    leader_term: 0,
                },
                hosts,
            ))
        }
        Kind::Control => {
            let status = control.status(ctx)?;
            let hosts = status
                .replicas
                .iter()
                .map(|r| (r.id.clone(), host_of(&r.http_address)))
                .collect();
            let members = status
                .replicas
                .into_iter()
                .map(|r| Member {
                    id: r.id,
                    live: true,
                    draining: false,
                    sessions: 0,
                    registration: r.registration,
                    shards: 0,
                })
                .collect();
            Ok((
                Observation {
                    members,
                    unowned_shards: 0,
                    leader: status.leader,
                    leader_term: status.leader_term,
                },
                hosts,
            ))
        }
    }
}

/// `host` of `host:port`, `[v6]:port` or a URL.
fn host_of(address: &str) -> String {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_owned();
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .to_owned()
}

fn set_draining(ctx: &Ctx, ids: &[String], drain: bool) -> Result<(), Failure> {
    for id in ids {
        super::control::post_drain(ctx, id, drain)?;
    }
    Ok(())
}

/// Runs the restart hook for one member; `Err` says how it failed.
fn hook(template: &str, id: &str, host: &str, timeout: Duration) -> Result<(), String> {
    let command = template.replace("{id}", id).replace("{host}", host);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("PYLON_ROLLOUT_ID", id)
        .env("PYLON_ROLLOUT_HOST", host)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                return Err(format!("`{command}` ended with {status}: {tail}"));
            }
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{command}` ran over {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for `{command}`: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_from_addresses_and_urls() {
        assert_eq!(host_of("10.0.0.5:8768"), "10.0.0.5");
        assert_eq!(host_of("[fd00::5]:8768"), "fd00::5");
        assert_eq!(host_of("http://app-1.pylon:7510/x"), "app-1.pylon");
        assert_eq!(host_of("edge-1"), "edge-1");
    }

    #[test]
    fn the_hook_gets_its_member_and_reports_failures() {
        assert_eq!(
            hook(
                "test {id} = e1 && test \"$PYLON_ROLLOUT_HOST\" = h",
                "e1",
                "h",
                Duration::from_secs(5)
            ),
            Ok(())
        );
        let failed = hook("echo broken >&2; exit 3", "e1", "h", Duration::from_secs(5));
        assert!(
            failed.as_ref().is_err_and(|e| e.contains("broken")),
            "{failed:?}"
        );
        let slow = hook("sleep 5", "e1", "h", Duration::from_millis(200));
        assert!(
            slow.as_ref().is_err_and(|e| e.contains("ran over")),
            "{slow:?}"
        );
    }
}
