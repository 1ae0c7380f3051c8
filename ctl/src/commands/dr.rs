//! `pylonctl dr status|promote|demote`: disaster recovery between a primary and a standby
//! site ([`pylon_proto::api::dr`]), on the control plane of the site named by --endpoint.

use std::fmt::Write as _;
use std::io::Write;

use clap::{Args, Subcommand};
use pylon_proto::api::dr::{DemoteRequest, DrStatus, PromoteReply, PromoteRequest, SiteRole};

use super::{ConnectOptions, Ctx};
use crate::cli::Failure;

pub const DR_ABOUT: &str = "\
Disaster recovery with a second site. Each site is a whole Pylon: control plane, app
instances, edges and a PostgreSQL store. The standby site's store streams from the primary
site's; its control plane copies the primary's operators and tokens every few seconds and
its dispatch turns chargers away, so they stay with the primary. When the primary site is
lost, `pylonctl dr promote` on the standby promotes its store and makes it the primary:
its dispatch sends chargers to its own edges, and they carry on there.

Set up in each site's control-plane config (`[dr]`: site, role, peer, peer_token_file,
store_url); see the README's \"A second site\". --endpoint names the site asked.

Examples:
  pylonctl dr status --endpoint https://standby.example:7400
  pylonctl dr promote --endpoint https://standby.example:7400
  pylonctl dr demote --endpoint https://old-primary.example:7400";

const STATUS_ABOUT: &str = "\
Show this site's role, the other site (reachable, its role), the store's replication and
the registry mirror. On a primary, each standby streaming from its store, with how much
WAL it has not yet flushed (what losing this site now would lose) and its replay lag. On a
standby, how much of the primary's WAL it has not received (as of the primary's last
report, and how old that report is): the recovery point. Needs the read role.

Examples:
  pylonctl dr status
  pylonctl dr status -o json | jq .store.receiver.behind_bytes";

const PROMOTE_ABOUT: &str = "\
Make this standby site the primary: its PostgreSQL standby is promoted (pg_promote, waiting
until it takes writes), then the site's role is written, and its dispatch sends chargers to
its own edges from then on. Chargers that asked the lost site go on to this one.

Refused while the other site's control plane answers and says it is primary, or answers
but its role cannot be read (a refused token, TLS): two primaries would each take chargers
and write diverging stores. An other site that cannot be reached at all does not stop it. Stop that site first, or pass --force
when it is known to be cut off from chargers (then fence it: it must not come back as a
primary). Afterwards the old site must be rebuilt as a standby of this one (a new
pg_basebackup, or pg_rewind) and demoted before it runs again. Needs the admin role.

Examples:
  pylonctl dr promote
  pylonctl dr promote --force";

const DEMOTE_ABOUT: &str = "\
Mark this site a standby again: its dispatch turns chargers away and its control plane
follows the other site's registry. Do this on the old primary after its store was rebuilt
as a standby of the new primary, before its edges take chargers (a primary that knows the
other site as its peer stands down by itself when it finds it promoted later). The store
itself is not touched. Refused unless the other site answers that it is primary and this
site's store is a standby (--force to demote anyway). Needs the admin role.

Examples:
  pylonctl dr demote";

#[derive(Debug, Args)]
pub struct DrArgs {
    #[command(subcommand)]
    pub command: DrCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum DrCommand {
    /// Show the site's role, the other site, replication lag and the registry mirror.
    #[command(long_about = STATUS_ABOUT)]
    Status,
    /// Make this standby site the primary (promotes its store; needs admin).
    #[command(long_about = PROMOTE_ABOUT)]
    Promote {
        /// Promote even though the other site answers and says it is primary.
        #[arg(long)]
        force: bool,
    },
    /// Mark this site a standby again, once its store follows the new primary (needs admin).
    #[command(long_about = DEMOTE_ABOUT)]
    Demote {
        /// Demote even though the other site is not known to be primary, or this site's
        /// store still takes writes.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `pylonctl dr ...`.
pub fn run_dr(
    args: DrArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    match args.command {
        DrCommand::Status => {
            let status: DrStatus = ctx.client.get("/v1/admin/dr/status", &[])?;
            ctx.emit(out, &status, render_status)
        }
        DrCommand::Promote { force } => {
            let reply: PromoteReply = ctx
                .client
                .post_json("/v1/admin/dr/promote", &PromoteRequest { force })?;
            ctx.emit(out, &reply, render_promote)
        }
        DrCommand::Demote { force } => {
            let status: DrStatus = ctx
                .client
                .post_json("/v1/admin/dr/demote", &DemoteRequest { force })?;
            ctx.emit(out, &status, render_status)
        }
    }
}

fn bytes(n: i64) -> String {
    crate::units::format_bytes(n.max(0) as u64)
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{s:.1} s"))
}

pub(crate) fn render_status(s: &DrStatus) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "site:      {} ({})", s.site, s.role.as_str());
    if let Some(peer) = &s.peer {
        let state = match (&peer.role, &peer.error) {
            (Some(role), _) => format!("reachable, {}", role.as_str()),
            (None, Some(e)) => format!("unreachable: {e}"),
            (None, None) => "unreachable".into(),
        };
        let _ = writeln!(text, "peer:      {} ({state})", peer.url);
        if s.role == SiteRole::Primary && peer.role == Some(SiteRole::Primary) {
            let _ = writeln!(
                text,
                "WARNING:   both sites say they are primary; demote the one chargers must leave"
            );
        }
    }
    match &s.store {
        None => {
            let _ = writeln!(text, "store:     not watched (no [dr] store_url)");
        }
        Some(store) if store.error.is_some() => {
            let _ = writeln!(
                text,
                "store:     cannot be asked: {}",
                store.error.as_deref().unwrap_or_default()
            );
        }
        Some(store) if store.in_recovery => {
            let _ = writeln!(text, "store:     standby (replaying the primary's WAL)");
            if let Some(r) = &store.receiver {
                let _ = writeln!(
                    text,
                    "  stream:  {} from {}",
                    r.status.as_deref().unwrap_or("not connected"),
                    r.sender.as_deref().unwrap_or("-")
                );
                let _ = writeln!(
                    text,
                    "  behind:  {} not yet received (primary's report {} old)",
                    bytes(r.behind_bytes),
                    secs(r.last_message_secs)
                );
                let _ = writeln!(
                    text,
                    "  wal:     received {}, replayed {}",
                    r.received_lsn.as_deref().unwrap_or("-"),
                    r.replayed_lsn.as_deref().unwrap_or("-")
                );
            }
        }
        Some(store) => {
            let _ = writeln!(
                text,
                "store:     primary, {} standby(s)",
                store.standbys.len()
            );
            for standby in &store.standbys {
                let _ = writeln!(
                    text,
                    "  {} ({}, {} {}): {} not flushed there, {} not replayed, replay lag {}",
                    standby.name,
                    standby.client,
                    standby.state,
                    standby.sync_state,
                    bytes(standby.flush_behind_bytes),
                    bytes(standby.replay_behind_bytes),
                    secs(standby.replay_lag_secs)
                );
            }
        }
    }
    if let Some(m) = &s.mirror {
        let _ = writeln!(
            text,
            "mirror:    {} keys, copied {} ago{}",
            m.keys,
            secs(m.age_secs),
            m.last_error
                .as_deref()
                .map(|e| format!("; last try failed: {e}"))
                .unwrap_or_default()
        );
    }
    text
}

fn render_promote(r: &PromoteReply) -> String {
    format!(
        "site {} is now {}.\nstore: {}\nregistry mirror was {} old.\ntook {:.1} s.\n",
        r.site,
        r.role.as_str(),
        if r.store_promoted {
            format!(
                "promoted at {}",
                r.store_lsn.as_deref().unwrap_or("an unknown position")
            )
        } else {
            "not promoted (it already took writes, or no [dr] store_url)".into()
        },
        secs(r.mirror_age_secs),
        r.took_secs
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_proto::api::dr::{MirrorStatus, PeerStatus, ReceiverLag, StoreReplication};

    #[test]
    fn a_standby_shows_its_recovery_point() {
        let status = DrStatus {
            site: "east".into(),
            role: SiteRole::Standby,
            role_since_ms: 0,
            peer: Some(PeerStatus {
                url: "https://west:7400".into(),
                reachable: true,
                role: Some(SiteRole::Primary),
                error: None,
            }),
            store: Some(StoreReplication {
                in_recovery: true,
                standbys: vec![],
                receiver: Some(ReceiverLag {
                    status: Some("streaming".into()),
                    sender: Some("host=10.0.0.1 port=5432".into()),
                    received_lsn: Some("0/3000148".into()),
                    replayed_lsn: Some("0/3000148".into()),
                    primary_end_lsn: Some("0/3000148".into()),
                    behind_bytes: 0,
                    last_message_secs: Some(0.4),
                    last_replayed_commit_ms: None,
                }),
                error: None,
            }),
            mirror: Some(MirrorStatus {
                last_ok_ms: 1,
                age_secs: Some(2.0),
                keys: 4,
                last_changes: 0,
                last_error: None,
            }),
        };
        let text = render_status(&status);
        assert!(text.contains("east (standby)"), "{text}");
        assert!(text.contains("reachable, primary"), "{text}");
        assert!(text.contains("streaming from host=10.0.0.1"), "{text}");
        assert!(
            text.contains("not yet received (primary's report 0.4 s old)"),
            "{text}"
        );
        assert!(text.contains("4 keys, copied 2.0 s ago"), "{text}");
    }
}
