//! Assigning shards to app-service instances with as little movement as possible.

use std::collections::BTreeMap;

/// The new owner of every shard given the current owners and the live instances.
///
/// Every live instance ends up with `shard_count / n` or one more shard. Shards stay with
/// their owner unless it is gone or holds more than its share; the shards that must move
/// go to the instances furthest below their share. Deterministic: every replica computes
/// the same map from the same input.
pub fn assign(current: &[Option<String>], live: &[String]) -> Vec<Option<String>> {
    if live.is_empty() {
        return vec![None; current.len()];
    }
    let mut live: Vec<&String> = live.iter().collect();
    live.sort();
    live.dedup();
    let n = live.len();
    let base = current.len() / n;
    let extra = current.len() % n;

    // Keep what each live owner already has, up to its share; free the rest.
    let mut kept: BTreeMap<&String, Vec<usize>> = live.iter().map(|id| (*id, Vec::new())).collect();
    let mut free = Vec::new();
    for (shard, owner) in current.iter().enumerate() {
        match owner.as_ref().and_then(|o| kept.get_mut(o)) {
            Some(shards) => shards.push(shard),
            None => free.push(shard),
        }
    }
    // The instances already holding the most keep the `extra` larger shares, so as few
    // shards as possible move.
    let mut by_held: Vec<&String> = live.clone();
    by_held.sort_by(|a, b| kept[b].len().cmp(&kept[a].len()).then(a.cmp(b)));
    let quota: BTreeMap<&String, usize> = by_held
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, base + usize::from(i < extra)))
        .collect();
    for (id, shards) in kept.iter_mut() {
        if shards.len() > quota[id] {
            free.extend(shards.drain(quota[id]..));
        }
    }
    free.sort_unstable();

    let mut next: Vec<Option<String>> = vec![None; current.len()];
    for (id, shards) in &kept {
        for &s in shards {
            next[s] = Some((*id).clone());
        }
    }
    let mut free = free.into_iter();
    for id in &live {
        for _ in kept[id].len()..quota[id] {
            if let Some(s) = free.next() {
                next[s] = Some((*id).clone());
            }
        }
    }
    next
}

/// How many shards change owner between two maps.
pub fn moved(before: &[Option<String>], after: &[Option<String>]) -> usize {
    before.iter().zip(after).filter(|(b, a)| b != a).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn counts(map: &[Option<String>]) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for o in map.iter().flatten() {
            *c.entry(o.clone()).or_insert(0) += 1;
        }
        c
    }

    #[test]
    fn balanced_and_complete() {
        let map = assign(&vec![None; 1024], &ids(&["a", "b", "c"]));
        assert!(map.iter().all(Option::is_some));
        let c = counts(&map);
        assert!(c.values().all(|&n| n == 341 || n == 342), "{c:?}");
    }

    #[test]
    fn adding_an_instance_moves_only_its_share() {
        let before = assign(&vec![None; 1024], &ids(&["a", "b", "c"]));
        let after = assign(&before, &ids(&["a", "b", "c", "d"]));
        assert_eq!(moved(&before, &after), 256);
        assert_eq!(counts(&after)["d"], 256);
    }

    #[test]
    fn removing_an_instance_moves_only_its_shards() {
        let before = assign(&vec![None; 1024], &ids(&["a", "b", "c", "d"]));
        let after = assign(&before, &ids(&["a", "b", "d"]));
        assert_eq!(moved(&before, &after), 256);
        for (b, a) in before.iter().zip(&after) {
            if b.as_deref() != Some("c") {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn stable_when_nothing_changes_and_empty_without_instances() {
        let map = assign(&vec![None; 64], &ids(&["x", "y"]));
        assert_eq!(assign(&map, &ids(&["y", "x"])), map);
        assert!(assign(&map, &[]).iter().all(Option::is_none));
    }
}
