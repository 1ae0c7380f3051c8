//! What the registry holds, and the views derived from it: members, their load, operator
//! settings, the shard map, the leader, the route table and the dispatch candidates.
//!
//! Key layout (values are JSON):
//! - `/pylon/members/{edge|app}/<id>` -> [`MemberRecord`], on the member's lease
//! - `/pylon/load/{edge|app}/<id>`    -> [`LoadRecord`], on the member's lease
//! - `/pylon/settings/edge/<id>`      -> [`EdgeSettings`], kept across restarts
//! - `/pylon/shards`                  -> [`ShardMapRecord`], written by the leader only
//! - `/pylon/leader`                  -> `<replica id>#<lease>` of the leader, on that lease
//! - `/pylon/replicas/<id>`           -> [`ReplicaRecord`], on the replica's own lease
//! - `/pylon/dr/role`                 -> [`crate::dr::RoleRecord`], the site's role

use std::collections::BTreeMap;

use pylon_proto::routes::{AppRoute, EdgeRoute, RouteTable, NO_OWNER};
use serde::{Deserialize, Serialize};

use crate::dispatch::Candidate;
use crate::registry::{KeyValue, LeaseId, Revision, WatchEvent};

pub const ROOT: &str = "/pylon/";
pub const SHARDS_KEY: &str = "/pylon/shards";
pub const LEADER_KEY: &str = "/pylon/leader";
/// Between the replica id and its lease in the leader key's value.
pub const LEADER_SEPARATOR: char = '#';

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    Edge,
    App,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::Edge => "edge",
            MemberKind::App => "app",
        }
    }
}

pub fn member_key(kind: MemberKind, id: &str) -> String {
    format!("{ROOT}members/{}/{id}", kind.as_str())
}

pub fn load_key(kind: MemberKind, id: &str) -> String {
    format!("{ROOT}load/{}/{id}", kind.as_str())
}

/// What operators watch of a member (sessions per executor, heartbeats, certificate),
/// written at most every [`TELEMETRY_EVERY_MS`] under the member's lease.
pub fn telemetry_key(kind: MemberKind, id: &str) -> String {
    format!("{ROOT}telemetry/{}/{id}", kind.as_str())
}

/// How often a member's telemetry is written to the registry, at most.
pub const TELEMETRY_EVERY_MS: i64 = 30_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryRecord {
    /// Sessions on each executor.
    pub executors: Vec<u32>,
    /// Heartbeats answered per minute, over the last interval.
    pub heartbeats_per_min: u64,
    /// When the certificate chargers see expires (Unix seconds; 0: none).
    pub cert_not_after: i64,
    /// When this was reported (Unix ms).
    pub at_ms: i64,
}

pub fn replica_key(id: &str) -> String {
    format!("{ROOT}replicas/{id}")
}

/// A control-plane replica, registered by itself while it runs (`crate::presence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub id: String,
    pub http_address: String,
    pub grpc_address: String,
    pub version: String,
    pub lease: LeaseId,
}

pub fn edge_settings_key(id: &str) -> String {
    format!("{ROOT}settings/edge/{id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub id: String,
    pub kind: MemberKind,
    #[serde(default)]
    pub tcp_address: String,
    #[serde(default)]
    pub tls_address: String,
    #[serde(default)]
    pub grpc_address: String,
    /// App instances: the operator API's base URL (`http://host:port`).
    #[serde(default)]
    pub http_address: String,
    pub capacity: u32,
    #[serde(default)]
    pub version: String,
    pub lease: LeaseId,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRecord {
    pub sessions: u32,
    #[serde(default)]
    pub leaving: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeSettings {
    pub draining: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMapRecord {
    pub shard_count: u32,
    /// Owner per shard; empty: none.
    pub owners: Vec<String>,
}

/// A registered member with its load report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub record: MemberRecord,
    pub load: LoadRecord,
}

/// The registry's keys under [`ROOT`], as of `revision`.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub revision: Revision,
    keys: BTreeMap<String, KeyValue>,
}

impl ClusterState {
    pub fn from_listing(revision: Revision, items: Vec<KeyValue>) -> Self {
        ClusterState {
            revision,
            keys: items.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
        }
    }

    pub fn apply(&mut self, event: WatchEvent) {
        self.revision = self.revision.max(event.revision());
        match event {
            WatchEvent::Put(kv) => {
                self.keys.insert(kv.key.clone(), kv);
            }
            WatchEvent::Delete { key, .. } => {
                self.keys.remove(&key);
            }
        }
    }

    /// A key's value as written.
    pub fn value(&self, key: &str) -> Option<&[u8]> {
        self.keys.get(key).map(|kv| kv.value.as_slice())
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Option<T> {
        let kv = self.keys.get(key)?;
        match serde_json::from_slice(&kv.value) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(key, "ignoring an unreadable registry value: {e}");
                None
            }
        }
    }

    /// Registered members of one kind, sorted by id.
    pub fn members(&self, kind: MemberKind) -> Vec<Member> {
        let prefix = member_key(kind, "");
        self.keys
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| self.json::<MemberRecord>(k))
            .filter(|r| r.kind == kind)
            .map(|record| Member {
                load: self.json(&load_key(kind, &record.id)).unwrap_or_default(),
                record,
            })
            .collect()
    }

    pub fn member(&self, kind: MemberKind, id: &str) -> Option<Member> {
        let record: MemberRecord = self.json(&member_key(kind, id))?;
        Some(Member {
            load: self.json(&load_key(kind, id)).unwrap_or_default(),
            record,
        })
    }

    pub fn telemetry(&self, kind: MemberKind, id: &str) -> Option<TelemetryRecord> {
        self.json(&telemetry_key(kind, id))
    }

    pub fn edge_settings(&self, id: &str) -> EdgeSettings {
        self.json(&edge_settings_key(id)).unwrap_or_default()
    }

    /// Edges an operator marked draining, registered or not.
    pub fn drained_edges(&self) -> Vec<String> {
        let prefix = edge_settings_key("");
        self.keys
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| self.json::<EdgeSettings>(k).is_some_and(|s| s.draining))
            .map(|(k, _)| k[prefix.len()..].to_owned())
            .collect()
    }

    /// Registered control-plane replicas, sorted by id.
    pub fn replicas(&self) -> Vec<ReplicaRecord> {
        let prefix = replica_key("");
        self.keys
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| self.json::<ReplicaRecord>(k))
            .collect()
    }

    /// The lease of the leader key: changes with every election, even of the same
    /// replica (0 when nobody leads).
    pub fn leader_term(&self) -> i64 {
        self.keys
            .get(LEADER_KEY)
            .and_then(|kv| std::str::from_utf8(&kv.value).ok())
            .and_then(|v| v.split_once(LEADER_SEPARATOR))
            .and_then(|(_, lease)| i64::from_str_radix(lease, 16).ok())
            .unwrap_or(0)
    }

    /// The leading replica's id.
    pub fn leader(&self) -> Option<String> {
        let kv = self.keys.get(LEADER_KEY)?;
        let value = std::str::from_utf8(&kv.value).ok()?;
        Some(
            value
                .split(LEADER_SEPARATOR)
                .next()
                .unwrap_or(value)
                .to_owned(),
        )
    }

    /// The stored shard map, or all-unowned when none is stored or it was made for
    /// another shard count.
    pub fn shard_owners(&self, shard_count: u32) -> Vec<Option<String>> {
        match self.json::<ShardMapRecord>(SHARDS_KEY) {
            Some(map)
                if map.shard_count == shard_count && map.owners.len() == shard_count as usize =>
            {
                map.owners
                    .into_iter()
                    .map(|o| (!o.is_empty()).then_some(o))
                    .collect()
            }
            _ => vec![None; shard_count as usize],
        }
    }

    /// App instances that may own shards: registered and not leaving.
    pub fn shard_candidates(&self) -> Vec<String> {
        self.members(MemberKind::App)
            .into_iter()
            .filter(|m| !m.load.leaving)
            .map(|m| m.record.id)
            .collect()
    }

    /// The table pushed to subscribers. Its version is the registry revision it reflects.
    pub fn route_table(&self, shard_count: u32) -> RouteTable {
        let edges: Vec<EdgeRoute> = self
            .members(MemberKind::Edge)
            .into_iter()
            .map(|m| EdgeRoute {
                draining: self.edge_settings(&m.record.id).draining,
                id: m.record.id,
                tcp_address: m.record.tcp_address,
                tls_address: m.record.tls_address,
                capacity: m.record.capacity,
            })
            .collect();
        let apps: Vec<AppRoute> = self
            .members(MemberKind::App)
            .into_iter()
            .map(|m| AppRoute {
                id: m.record.id,
                grpc_address: m.record.grpc_address,
                capacity: m.record.capacity,
            })
            .collect();
        let shards = self
            .shard_owners(shard_count)
            .iter()
            .map(|owner| {
                owner
                    .as_deref()
                    .and_then(|id| apps.binary_search_by(|a| a.id.as_str().cmp(id)).ok())
                    .map_or(NO_OWNER, |i| i as u32)
            })
            .collect();
        RouteTable {
            version: self.revision as u64,
            shard_count,
            edges,
            apps,
            shards,
        }
    }

    /// Every registered edge as dispatch sees it.
    pub fn dispatch_candidates(&self) -> Vec<Candidate> {
        self.members(MemberKind::Edge)
            .into_iter()
            .map(|m| {
                let closed = m.load.leaving || self.edge_settings(&m.record.id).draining;
                Candidate::new(
                    m.record.id,
                    m.record.tcp_address,
                    m.record.tls_address,
                    m.record.capacity,
                    m.load.sessions,
                    closed,
                )
            })
            .collect()
    }
}

/// Two tables hold the same routes, whatever their versions.
pub fn same_routes(a: &RouteTable, b: &RouteTable) -> bool {
    a.shard_count == b.shard_count && a.edges == b.edges && a.apps == b.apps && a.shards == b.shards
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: impl Serialize, rev: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: serde_json::to_vec(&value).unwrap(),
            mod_revision: rev,
            lease: None,
        }
    }

    fn edge(id: &str) -> MemberRecord {
        MemberRecord {
            id: id.into(),
            kind: MemberKind::Edge,
            tcp_address: format!("{id}:1"),
            tls_address: String::new(),
            grpc_address: String::new(),
            http_address: String::new(),
            capacity: 10,
            version: "t".into(),
            lease: 1,
        }
    }

    #[test]
    fn derives_routes_and_candidates() {
        let mut app = edge("a1");
        app.kind = MemberKind::App;
        let mut state = ClusterState::from_listing(
            5,
            vec![
                kv(&member_key(MemberKind::Edge, "e1"), edge("e1"), 1),
                kv(&member_key(MemberKind::Edge, "e2"), edge("e2"), 2),
                kv(
                    &load_key(MemberKind::Edge, "e2"),
                    LoadRecord {
                        sessions: 10,
                        leaving: false,
                    },
                    3,
                ),
                kv(&edge_settings_key("e1"), EdgeSettings { draining: true }, 4),
                kv(&member_key(MemberKind::App, "a1"), app, 5),
                kv(
                    SHARDS_KEY,
                    ShardMapRecord {
                        shard_count: 2,
                        owners: vec!["a1".into(), "gone".into()],
                    },
                    5,
                ),
            ],
        );
        let table = state.route_table(2);
        assert_eq!(table.version, 5);
        assert_eq!(table.edges.len(), 2);
        assert!(table.edges[0].draining && !table.edges[1].draining);
        assert_eq!(table.shards, vec![0, NO_OWNER]);
        let c = state.dispatch_candidates();
        assert!(c[0].closed && c[1].sessions == 10);
        assert_eq!(state.drained_edges(), vec!["e1".to_string()]);

        state.apply(WatchEvent::Delete {
            key: member_key(MemberKind::Edge, "e1"),
            revision: 9,
        });
        assert_eq!(state.route_table(2).edges.len(), 1);
        assert_eq!(state.revision, 9);
        // A shard map for another shard count is ignored, not misread.
        assert!(state.shard_owners(4).iter().all(Option::is_none));
    }

    #[test]
    fn unreadable_values_are_skipped() {
        let state = ClusterState::from_listing(
            1,
            vec![KeyValue {
                key: member_key(MemberKind::Edge, "bad"),
                value: b"{not json".to_vec(),
                mod_revision: 1,
                lease: None,
            }],
        );
        assert!(state.members(MemberKind::Edge).is_empty());
    }
}
