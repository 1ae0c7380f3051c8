use pylon_proto::ykc::frames::{Heartbeat, Login};

use super::*;

fn pile(n: u64) -> PileNo {
    PileNo::parse(&format!("{:014}", 32_010_200_000_000 + n)).expect("pile number")
}

fn frame(p: PileNo, session_id: u64, seq: u16) -> UplinkMessage {
    UplinkMessage {
        edge_id: "edge-1".into(),
        executor: 0,
        session_id,
        pile: p,
        seq,
        frame: Frame::Heartbeat(Heartbeat {
            pile_no: p,
            ..Default::default()
        }),
    }
}

fn login(p: PileNo, executor: usize, session_id: u64) -> UplinkMessage {
    UplinkMessage {
        executor,
        frame: Frame::Login(Login {
            pile_no: p,
            ..Default::default()
        }),
        ..frame(p, session_id, 0)
    }
}

fn target(id: &str) -> Arc<AppTarget> {
    Arc::new(AppTarget {
        id: id.into(),
        grpc_address: format!("{id}:7500"),
    })
}

/// A map of `shards` shards, each owned by the instance `owner(shard)` names.
fn table(shards: u32, owner: impl Fn(u32) -> Option<Arc<AppTarget>>) -> Arc<ShardTable> {
    Arc::new(ShardTable {
        shard_count: shards,
        owners: (0..shards).map(owner).collect(),
    })
}

fn seqs(frames: &[UplinkMessage]) -> Vec<u16> {
    frames.iter().map(|m| m.seq).collect()
}

fn ids(out: &[Outgoing<'_>]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Outgoing::Uplink { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

// ---- the window ----

#[test]
fn frames_get_increasing_ids_and_stay_until_acknowledged() {
    let mut w = LinkWindow::default();
    for seq in 0..5 {
        let out = w.take(UplinkEvent::Frame(frame(pile(1), 1, seq)));
        assert!(
            matches!(out, Outgoing::Uplink { id, message } if id == u64::from(seq) + 1 && message.seq == seq)
        );
    }
    assert_eq!(w.unacked(), 5);
    w.ack(3);
    assert_eq!(w.unacked(), 2);
    // An old or repeated acknowledgement changes nothing.
    w.ack(2);
    assert_eq!(w.unacked(), 2);
    w.ack(100);
    assert_eq!(w.unacked(), 0);
}

#[test]
fn the_window_closes_at_its_size_and_reopens_on_acks() {
    let mut w = LinkWindow::default();
    for seq in 0..WINDOW {
        assert!(w.has_room());
        let _ = w.take(UplinkEvent::Frame(frame(pile(1), 1, seq as u16)));
    }
    assert!(!w.has_room());
    w.ack(1);
    assert!(w.has_room());
}

#[test]
fn a_new_stream_announces_the_piles_then_resends_the_unacknowledged_renumbered() {
    let mut w = LinkWindow::default();
    let _ = w.take(UplinkEvent::Online {
        pile: pile(7),
        session_id: 70,
        executor: 1,
    });
    for seq in 10..14 {
        let _ = w.take(UplinkEvent::Frame(frame(pile(7), 70, seq)));
    }
    w.ack(2); // frames 10 and 11 are done
    let out = w.restart();
    assert_eq!(
        out[0],
        Outgoing::Online {
            pile: pile(7),
            session_id: 70,
            executor: 1
        }
    );
    assert_eq!(ids(&out), vec![1, 2]);
    let resent: Vec<u16> = out
        .iter()
        .filter_map(|o| match o {
            Outgoing::Uplink { message, .. } => Some(message.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        resent,
        vec![12, 13],
        "in order, nothing lost, nothing twice"
    );
    // New frames continue after the renumbered ones; acks use the new ids.
    assert!(matches!(
        w.take(UplinkEvent::Frame(frame(pile(7), 70, 14))),
        Outgoing::Uplink { id: 3, .. }
    ));
    w.ack(2);
    assert_eq!(w.unacked(), 1);
}

#[test]
fn an_offline_of_an_older_session_keeps_the_newer_one() {
    let mut w = LinkWindow::default();
    let _ = w.take(UplinkEvent::Online {
        pile: pile(3),
        session_id: 2,
        executor: 0,
    });
    let _ = w.take(UplinkEvent::Offline {
        pile: pile(3),
        session_id: 1,
        reason: "peer_closed",
    });
    assert_eq!(w.executor_of(&pile(3)), Some(0));
    let _ = w.take(UplinkEvent::Offline {
        pile: pile(3),
        session_id: 2,
        reason: "peer_closed",
    });
    assert_eq!(w.executor_of(&pile(3)), None);
    assert!(w.restart().is_empty());
}

#[test]
fn draining_ends_when_everything_is_acknowledged_or_at_the_limit() {
    let mut w = LinkWindow::default();
    assert!(w.drained(Duration::ZERO));
    let _ = w.take(UplinkEvent::Frame(frame(pile(1), 1, 1)));
    assert!(!w.drained(Duration::from_secs(1)));
    assert!(w.drained(DRAIN_LIMIT));
    w.ack(1);
    assert!(w.drained(Duration::ZERO));
}

#[test]
fn closing_hands_over_what_is_unacknowledged_in_order() {
    let mut w = LinkWindow::default();
    for seq in 0..4 {
        let _ = w.take(UplinkEvent::Frame(frame(pile(1), 1, seq)));
    }
    w.ack(1);
    assert_eq!(seqs(&w.hand_over()), vec![1, 2, 3]);
    assert_eq!(w.unacked(), 0);
}

#[test]
fn a_frame_that_cannot_be_sent_is_forgotten_without_a_gap_in_the_ids() {
    let mut w = LinkWindow::default();
    let _ = w.take(UplinkEvent::Frame(frame(pile(1), 1, 1)));
    let _ = w.take(UplinkEvent::Frame(frame(pile(1), 1, 2)));
    w.forget(2);
    // The next frame takes the forgotten id: the instance acknowledges consecutive ids.
    assert!(matches!(
        w.take(UplinkEvent::Frame(frame(pile(1), 1, 3))),
        Outgoing::Uplink { id: 2, .. }
    ));
    assert_eq!(seqs(&w.hand_over()), vec![1, 3]);
}

// ---- the router ----

#[test]
fn events_go_to_the_owner_of_their_piles_shard() {
    let (a, b) = (target("a"), target("b"));
    let t = table(2, |s| Some(if s == 0 { a.clone() } else { b.clone() }));
    let mut r = RouterCore::new(t.clone());
    for n in 0..20 {
        let p = pile(n);
        let want = t.owner(&p).expect("owner").id.clone();
        match r.route(UplinkEvent::Frame(frame(p, 1, 0))) {
            Route::To(to, UplinkEvent::Frame(m)) => {
                assert_eq!(to.id, want);
                assert_eq!(m.pile, p);
            }
            other => panic!("expected a link, got {other:?}"),
        }
    }
    assert_eq!(r.unowned(), 0);
}

#[test]
fn frames_without_an_owner_wait_and_go_out_once_one_is_assigned() {
    let mut r = RouterCore::new(table(4, |_| None));
    for seq in 0..3 {
        assert!(matches!(
            r.route(UplinkEvent::Frame(frame(pile(1), 1, seq))),
            Route::HeldNoOwner
        ));
    }
    // Announcements without an owner are not kept: the owner learns them on assignment.
    assert!(matches!(
        r.route(UplinkEvent::Online {
            pile: pile(1),
            session_id: 1,
            executor: 0
        }),
        Route::Ignored
    ));
    let a = target("a");
    let next = r.reassign(table(4, |_| Some(a.clone())));
    assert_eq!(seqs(&next.waiting), vec![0, 1, 2]);
    assert_eq!(r.unowned(), 0);
    assert!(next.owners.contains("a"));
}

#[test]
fn the_hold_is_capped_and_a_dropped_login_is_answered_undecided() {
    let mut r = RouterCore::new(table(1, |_| None));
    for _ in 0..ROUTER_HOLD {
        assert!(matches!(
            r.route(UplinkEvent::Frame(frame(pile(1), 1, 0))),
            Route::HeldNoOwner
        ));
    }
    assert!(matches!(
        r.route(UplinkEvent::Frame(frame(pile(1), 1, 0))),
        Route::DroppedNoOwner {
            undecided_login: None
        }
    ));
    assert!(matches!(
        r.route(UplinkEvent::Frame(login(pile(2), 1, 42))),
        Route::DroppedNoOwner {
            undecided_login: Some((1, 42))
        }
    ));
    assert_eq!(r.unowned(), ROUTER_HOLD);
}

#[test]
fn a_reassignment_moves_the_connected_piles_whose_owner_changed() {
    let (a, b) = (target("a"), target("b"));
    let all_a = table(8, |_| Some(a.clone()));
    let mut r = RouterCore::new(all_a);
    for n in 0..40 {
        r.track(&UplinkEvent::Online {
            pile: pile(n),
            session_id: n + 100,
            executor: (n % 2) as usize,
        });
    }
    // A pile that went offline is not moved; an offline of an older session is ignored.
    r.track(&UplinkEvent::Offline {
        pile: pile(0),
        session_id: 100,
        reason: "peer_closed",
    });
    r.track(&UplinkEvent::Offline {
        pile: pile(1),
        session_id: 1,
        reason: "peer_closed",
    });
    // Shards 0..4 move to b.
    let half = table(8, |s| Some(if s < 4 { b.clone() } else { a.clone() }));
    let next = r.reassign(half.clone());
    assert_eq!(
        next.owners,
        ["a", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<String>>()
    );
    let expected: HashSet<PileNo> = (1..40)
        .map(pile)
        .filter(|p| half.owner(p).is_some_and(|t| t.id == "b"))
        .collect();
    let moved: HashSet<PileNo> = next.moves.iter().map(|m| m.pile).collect();
    assert_eq!(moved, expected);
    assert!(next
        .moves
        .iter()
        .all(|m| m.from.as_ref().is_some_and(|f| f.id == "a") && m.session_id == m_session(m)));
    // Losing every owner moves nothing (there is nobody to tell); frames then wait.
    let next = r.reassign(table(8, |_| None));
    assert!(next.moves.is_empty() && next.owners.is_empty());
}

fn m_session(m: &Move) -> u64 {
    // Sessions were numbered pile index + 100.
    let digits = m.pile.to_string();
    digits[digits.len() - 2..].parse::<u64>().expect("index") + 100
}
