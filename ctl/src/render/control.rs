//! How `pylonctl`'s operator commands print replies for people: aligned columns without
//! borders (easy to read, `grep` and `awk`), and `key: value` blocks. JSON output is the
//! reply itself, printed by the caller.

use std::collections::BTreeMap;

use pylon_proto::routes::{RouteChange, RouteDelta, RouteError, RouteTable, RouteView, NO_OWNER};

use pylon_proto::api::control::{
    AppInfo, EdgeInfo, EntryReply, PileShardReply, ShardMapReply, StatusReply,
};

/// Columns separated by two spaces, each as wide as its widest cell; no trailing blanks.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0);
            line.push_str(&" ".repeat(pad.saturating_sub(cell.chars().count())));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key:  value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| {
            let pad = width - k.chars().count();
            format!("{k}:{}  {v}\n", " ".repeat(pad))
        })
        .collect()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

/// `live`, `draining`, `leaving` or `down`, the first that applies from the end.
pub fn edge_state(e: &EdgeInfo) -> &'static str {
    if !e.live {
        "down"
    } else if e.leaving {
        "leaving"
    } else if e.draining {
        "draining"
    } else {
        "live"
    }
}

pub fn edges(edges: &[EdgeInfo]) -> String {
    if edges.is_empty() {
        return "No edges are registered.\n".into();
    }
    let rows: Vec<Vec<String>> = edges
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                or_dash(&e.tcp_address),
                or_dash(&e.tls_address),
                format!("{}/{}", e.sessions, e.capacity),
                edge_state(e).into(),
                or_dash(&e.version),
            ]
        })
        .collect();
    table(
        &["ID", "TCP", "TLS", "SESSIONS/CAPACITY", "STATE", "VERSION"],
        &rows,
    )
}

/// The one-line confirmation of `edges drain` / `edges undrain`.
pub fn drained(edge: &EdgeInfo, drain: bool) -> String {
    let mut line = if drain {
        format!(
            "edge {} is draining: it takes no new sessions and moves its chargers to other edges",
            edge.id
        )
    } else {
        format!(
            "edge {} is no longer draining: it takes new sessions again",
            edge.id
        )
    };
    if !edge.live {
        line.push_str(" (note: the edge is down at the moment)");
    } else if edge.leaving {
        line.push_str(" (note: the edge is shutting down)");
    }
    line.push('\n');
    line
}

pub fn apps(apps: &[AppInfo]) -> String {
    if apps.is_empty() {
        return "No app instances are registered.\n".into();
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                or_dash(&a.grpc_address),
                format!("{}/{}", a.sessions, a.capacity),
                a.shards.to_string(),
                if a.leaving { "leaving" } else { "live" }.into(),
                or_dash(&a.version),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "GRPC",
            "SESSIONS/CAPACITY",
            "SHARDS",
            "STATE",
            "VERSION",
        ],
        &rows,
    )
}

/// The shard map without its per-shard owner list.
pub fn shard_map(map: &ShardMapReply) -> String {
    let mut out = fields(&[
        ("shards", map.shard_count.to_string()),
        ("unowned", map.unowned.to_string()),
    ]);
    out.push('\n');
    let mut rows: Vec<Vec<String>> = map
        .per_app
        .iter()
        .map(|(app, n)| vec![app.clone(), n.to_string()])
        .collect();
    if rows.is_empty() {
        out.push_str("No app instance owns a shard.\n");
    } else {
        rows.push(vec!["(unowned)".into(), map.unowned.to_string()]);
        out.push_str(&table(&["APP", "SHARDS"], &rows));
    }
    out
}

pub fn pile_shard(reply: &PileShardReply) -> String {
    fields(&[
        ("pile", reply.pile.clone()),
        ("shard", reply.shard.to_string()),
        (
            "owner",
            reply
                .owner
                .clone()
                .unwrap_or_else(|| "none (no live app instance owns this shard)".into()),
        ),
        (
            "owner address",
            reply.owner_address.clone().unwrap_or_else(|| "-".into()),
        ),
    ])
}

pub fn entry(reply: &EntryReply) -> String {
    let mut pairs = vec![
        ("pile", reply.pile.clone()),
        ("transport", reply.transport.to_string()),
        (
            "primary",
            format!("{}  ({})", reply.primary.address, reply.primary.edge),
        ),
    ];
    if reply.backups.is_empty() {
        pairs.push(("backups", "none".into()));
    }
    for (i, b) in reply.backups.iter().enumerate() {
        pairs.push((
            if i == 0 { "backups" } else { "" },
            format!("{}  ({})", b.address, b.edge),
        ));
    }
    pairs.push(("ttl", format!("{}s", reply.ttl_seconds)));
    // Continuation lines of `backups` carry no key: blank out their colon.
    fields(&pairs)
        .lines()
        .map(|l| match l.strip_prefix(':') {
            Some(rest) => format!(" {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect()
}

/// Shards per app index, and the unowned count.
fn shard_counts(t: &RouteTable) -> (Vec<u32>, u32) {
    let mut per_app = vec![0u32; t.apps.len()];
    let mut unowned = 0;
    for &s in &t.shards {
        match per_app.get_mut(s as usize) {
            Some(n) if s != NO_OWNER => *n += 1,
            _ => unowned += 1,
        }
    }
    (per_app, unowned)
}

/// `routes show`: the table's size and members, not its 1024 shard owners.
pub fn route_table(t: &RouteTable) -> String {
    let (per_app, unowned) = shard_counts(t);
    let draining = t.edges.iter().filter(|e| e.draining).count();
    let mut out = fields(&[
        ("version", t.version.to_string()),
        ("shards", format!("{} ({unowned} unowned)", t.shard_count)),
        ("edges", format!("{} ({draining} draining)", t.edges.len())),
        ("apps", t.apps.len().to_string()),
    ]);
    out.push('\n');
    if t.edges.is_empty() {
        out.push_str("No edges in the table.\n");
    } else {
        let rows: Vec<Vec<String>> = t
            .edges
            .iter()
            .map(|e| {
                vec![
                    e.id.clone(),
                    or_dash(&e.tcp_address),
                    or_dash(&e.tls_address),
                    e.capacity.to_string(),
                    if e.draining { "draining" } else { "live" }.into(),
                ]
            })
            .collect();
        out.push_str(&table(&["EDGE", "TCP", "TLS", "CAPACITY", "STATE"], &rows));
    }
    out.push('\n');
    if t.apps.is_empty() {
        out.push_str("No app instances in the table.\n");
    } else {
        let rows: Vec<Vec<String>> = t
            .apps
            .iter()
            .zip(&per_app)
            .map(|(a, n)| {
                vec![
                    a.id.clone(),
                    or_dash(&a.grpc_address),
                    a.capacity.to_string(),
                    n.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&["APP", "GRPC", "CAPACITY", "SHARDS"], &rows));
    }
    out
}

/// One `routes watch` line for a snapshot.
pub fn snapshot_line(t: &RouteTable) -> String {
    let (_, unowned) = shard_counts(t);
    let draining = t.edges.iter().filter(|e| e.draining).count();
    format!(
        "v{} snapshot: {} edges ({draining} draining), {} apps, {} shards ({unowned} unowned)",
        t.version,
        t.edges.len(),
        t.apps.len(),
        t.shard_count
    )
}

/// One `routes watch` line for a delta. `before`: the table it applies to, if known, to
/// tell additions from updates.
pub fn delta_line(delta: &RouteDelta, before: Option<&RouteView>) -> String {
    let mut parts = Vec::new();
    for change in &delta.changes {
        parts.push(match change {
            RouteChange::EdgeUpsert(e) => match before.map(|v| v.edge(&e.id)) {
                Some(None) => format!("edge {} added", e.id),
                Some(Some(old)) if old.draining != e.draining => format!(
                    "edge {} {}",
                    e.id,
                    if e.draining { "draining" } else { "undrained" }
                ),
                Some(Some(_)) => format!("edge {} updated", e.id),
                None => format!(
                    "edge {} added or updated{}",
                    e.id,
                    if e.draining { " (draining)" } else { "" }
                ),
            },
            RouteChange::EdgeRemove(id) => format!("edge {id} removed"),
            RouteChange::AppUpsert(a) => match before.map(|v| v.app(&a.id)) {
                Some(None) => format!("app {} added", a.id),
                Some(Some(_)) => format!("app {} updated", a.id),
                None => format!("app {} added or updated", a.id),
            },
            RouteChange::AppRemove(id) => format!("app {id} removed"),
            RouteChange::ShardMoves(moves) => {
                let mut to: BTreeMap<&str, usize> = BTreeMap::new();
                for m in moves {
                    let app = if m.app.is_empty() { "unowned" } else { &m.app };
                    *to.entry(app).or_default() += 1;
                }
                let to: Vec<String> = to.iter().map(|(app, n)| format!("{app} +{n}")).collect();
                format!(
                    "{} shard{} moved ({})",
                    moves.len(),
                    if moves.len() == 1 { "" } else { "s" },
                    to.join(", ")
                )
            }
        });
    }
    if parts.is_empty() {
        parts.push("no changes".into());
    }
    format!(
        "v{} delta from v{}: {}",
        delta.version,
        delta.base_version,
        parts.join("; ")
    )
}

/// The `routes watch` line for an update that carries neither a snapshot nor a delta.
pub(crate) fn empty_update_line(version: u64) -> String {
    format!("v{version}: an update without a body")
}

/// What `routes watch` adds to a delta's line when the delta would not apply to the
/// table it holds (`e` says why): until the next snapshot, additions and updates cannot
/// be told apart.
pub(crate) fn out_of_step_note(e: &RouteError) -> String {
    format!(" ({e}; waiting for the next snapshot)")
}

pub fn status(s: &StatusReply) -> String {
    let mut out = fields(&[
        ("replica", s.replica.clone()),
        (
            "leader",
            s.leader.clone().unwrap_or_else(|| "none elected".into()),
        ),
        ("backend", s.backend.clone()),
        (
            "registry",
            if s.registry_ok { "ok" } else { "NOT ANSWERING" }.into(),
        ),
        ("grpc address", s.grpc_address.clone()),
        ("route version", s.route_version.to_string()),
        (
            "edges",
            format!("{} live, {} draining", s.edges_live, s.edges_draining),
        ),
        ("apps", format!("{} live", s.apps_live)),
        (
            "shards",
            format!("{} ({} unowned)", s.shard_count, s.shards_unowned),
        ),
        ("subscribers", s.subscribers.len().to_string()),
    ]);
    if !s.subscribers.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .subscribers
            .iter()
            .map(|sub| {
                vec![
                    sub.id.clone(),
                    sub.applied_version.to_string(),
                    if sub.lag_seconds > 0.0 {
                        format!("{:.1}s", sub.lag_seconds)
                    } else {
                        "up to date".into()
                    },
                ]
            })
            .collect();
        out.push_str(&table(&["SUBSCRIBER", "APPLIED", "LAG"], &rows));
    }
    if !s.replicas.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .replicas
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    if r.leader { "leader" } else { "follower" }.into(),
                    r.http_address.clone(),
                    r.grpc_address.clone(),
                    r.version.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["REPLICA", "ROLE", "HTTP", "GRPC", "VERSION"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use pylon_proto::routes::{AppRoute, EdgeRoute, ShardMove};

    use super::*;
    use crate::client::tests::sample_edges;
    use pylon_proto::api::control::{EntryAddress, ReplicaInfo, SubscriberInfo, Transport};

    #[test]
    fn edges_render_as_aligned_columns() {
        let mut edges = sample_edges();
        edges.push(EdgeInfo {
            id: "edge-3".into(),
            live: false,
            ..edges[0].clone()
        });
        assert_eq!(
            self::edges(&edges),
            "\
ID      TCP            TLS            SESSIONS/CAPACITY  STATE     VERSION
edge-1  10.0.0.1:7000  10.0.0.1:7443  1234/20000         live      0.1.0
edge-2  10.0.0.2:7000  -              7/20000            draining  0.1.0
edge-3  10.0.0.1:7000  10.0.0.1:7443  1234/20000         down      0.1.0
"
        );
        assert_eq!(self::edges(&[]), "No edges are registered.\n");
    }

    #[test]
    fn edge_states_take_the_most_serious() {
        let mut e = sample_edges().remove(1);
        assert_eq!(edge_state(&e), "draining");
        e.leaving = true;
        assert_eq!(edge_state(&e), "leaving");
        e.live = false;
        assert_eq!(edge_state(&e), "down");
    }

    #[test]
    fn drain_confirmations() {
        let edges = sample_edges();
        assert_eq!(
            drained(&edges[1], true),
            "edge edge-2 is draining: it takes no new sessions and moves its chargers to \
             other edges\n"
        );
        assert_eq!(
            drained(&edges[0], false),
            "edge edge-1 is no longer draining: it takes new sessions again\n"
        );
    }

    fn sample_status() -> StatusReply {
        StatusReply {
            replica: "ctl-1".into(),
            leader: Some("ctl-1".into()),
            leader_term: 7,
            backend: "etcd".into(),
            registry_ok: true,
            grpc_address: "10.0.0.5:7401".into(),
            route_version: 42,
            edges_live: 3,
            edges_draining: 1,
            apps_live: 2,
            shard_count: 1024,
            shards_unowned: 0,
            subscribers: vec![
                SubscriberInfo {
                    id: "edge/edge-1".into(),
                    applied_version: 42,
                    lag_seconds: 0.0,
                },
                SubscriberInfo {
                    id: "app/app-1".into(),
                    applied_version: 41,
                    lag_seconds: 2.3,
                },
            ],
            replicas: vec![
                ReplicaInfo {
                    id: "ctl-1".into(),
                    http_address: "https://10.0.0.5:7400".into(),
                    grpc_address: "10.0.0.5:7401".into(),
                    version: "0.1.0".into(),
                    leader: true,
                    registration: 7,
                },
                ReplicaInfo {
                    id: "ctl-2".into(),
                    http_address: "https://10.0.0.6:7400".into(),
                    grpc_address: "10.0.0.6:7401".into(),
                    version: "0.1.0".into(),
                    leader: false,
                    registration: 9,
                },
            ],
        }
    }

    #[test]
    fn status_renders() {
        assert_eq!(
            status(&sample_status()),
            "\
replica:        ctl-1
leader:         ctl-1
backend:        etcd
registry:       ok
grpc address:   10.0.0.5:7401
route version:  42
edges:          3 live, 1 draining
apps:           2 live
shards:         1024 (0 unowned)
subscribers:    2

SUBSCRIBER   APPLIED  LAG
edge/edge-1  42       up to date
app/app-1    41       2.3s

REPLICA  ROLE      HTTP                   GRPC           VERSION
ctl-1    leader    https://10.0.0.5:7400  10.0.0.5:7401  0.1.0
ctl-2    follower  https://10.0.0.6:7400  10.0.0.6:7401  0.1.0
"
        );
        let mut s = sample_status();
        s.leader = None;
        s.registry_ok = false;
        s.subscribers.clear();
        s.replicas.clear();
        let text = status(&s);
        assert!(text.contains("leader:         none elected\n"), "{text}");
        assert!(text.contains("registry:       NOT ANSWERING\n"), "{text}");
        assert!(text.ends_with("subscribers:    0\n"), "{text}");
    }

    #[test]
    fn the_shard_map_leaves_out_the_owner_list() {
        let map = ShardMapReply {
            shard_count: 4,
            per_app: [("app-1".to_string(), 2), ("app-2".to_string(), 1)].into(),
            unowned: 1,
            owners: vec![
                Some("app-1".into()),
                Some("app-1".into()),
                Some("app-2".into()),
                None,
            ],
        };
        assert_eq!(
            shard_map(&map),
            "\
shards:   4
unowned:  1

APP        SHARDS
app-1      2
app-2      1
(unowned)  1
"
        );
    }

    #[test]
    fn pile_and_entry_render() {
        let text = pile_shard(&PileShardReply {
            pile: "32010200000001".into(),
            shard: 417,
            owner: None,
            owner_address: None,
        });
        assert!(text.contains("shard:          417\n"), "{text}");
        assert!(text.contains("owner:          none"), "{text}");

        let addr = |edge: &str, address: &str| EntryAddress {
            edge: edge.into(),
            address: address.into(),
        };
        let text = entry(&EntryReply {
            pile: "32010200000001".into(),
            transport: Transport::Tls,
            primary: addr("edge-1", "10.0.0.1:7443"),
            backups: vec![
                addr("edge-2", "10.0.0.2:7443"),
                addr("edge-3", "10.0.0.3:7443"),
            ],
            ttl_seconds: 300,
        });
        assert_eq!(
            text,
            "\
pile:       32010200000001
transport:  tls
primary:    10.0.0.1:7443  (edge-1)
backups:    10.0.0.2:7443  (edge-2)
            10.0.0.3:7443  (edge-3)
ttl:        300s
"
        );
    }

    fn sample_table() -> RouteTable {
        let mut t = RouteTable::empty(4);
        t.version = 9;
        t.edges = vec![EdgeRoute {
            id: "edge-1".into(),
            tcp_address: "10.0.0.1:7000".into(),
            tls_address: String::new(),
            capacity: 20000,
            draining: true,
        }];
        t.apps = vec![AppRoute {
            id: "app-1".into(),
            grpc_address: "10.0.0.9:9000".into(),
            capacity: 0,
        }];
        t.shards = vec![0, 0, 0, NO_OWNER];
        t
    }

    #[test]
    fn route_tables_are_summarised() {
        let t = sample_table();
        assert_eq!(
            route_table(&t),
            "\
version:  9
shards:   4 (1 unowned)
edges:    1 (1 draining)
apps:     1

EDGE    TCP            TLS  CAPACITY  STATE
edge-1  10.0.0.1:7000  -    20000     draining

APP    GRPC           CAPACITY  SHARDS
app-1  10.0.0.9:9000  0         3
"
        );
        assert_eq!(
            snapshot_line(&t),
            "v9 snapshot: 1 edges (1 draining), 1 apps, 4 shards (1 unowned)"
        );
    }

    #[test]
    fn deltas_say_what_changed() {
        let t = sample_table();
        let view = RouteView::from_snapshot(&t.encode()).unwrap();
        let mut undrained = t.edges[0].clone();
        undrained.draining = false;
        let delta = RouteDelta {
            base_version: 9,
            version: 10,
            changes: vec![
                RouteChange::EdgeUpsert(undrained),
                RouteChange::AppUpsert(AppRoute {
                    id: "app-2".into(),
                    grpc_address: "x:1".into(),
                    capacity: 0,
                }),
                RouteChange::EdgeRemove("edge-9".into()),
                RouteChange::ShardMoves(vec![
                    ShardMove {
                        shard: 0,
                        app: "app-2".into(),
                    },
                    ShardMove {
                        shard: 3,
                        app: "app-2".into(),
                    },
                    ShardMove {
                        shard: 1,
                        app: String::new(),
                    },
                ]),
            ],
        };
        assert_eq!(
            delta_line(&delta, Some(&view)),
            "v10 delta from v9: edge edge-1 undrained; app app-2 added; edge edge-9 removed; \
             3 shards moved (app-2 +2, unowned +1)"
        );
        let empty = RouteDelta {
            base_version: 10,
            version: 11,
            changes: vec![],
        };
        assert_eq!(delta_line(&empty, None), "v11 delta from v10: no changes");
    }

    #[test]
    fn tables_handle_ragged_rows() {
        assert_eq!(
            table(
                &["A", "BB"],
                &[vec!["xxx".into(), "y".into()], vec!["z".into()]]
            ),
            "A    BB\nxxx  y\nz\n"
        );
    }
}
