//! The route table the control plane pushes to edges and app-service instances: which
//! edges exist (and their settings), which app instances exist, and which instance owns
//! each shard of piles.
//!
//! The table travels as rkyv bytes. A subscriber validates a snapshot once and then reads
//! it in place ([`RouteView`]); deltas ([`RouteDelta`]) land in a small overlay on top, so
//! applying a change never re-reads or re-builds the whole table.

use std::collections::BTreeMap;

use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::ykc::PileNo;

/// Shards piles hash into unless configured otherwise.
pub const DEFAULT_SHARD_COUNT: u32 = 1024;
/// A shard no app instance owns (no instance is live).
pub const NO_OWNER: u32 = u32::MAX;

/// The shard a pile belongs to. Stable across processes and releases: it depends only on
/// the pile number and the shard count.
pub fn shard_of(pile: &PileNo, shard_count: u32) -> u32 {
    // splitmix64 finaliser: pile numbers are sequential in practice, so mix before `%`.
    let mut x = pile.to_u64().wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x % u64::from(shard_count.max(1))) as u32
}

/// An edge as routes see it.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct EdgeRoute {
    pub id: String,
    /// `host:port` for plain TCP chargers, empty when not offered.
    pub tcp_address: String,
    /// `host:port` for TLS chargers, empty when not offered.
    pub tls_address: String,
    /// Sessions the edge takes at most.
    pub capacity: u32,
    /// Set by an operator (`pylonctl edges drain`): take no new sessions, move chargers off.
    pub draining: bool,
}

/// An app-service instance as routes see it.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct AppRoute {
    pub id: String,
    pub grpc_address: String,
    pub capacity: u32,
}

/// The whole table at one version.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct RouteTable {
    pub version: u64,
    pub shard_count: u32,
    /// Sorted by id.
    pub edges: Vec<EdgeRoute>,
    /// Sorted by id.
    pub apps: Vec<AppRoute>,
    /// `shards[s]` is the index in `apps` of the owner of shard `s`, or [`NO_OWNER`].
    pub shards: Vec<u32>,
}

/// One shard moving to another owner (`app` empty: no owner).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShardMove {
    pub shard: u32,
    pub app: String,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    EdgeUpsert(EdgeRoute),
    EdgeRemove(String),
    AppUpsert(AppRoute),
    AppRemove(String),
    ShardMoves(Vec<ShardMove>),
}

/// The changes from `base_version` to `version`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RouteDelta {
    pub base_version: u64,
    pub version: u64,
    pub changes: Vec<RouteChange>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("route update is not a valid table: {0}")]
    Invalid(String),
    #[error("route delta applies to version {base}, but the table is at version {have}")]
    VersionGap { have: u64, base: u64 },
}

fn invalid(e: RkyvError) -> RouteError {
    RouteError::Invalid(e.to_string())
}

/// Copies received bytes into an aligned buffer, which rkyv needs to read in place.
fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut v = AlignedVec::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}

impl RouteTable {
    /// An empty table with `shard_count` unowned shards.
    pub fn empty(shard_count: u32) -> Self {
        RouteTable {
            version: 0,
            shard_count,
            edges: Vec::new(),
            apps: Vec::new(),
            shards: vec![NO_OWNER; shard_count as usize],
        }
    }

    pub fn encode(&self) -> AlignedVec {
        // Serialising plain owned data into a growable buffer cannot fail.
        rkyv::to_bytes::<RkyvError>(self).unwrap_or_default()
    }

    /// Validates and fully deserialises a snapshot (the slow path; see [`RouteView`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, RouteError> {
        let buf = aligned(bytes);
        let archived = rkyv::access::<ArchivedRouteTable, RkyvError>(&buf).map_err(invalid)?;
        rkyv::deserialize::<RouteTable, RkyvError>(archived).map_err(invalid)
    }

    pub fn edge(&self, id: &str) -> Option<&EdgeRoute> {
        self.edges
            .binary_search_by(|e| e.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.edges[i])
    }

    pub fn app(&self, id: &str) -> Option<&AppRoute> {
        self.apps
            .binary_search_by(|a| a.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.apps[i])
    }

    pub fn shard_owner(&self, shard: u32) -> Option<&AppRoute> {
        let idx = *self.shards.get(shard as usize)?;
        self.apps.get(idx as usize)
    }

    /// The owner's id of every shard, `None` where unowned.
    pub fn shard_owner_ids(&self) -> Vec<Option<&str>> {
        (0..self.shard_count)
            .map(|s| self.shard_owner(s).map(|a| a.id.as_str()))
            .collect()
    }

    /// The changes that turn `self` into `next`.
    pub fn diff(&self, next: &RouteTable) -> RouteDelta {
        let mut changes = Vec::new();
        let (upserts, removes) = diff_sorted(&self.edges, &next.edges, |e| &e.id);
        changes.extend(upserts.into_iter().cloned().map(RouteChange::EdgeUpsert));
        changes.extend(removes.into_iter().map(RouteChange::EdgeRemove));
        let (upserts, removes) = diff_sorted(&self.apps, &next.apps, |a| &a.id);
        changes.extend(upserts.into_iter().cloned().map(RouteChange::AppUpsert));
        changes.extend(removes.into_iter().map(RouteChange::AppRemove));
        let before = self.shard_owner_ids();
        let after = next.shard_owner_ids();
        let moves: Vec<ShardMove> = (0..next.shard_count as usize)
            .filter(|&s| before.get(s).copied().flatten() != after[s])
            .map(|s| ShardMove {
                shard: s as u32,
                app: after[s].unwrap_or_default().to_owned(),
            })
            .collect();
        if !moves.is_empty() {
            changes.push(RouteChange::ShardMoves(moves));
        }
        RouteDelta {
            base_version: self.version,
            version: next.version,
            changes,
        }
    }

    /// Applies a delta made by [`RouteTable::diff`] from this version.
    pub fn apply(&mut self, delta: &RouteDelta) -> Result<(), RouteError> {
        if delta.base_version != self.version {
            return Err(RouteError::VersionGap {
                have: self.version,
                base: delta.base_version,
            });
        }
        let mut owners: Vec<Option<String>> = self
            .shard_owner_ids()
            .into_iter()
            .map(|o| o.map(str::to_owned))
            .collect();
        for change in &delta.changes {
            match change {
                RouteChange::EdgeUpsert(e) => upsert_sorted(&mut self.edges, e.clone(), |e| &e.id),
                RouteChange::EdgeRemove(id) => self.edges.retain(|e| &e.id != id),
                RouteChange::AppUpsert(a) => upsert_sorted(&mut self.apps, a.clone(), |a| &a.id),
                RouteChange::AppRemove(id) => self.apps.retain(|a| &a.id != id),
                RouteChange::ShardMoves(moves) => {
                    for m in moves {
                        if let Some(slot) = owners.get_mut(m.shard as usize) {
                            *slot = (!m.app.is_empty()).then(|| m.app.clone());
                        }
                    }
                }
            }
        }
        self.shards = owners
            .iter()
            .map(|o| {
                o.as_deref()
                    .and_then(|id| self.apps.binary_search_by(|a| a.id.as_str().cmp(id)).ok())
                    .map_or(NO_OWNER, |i| i as u32)
            })
            .collect();
        self.version = delta.version;
        Ok(())
    }
}

impl RouteDelta {
    pub fn encode(&self) -> AlignedVec {
        rkyv::to_bytes::<RkyvError>(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RouteError> {
        let buf = aligned(bytes);
        let archived = rkyv::access::<ArchivedRouteDelta, RkyvError>(&buf).map_err(invalid)?;
        rkyv::deserialize::<RouteDelta, RkyvError>(archived).map_err(invalid)
    }
}

/// The items of `new` that are new or changed, and the keys of `old` that are gone.
fn diff_sorted<'a, T: PartialEq>(
    old: &'a [T],
    new: &'a [T],
    key: impl Fn(&T) -> &String,
) -> (Vec<&'a T>, Vec<String>) {
    let old_by_key: BTreeMap<&String, &T> = old.iter().map(|t| (key(t), t)).collect();
    let new_by_key: BTreeMap<&String, &T> = new.iter().map(|t| (key(t), t)).collect();
    let upserts = new_by_key
        .iter()
        .filter(|(k, t)| old_by_key.get(*k) != Some(*t))
        .map(|(_, t)| *t)
        .collect();
    let removes = old_by_key
        .keys()
        .filter(|k| !new_by_key.contains_key(*k))
        .map(|k| (*k).clone())
        .collect();
    (upserts, removes)
}

fn upsert_sorted<T>(items: &mut Vec<T>, item: T, key: impl Fn(&T) -> &String) {
    match items.binary_search_by(|t| key(t).cmp(key(&item))) {
        Ok(i) => items[i] = item,
        Err(i) => items.insert(i, item),
    }
}

/// Overlay entries after which a [`RouteView`] folds its deltas into a new snapshot.
const COMPACT_AFTER: usize = 512;

/// A subscriber's copy of the table: a snapshot validated once and read in place, plus the
/// deltas received since, keyed by what they changed.
pub struct RouteView {
    snapshot: AlignedVec,
    version: u64,
    /// `None`: removed since the snapshot.
    edges: BTreeMap<String, Option<EdgeRoute>>,
    apps: BTreeMap<String, Option<AppRoute>>,
    /// Shard -> owner id (empty: none).
    shards: BTreeMap<u32, String>,
}

impl RouteView {
    /// Validates a snapshot (bounds, UTF-8, every offset) without deserialising it.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, RouteError> {
        let snapshot = aligned(bytes);
        let version = {
            let table =
                rkyv::access::<ArchivedRouteTable, RkyvError>(&snapshot).map_err(invalid)?;
            let apps = table.apps.len() as u32;
            if table
                .shards
                .iter()
                .any(|s| s.to_native() != NO_OWNER && s.to_native() >= apps)
            {
                return Err(RouteError::Invalid(
                    "a shard names an app index past the end of the app list".into(),
                ));
            }
            table.version.to_native()
        };
        Ok(RouteView {
            snapshot,
            version,
            edges: BTreeMap::new(),
            apps: BTreeMap::new(),
            shards: BTreeMap::new(),
        })
    }

    fn base(&self) -> &ArchivedRouteTable {
        // SAFETY: `snapshot` was validated by `rkyv::access` in `from_snapshot` (or encoded
        // by us in `compact`) and is never mutated afterwards.
        unsafe { rkyv::access_unchecked::<ArchivedRouteTable>(&self.snapshot) }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn shard_count(&self) -> u32 {
        self.base().shard_count.to_native()
    }

    /// Applies an encoded delta; on a version gap the caller needs a fresh snapshot.
    pub fn apply_delta(&mut self, bytes: &[u8]) -> Result<(), RouteError> {
        let delta = RouteDelta::decode(bytes)?;
        self.apply(delta)
    }

    pub fn apply(&mut self, delta: RouteDelta) -> Result<(), RouteError> {
        if delta.base_version != self.version {
            return Err(RouteError::VersionGap {
                have: self.version,
                base: delta.base_version,
            });
        }
        for change in delta.changes {
            match change {
                RouteChange::EdgeUpsert(e) => {
                    self.edges.insert(e.id.clone(), Some(e));
                }
                RouteChange::EdgeRemove(id) => {
                    self.edges.insert(id, None);
                }
                RouteChange::AppUpsert(a) => {
                    self.apps.insert(a.id.clone(), Some(a));
                }
                RouteChange::AppRemove(id) => {
                    self.apps.insert(id, None);
                }
                RouteChange::ShardMoves(moves) => {
                    let shard_count = self.shard_count();
                    for m in moves.into_iter().filter(|m| m.shard < shard_count) {
                        self.shards.insert(m.shard, m.app);
                    }
                }
            }
        }
        self.version = delta.version;
        if self.edges.len() + self.apps.len() + self.shards.len() > COMPACT_AFTER {
            self.compact();
        }
        Ok(())
    }

    pub fn edge(&self, id: &str) -> Option<EdgeRoute> {
        if let Some(overlaid) = self.edges.get(id) {
            return overlaid.clone();
        }
        let edges = &self.base().edges;
        let i = edges.binary_search_by(|e| e.id.as_str().cmp(id)).ok()?;
        Some(edge_from(&edges[i]))
    }

    pub fn app(&self, id: &str) -> Option<AppRoute> {
        if let Some(overlaid) = self.apps.get(id) {
            return overlaid.clone();
        }
        let apps = &self.base().apps;
        let i = apps.binary_search_by(|a| a.id.as_str().cmp(id)).ok()?;
        Some(app_from(&apps[i]))
    }

    /// The id of the app instance owning `shard`, if any.
    pub fn shard_owner_id(&self, shard: u32) -> Option<String> {
        if let Some(id) = self.shards.get(&shard) {
            return (!id.is_empty()).then(|| id.clone());
        }
        let base = self.base();
        let idx = base.shards.get(shard as usize)?.to_native();
        base.apps
            .get(idx as usize)
            .map(|a| a.id.as_str().to_owned())
    }

    /// The app instance owning `shard`, if it is live.
    pub fn shard_owner(&self, shard: u32) -> Option<AppRoute> {
        self.app(&self.shard_owner_id(shard)?)
    }

    /// The whole table, materialised (for display and for compaction).
    pub fn to_table(&self) -> RouteTable {
        let base = self.base();
        let mut edges: BTreeMap<String, EdgeRoute> = base
            .edges
            .iter()
            .map(|e| (e.id.as_str().to_owned(), edge_from(e)))
            .collect();
        merge_overlay(&mut edges, &self.edges);
        let mut apps: BTreeMap<String, AppRoute> = base
            .apps
            .iter()
            .map(|a| (a.id.as_str().to_owned(), app_from(a)))
            .collect();
        merge_overlay(&mut apps, &self.apps);
        let apps: Vec<AppRoute> = apps.into_values().collect();
        let shard_count = self.shard_count();
        let shards = (0..shard_count)
            .map(|s| {
                self.shard_owner_id(s)
                    .and_then(|id| apps.binary_search_by(|a| a.id.cmp(&id)).ok())
                    .map_or(NO_OWNER, |i| i as u32)
            })
            .collect();
        RouteTable {
            version: self.version,
            shard_count,
            edges: edges.into_values().collect(),
            apps,
            shards,
        }
    }

    fn compact(&mut self) {
        self.snapshot = self.to_table().encode();
        self.edges.clear();
        self.apps.clear();
        self.shards.clear();
    }
}

fn merge_overlay<T: Clone>(base: &mut BTreeMap<String, T>, overlay: &BTreeMap<String, Option<T>>) {
    for (id, item) in overlay {
        match item {
            Some(item) => base.insert(id.clone(), item.clone()),
            None => base.remove(id),
        };
    }
}

fn edge_from(e: &ArchivedEdgeRoute) -> EdgeRoute {
    EdgeRoute {
        id: e.id.as_str().to_owned(),
        tcp_address: e.tcp_address.as_str().to_owned(),
        tls_address: e.tls_address.as_str().to_owned(),
        capacity: e.capacity.to_native(),
        draining: e.draining,
    }
}

fn app_from(a: &ArchivedAppRoute) -> AppRoute {
    AppRoute {
        id: a.id.as_str().to_owned(),
        grpc_address: a.grpc_address.as_str().to_owned(),
        capacity: a.capacity.to_native(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(id: &str, draining: bool) -> EdgeRoute {
        EdgeRoute {
            id: id.into(),
            tcp_address: format!("{id}:7000"),
            tls_address: String::new(),
            capacity: 1000,
            draining,
        }
    }

    fn app(id: &str) -> AppRoute {
        AppRoute {
            id: id.into(),
            grpc_address: format!("{id}:9000"),
            capacity: 0,
        }
    }

    fn table(version: u64, edges: &[EdgeRoute], apps: &[AppRoute], owners: &[&str]) -> RouteTable {
        let mut t = RouteTable::empty(owners.len() as u32);
        t.version = version;
        t.edges = edges.to_vec();
        t.apps = apps.to_vec();
        t.shards = owners
            .iter()
            .map(|o| {
                apps.iter()
                    .position(|a| a.id == *o)
                    .map_or(NO_OWNER, |i| i as u32)
            })
            .collect();
        t
    }

    #[test]
    fn shard_of_is_stable_and_in_range() {
        let pile = PileNo::parse("32010200000001").unwrap();
        assert_eq!(shard_of(&pile, 1024), shard_of(&pile, 1024));
        let mut seen = vec![0u32; 16];
        for n in 0..16_000u64 {
            let s = shard_of(&PileNo::from_u64(32010200000000 + n), 16);
            seen[s as usize] += 1;
        }
        // Sequential pile numbers spread evenly: every shard within ±10% of 1000.
        assert!(seen.iter().all(|&c| (900..=1100).contains(&c)), "{seen:?}");
    }

    #[test]
    fn diff_then_apply_reaches_the_new_table() {
        let a = table(
            3,
            &[edge("e1", false), edge("e2", false)],
            &[app("a1")],
            &["a1", "a1", ""],
        );
        let b = table(
            7,
            &[edge("e2", true), edge("e3", false)],
            &[app("a1"), app("a2")],
            &["a2", "a1", "a2"],
        );
        let delta = a.diff(&b);
        assert_eq!(delta.base_version, 3);
        let mut applied = a.clone();
        applied
            .apply(&RouteDelta::decode(&delta.encode()).unwrap())
            .unwrap();
        assert_eq!(applied, b);

        let mut view = RouteView::from_snapshot(&a.encode()).unwrap();
        view.apply_delta(&delta.encode()).unwrap();
        assert_eq!(view.version(), 7);
        assert_eq!(view.to_table(), b);
        assert_eq!(view.edge("e1"), None);
        assert!(view.edge("e2").unwrap().draining);
        assert_eq!(view.shard_owner(0).unwrap().id, "a2");
        assert_eq!(view.shard_owner_id(1).as_deref(), Some("a1"));
    }

    #[test]
    fn a_delta_for_another_version_is_refused() {
        let a = table(3, &[], &[], &["", ""]);
        let mut view = RouteView::from_snapshot(&a.encode()).unwrap();
        let delta = RouteDelta {
            base_version: 5,
            version: 6,
            changes: vec![],
        };
        assert_eq!(
            view.apply(delta),
            Err(RouteError::VersionGap { have: 3, base: 5 })
        );
    }

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        assert!(matches!(
            RouteView::from_snapshot(&[1, 2, 3, 4, 5, 6, 7]),
            Err(RouteError::Invalid(_))
        ));
        let mut bytes = table(1, &[edge("e1", false)], &[app("a1")], &["a1"])
            .encode()
            .to_vec();
        let n = bytes.len();
        bytes[n - 8..].fill(0xFF);
        assert!(RouteView::from_snapshot(&bytes).is_err());
        assert!(RouteDelta::decode(&[0xFF; 3]).is_err());
    }

    #[test]
    fn many_deltas_compact_into_a_snapshot() {
        let mut t = table(1, &[], &[app("a1")], &vec!["a1"; 1024]);
        let mut view = RouteView::from_snapshot(&t.encode()).unwrap();
        for v in 2..200u64 {
            let mut next = t.clone();
            next.version = v;
            next.edges = (0..(v % 7))
                .map(|i| edge(&format!("e{v}-{i}"), false))
                .collect();
            view.apply_delta(&t.diff(&next).encode()).unwrap();
            t = next;
        }
        assert_eq!(view.to_table(), t);
    }
}
