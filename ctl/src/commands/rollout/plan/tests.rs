use super::*;

const SETTINGS: Settings = Settings {
    batch: 1,
    move_timeout_ms: 60_000,
    ready_timeout_ms: 30_000,
};

fn edge(id: &str, sessions: u32, registration: i64) -> Member {
    Member {
        id: id.into(),
        live: true,
        draining: false,
        sessions,
        registration,
        shards: 0,
    }
}

fn seen(members: Vec<Member>) -> Observation {
    Observation {
        members,
        unowned_shards: 0,
        leader: None,
        leader_term: 0,
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn edges_are_drained_moved_restarted_awaited_and_undrained_one_at_a_time() {
    let first = seen(vec![
        edge("e1", 10, 1),
        edge("e2", 10, 2),
        edge("e3", 10, 3),
    ]);
    let mut r = Rollout::new(Kind::Edges, SETTINGS, &first, &[]).unwrap();
    assert_eq!(r.next(0, &first), Action::Drain(ids(&["e1"])));
    // Chargers still on e1: wait.
    assert_eq!(r.next(1_000, &first), Action::Wait);
    let moved = seen(vec![edge("e1", 0, 1), edge("e2", 15, 2), edge("e3", 15, 3)]);
    assert_eq!(r.next(2_000, &moved), Action::Restart(ids(&["e1"])));
    assert_eq!(r.next(2_500, &moved), Action::Wait, "hooks still running");
    r.restarted(3_000, vec![("e1".into(), Ok(()))]);
    // The old registration still shows: not back yet.
    assert_eq!(r.next(3_500, &moved), Action::Wait);
    let back = seen(vec![edge("e1", 0, 7), edge("e2", 15, 2), edge("e3", 15, 3)]);
    assert_eq!(r.next(4_000, &back), Action::Undrain(ids(&["e1"])));
    assert_eq!(r.next(4_500, &back), Action::Drain(ids(&["e2"])));
    assert_eq!(r.restarted_count(), 1);
}

#[test]
fn a_batch_restarts_together_and_the_end_is_done() {
    let first = seen(vec![
        edge("e1", 0, 1),
        edge("e2", 0, 2),
        edge("e3", 0, 3),
        edge("e4", 0, 4),
    ]);
    let settings = Settings {
        batch: 3,
        ..SETTINGS
    };
    let mut r = Rollout::new(Kind::Edges, settings, &first, &[]).unwrap();
    assert_eq!(r.next(0, &first), Action::Drain(ids(&["e1", "e2", "e3"])));
    assert_eq!(r.next(1, &first), Action::Restart(ids(&["e1", "e2", "e3"])));
    r.restarted(
        2,
        ids(&["e1", "e2", "e3"])
            .into_iter()
            .map(|i| (i, Ok(())))
            .collect(),
    );
    let back = seen(vec![
        edge("e1", 0, 11),
        edge("e2", 0, 12),
        edge("e3", 0, 13),
        edge("e4", 0, 4),
    ]);
    assert_eq!(r.next(3, &back), Action::Undrain(ids(&["e1", "e2", "e3"])));
    assert_eq!(r.next(4, &back), Action::Drain(ids(&["e4"])));
    assert_eq!(r.next(5, &back), Action::Restart(ids(&["e4"])));
    r.restarted(6, vec![("e4".into(), Ok(()))]);
    let done = seen(vec![
        edge("e1", 0, 11),
        edge("e2", 0, 12),
        edge("e3", 0, 13),
        edge("e4", 0, 14),
    ]);
    assert_eq!(r.next(7, &done), Action::Undrain(ids(&["e4"])));
    assert_eq!(r.next(8, &done), Action::Done);
    assert_eq!(r.restarted_count(), 4);
}

#[test]
fn chargers_that_do_not_move_in_time_are_left_to_the_edges_own_drain() {
    let first = seen(vec![edge("e1", 10, 1), edge("e2", 0, 2)]);
    let mut r = Rollout::new(Kind::Edges, SETTINGS, &first, &[]).unwrap();
    r.next(0, &first);
    assert_eq!(r.next(59_000, &first), Action::Wait);
    assert_eq!(r.next(60_000, &first), Action::Restart(ids(&["e1"])));
    let notes = r.take_notes().join("\n");
    assert!(notes.contains("10 sessions still there"), "{notes}");
}

#[test]
fn a_failed_hook_or_a_member_that_does_not_return_stops_the_rollout() {
    let first = seen(vec![edge("e1", 0, 1), edge("e2", 0, 2)]);
    let mut r = Rollout::new(Kind::Edges, SETTINGS, &first, &[]).unwrap();
    r.next(0, &first);
    r.next(1, &first);
    r.restarted(2, vec![("e1".into(), Err("exit status 1".into()))]);
    match r.next(3, &first) {
        Action::Failed(why) => {
            assert!(
                why.contains("e1: exit status 1") && why.contains("undrain"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }

    let mut r = Rollout::new(Kind::Edges, SETTINGS, &first, &[]).unwrap();
    r.next(0, &first);
    r.next(1, &first);
    r.restarted(2, vec![("e1".into(), Ok(()))]);
    assert_eq!(r.next(20_000, &first), Action::Wait);
    match r.next(40_000, &first) {
        Action::Failed(why) => assert!(why.contains("e1 did not register again"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn it_refuses_to_start_when_it_would_leave_nobody_serving_or_a_member_is_not_ready() {
    let two = seen(vec![edge("e1", 0, 1), edge("e2", 0, 2)]);
    let big = Settings {
        batch: 2,
        ..SETTINGS
    };
    assert!(Rollout::new(Kind::Edges, big, &two, &[])
        .err()
        .is_some_and(|e| e.contains("leaves none")));
    let mut down = two.clone();
    down.members[1].live = false;
    assert!(Rollout::new(Kind::Edges, SETTINGS, &down, &[])
        .err()
        .is_some_and(|e| e.contains("e2 is down")));
    let mut drained = two.clone();
    drained.members[0].draining = true;
    assert!(Rollout::new(Kind::Edges, SETTINGS, &drained, &[])
        .err()
        .is_some_and(|e| e.contains("drained already")));
    assert!(Rollout::new(Kind::Edges, SETTINGS, &two, &ids(&["e9"]))
        .err()
        .is_some_and(|e| e.contains("no edge named")));
    // --only leaves the others alone.
    let mut r = Rollout::new(Kind::Edges, SETTINGS, &two, &ids(&["e2"])).unwrap();
    assert_eq!(r.next(0, &two), Action::Drain(ids(&["e2"])));
}

fn app(id: &str, registration: i64, shards: u32) -> Member {
    Member {
        id: id.into(),
        live: true,
        draining: false,
        sessions: 0,
        registration,
        shards,
    }
}

#[test]
fn app_instances_restart_and_wait_until_every_shard_is_owned_again() {
    let first = seen(vec![app("a1", 1, 512), app("a2", 2, 512)]);
    let mut r = Rollout::new(Kind::Apps, SETTINGS, &first, &[]).unwrap();
    assert_eq!(r.next(0, &first), Action::Restart(ids(&["a1"])));
    r.restarted(1, vec![("a1".into(), Ok(()))]);
    // a1 is back but owns nothing yet, and shards are unowned: wait.
    let mut rebalancing = seen(vec![app("a1", 5, 0), app("a2", 2, 1000)]);
    rebalancing.unowned_shards = 24;
    assert_eq!(r.next(2, &rebalancing), Action::Wait);
    let settled = seen(vec![app("a1", 5, 512), app("a2", 2, 512)]);
    assert_eq!(r.next(3, &settled), Action::Restart(ids(&["a2"])));
    r.restarted(4, vec![("a2".into(), Ok(()))]);
    let done = seen(vec![app("a1", 5, 512), app("a2", 6, 512)]);
    assert_eq!(r.next(5, &done), Action::Done);
    let mut unowned = first.clone();
    unowned.unowned_shards = 3;
    assert!(Rollout::new(Kind::Apps, SETTINGS, &unowned, &[]).is_err());
}

fn replica(id: &str, registration: i64) -> Member {
    Member {
        id: id.into(),
        live: true,
        draining: false,
        sessions: 0,
        registration,
        shards: 0,
    }
}

fn replicas(list: &[(&str, i64)], leader: Option<&str>) -> Observation {
    Observation {
        members: list.iter().map(|(id, r)| replica(id, *r)).collect(),
        unowned_shards: 0,
        leader: leader.map(str::to_owned),
        // A new term whenever the leader changes (enough for these tests).
        leader_term: leader.map_or(0, |l| {
            l.len() as i64 * 100 + i64::from(l.as_bytes()[l.len() - 1])
        }),
    }
}

#[test]
fn control_replicas_restart_followers_first_and_the_leader_last() {
    let first = replicas(&[("c1", 1), ("c2", 2), ("c3", 3)], Some("c1"));
    let mut r = Rollout::new(Kind::Control, SETTINGS, &first, &[]).unwrap();
    // c1 leads: it goes last, so leadership moves once.
    assert_eq!(r.next(0, &first), Action::Restart(ids(&["c2"])));
    r.restarted(1_000, vec![("c2".into(), Ok(()))]);
    assert_eq!(
        r.next(1_500, &first),
        Action::Wait,
        "c2 not registered anew"
    );
    let c2_back = replicas(&[("c1", 1), ("c2", 12), ("c3", 3)], Some("c1"));
    assert_eq!(r.next(2_000, &c2_back), Action::Restart(ids(&["c3"])));
    r.restarted(3_000, vec![("c3".into(), Ok(()))]);
    let c3_back = replicas(&[("c1", 1), ("c2", 12), ("c3", 13)], Some("c1"));
    assert_eq!(r.next(4_000, &c3_back), Action::Restart(ids(&["c1"])));
    r.take_notes();
    r.restarted(5_000, vec![("c1".into(), Ok(()))]);
    // c1 is back but nobody leads yet (the election is under way): wait.
    let leaderless = replicas(&[("c1", 11), ("c2", 12), ("c3", 13)], None);
    assert_eq!(r.next(5_500, &leaderless), Action::Wait);
    let moved = replicas(&[("c1", 11), ("c2", 12), ("c3", 13)], Some("c2"));
    assert_eq!(r.next(6_000, &moved), Action::Done);
    assert_eq!(r.restarted_count(), 3);
    let notes = r.take_notes();
    assert!(
        notes.iter().any(|n| n == "leadership moved from c1 to c2"),
        "{notes:?}"
    );
}

#[test]
fn a_control_rollout_needs_a_leader_and_a_replica_to_spare() {
    let alone = replicas(&[("c1", 1)], Some("c1"));
    let e = Rollout::new(Kind::Control, SETTINGS, &alone, &[])
        .err()
        .unwrap();
    assert!(e.contains("leaves none to take over"), "{e}");
    let leaderless = replicas(&[("c1", 1), ("c2", 2)], None);
    let e = Rollout::new(Kind::Control, SETTINGS, &leaderless, &[])
        .err()
        .unwrap();
    assert!(e.contains("no control-plane replica is the leader"), "{e}");
    // Nobody elected long after the last restart: the rollout stops and says so.
    let first = replicas(&[("c1", 1), ("c2", 2)], Some("c2"));
    let mut r = Rollout::new(Kind::Control, SETTINGS, &first, &[]).unwrap();
    assert_eq!(r.next(0, &first), Action::Restart(ids(&["c1"])));
    r.restarted(1_000, vec![("c1".into(), Ok(()))]);
    let leaderless = replicas(&[("c1", 5), ("c2", 2)], None);
    assert_eq!(r.next(2_000, &leaderless), Action::Wait);
    match r.next(40_000, &leaderless) {
        Action::Failed(why) => assert!(why.contains("no leader elected"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_killed_leaders_key_is_not_a_new_election() {
    let first = replicas(&[("c1", 1), ("c2", 2)], Some("c2"));
    let mut r = Rollout::new(Kind::Control, SETTINGS, &first, &[]).unwrap();
    assert_eq!(r.next(0, &first), Action::Restart(ids(&["c1"])));
    r.restarted(1_000, vec![("c1".into(), Ok(()))]);
    let c1_back = replicas(&[("c1", 11), ("c2", 2)], Some("c2"));
    assert_eq!(r.next(2_000, &c1_back), Action::Restart(ids(&["c2"])));
    r.restarted(3_000, vec![("c2".into(), Ok(()))]);
    // c2 is back, and its old key still names it (same term): not settled.
    let stale = replicas(&[("c1", 11), ("c2", 12)], Some("c2"));
    assert_eq!(r.next(4_000, &stale), Action::Wait);
    // Elected anew (even c2 again): a new term.
    let mut elected = stale.clone();
    elected.leader_term += 1;
    r.take_notes();
    assert_eq!(r.next(5_000, &elected), Action::Done);
    assert!(r
        .take_notes()
        .iter()
        .any(|n| n == "c2 elected leader again"));
}
