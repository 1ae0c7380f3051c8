//! Entry-address dispatch: which edge a pile should connect to.
//!
//! Weighted rendezvous hashing over the edges that can take the pile (live, not draining,
//! not leaving, below capacity, offering the transport). Every edge gets a score from a
//! hash of (pile, edge); the highest wins and the next ones are the backups. A pile
//! therefore keeps its edge while the edge set is stable, and when an edge goes away only
//! the piles it held move. The weight (the edge's capacity) gives a bigger edge
//! proportionally more piles.

use crate::api::{EntryAddress, Transport};

/// An edge as dispatch sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub tcp_address: String,
    pub tls_address: String,
    pub capacity: u32,
    pub sessions: u32,
    /// Operator drain or the edge leaving: no new piles.
    pub closed: bool,
    /// Hash of the id, computed once per table rather than per request.
    pub seed: u64,
}

impl Candidate {
    pub fn new(
        id: String,
        tcp_address: String,
        tls_address: String,
        capacity: u32,
        sessions: u32,
        closed: bool,
    ) -> Self {
        let seed = fnv1a(id.as_bytes());
        Candidate {
            id,
            tcp_address,
            tls_address,
            capacity,
            sessions,
            closed,
            seed,
        }
    }

    pub fn address(&self, transport: Transport) -> &str {
        match transport {
            Transport::Tcp => &self.tcp_address,
            Transport::Tls => &self.tls_address,
        }
    }

    fn accepts(&self, transport: Transport) -> bool {
        !self.closed && self.sessions < self.capacity && !self.address(transport).is_empty()
    }
}

/// The chosen edge and the backups, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub primary: EntryAddress,
    pub backups: Vec<EntryAddress>,
}

/// Picks the edge for `pile` (its number) and up to `backups` more.
pub fn choose(
    pile: u64,
    candidates: &[Candidate],
    transport: Transport,
    backups: usize,
) -> Option<Choice> {
    let mut scored: Vec<(f64, &Candidate)> = candidates
        .iter()
        .filter(|c| c.accepts(transport))
        .map(|c| (score(pile, c), c))
        .collect();
    if scored.is_empty() {
        return None;
    }
    let keep = (backups + 1).min(scored.len());
    // Only the best `keep` need ordering.
    if keep < scored.len() {
        scored.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(keep);
    }
    scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let mut picked = scored.into_iter().map(|(_, c)| EntryAddress {
        edge: c.id.clone(),
        address: c.address(transport).to_owned(),
    });
    let primary = picked.next()?;
    Some(Choice {
        primary,
        backups: picked.collect(),
    })
}

/// Weighted rendezvous score: `-weight / ln(u)` with `u` uniform in (0, 1) from the hash.
fn score(pile: u64, c: &Candidate) -> f64 {
    let h = mix(pile ^ c.seed);
    // 53 random bits into (0, 1), never exactly 0 or 1.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(c.capacity.max(1)) / u.ln()
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn edge(id: &str, capacity: u32) -> Candidate {
        Candidate::new(
            id.into(),
            format!("{id}:8768"),
            format!("{id}:8769"),
            capacity,
            0,
            false,
        )
    }

    fn owners(edges: &[Candidate], piles: u64) -> Vec<String> {
        (0..piles)
            .map(|p| choose(p, edges, Transport::Tls, 2).unwrap().primary.edge)
            .collect()
    }

    #[test]
    fn removing_an_edge_moves_only_its_piles() {
        let edges: Vec<_> = (0..5).map(|i| edge(&format!("e{i}"), 1000)).collect();
        let before = owners(&edges, 20_000);
        let after = owners(&edges[..4], 20_000);
        for (b, a) in before.iter().zip(&after) {
            if b != "e4" {
                assert_eq!(a, b);
            }
        }
        let moved = before.iter().filter(|b| *b == "e4").count();
        assert!((3000..5000).contains(&moved), "{moved}");
    }

    #[test]
    fn weight_follows_capacity() {
        let edges = vec![edge("small", 1000), edge("big", 3000)];
        let mut counts: HashMap<String, usize> = HashMap::new();
        for o in owners(&edges, 40_000) {
            *counts.entry(o).or_default() += 1;
        }
        let ratio = counts["big"] as f64 / counts["small"] as f64;
        assert!((2.7..3.3).contains(&ratio), "{ratio}");
    }

    #[test]
    fn full_draining_and_transportless_edges_get_no_piles() {
        let mut full = edge("full", 10);
        full.sessions = 10;
        let mut draining = edge("draining", 1000);
        draining.closed = true;
        let mut tcp_only = edge("tcp-only", 1000);
        tcp_only.tls_address.clear();
        let ok = edge("ok", 10);
        let edges = vec![full, draining, tcp_only, ok];
        for p in 0..1000 {
            let choice = choose(p, &edges, Transport::Tls, 3).unwrap();
            assert_eq!(choice.primary.edge, "ok");
            assert!(choice.backups.is_empty());
        }
        assert!(choose(1, &edges[..3], Transport::Tls, 1).is_none());
    }

    #[test]
    fn backups_are_distinct_and_ordered_by_score() {
        let edges: Vec<_> = (0..6).map(|i| edge(&format!("e{i}"), 100)).collect();
        let choice = choose(42, &edges, Transport::Tcp, 2).unwrap();
        assert_eq!(choice.backups.len(), 2);
        let mut ids: Vec<_> = choice.backups.iter().map(|b| &b.edge).collect();
        ids.push(&choice.primary.edge);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        // The first backup is who gets the pile when the primary goes away.
        let without: Vec<_> = edges
            .iter()
            .filter(|e| e.id != choice.primary.edge)
            .cloned()
            .collect();
        let next = choose(42, &without, Transport::Tcp, 0).unwrap();
        assert_eq!(next.primary, choice.backups[0]);
    }
}
