use super::*;
use serde_json::json;

fn status(pile: &str, gun: &str, code: u8, at: i64) -> GunStatus {
    GunStatus {
        pile_no: pile.into(),
        gun_no: gun.into(),
        status: code,
        data: json!({"at": at}),
        updated_at: at,
    }
}

fn event(trade: &str, at: i64) -> SessionEvent {
    SessionEvent {
        pile_no: "p1".into(),
        gun_no: "01".into(),
        trade_no: trade.into(),
        frame_type: 0x23,
        fields: json!({}),
        at,
    }
}

fn change(pile: &str, gun: &str, code: u8, at: i64) -> StatusChange {
    StatusChange {
        pile_no: pile.into(),
        gun_no: gun.into(),
        status: code,
        at,
    }
}

#[test]
fn a_batch_holds_each_guns_latest_status_and_every_change() {
    let mut p = Pending::default();
    p.status(status("p1", "01", 2, 1));
    p.status(status("p1", "01", 2, 2));
    p.status(status("p1", "01", 3, 3));
    p.status(status("p1", "02", 2, 4));
    p.status(status("p1", "01", 2, 5));
    let batch = p.take();
    assert_eq!(
        batch.statuses,
        vec![status("p1", "01", 2, 5), status("p1", "02", 2, 4)]
    );
    // The first status of a gun is compared with the store's; later changes are known.
    assert_eq!(
        batch.first_seen,
        vec![change("p1", "01", 2, 1), change("p1", "02", 2, 4)]
    );
    assert_eq!(
        batch.history,
        vec![change("p1", "01", 3, 3), change("p1", "01", 2, 5)]
    );
    assert!(p.take().is_empty(), "nothing left after a take");

    // Known guns: the same status again is no history, a change is.
    p.status(status("p1", "01", 2, 6));
    p.status(status("p1", "02", 1, 7));
    let batch = p.take();
    assert!(batch.first_seen.is_empty());
    assert_eq!(batch.history, vec![change("p1", "02", 1, 7)]);

    // A pile that logged in again is compared with the store once more.
    p.forget_pile("p1");
    p.status(status("p1", "01", 2, 8));
    assert_eq!(p.take().first_seen, vec![change("p1", "01", 2, 8)]);
}

#[test]
fn a_failed_batch_goes_back_before_what_came_since_and_newer_statuses_win() {
    let mut p = Pending::default();
    p.status(status("p1", "01", 2, 1));
    p.event(event("t1", 1));
    p.event(event("t1", 2));
    let failed = p.take();
    p.status(status("p1", "01", 3, 3));
    p.event(event("t1", 3));
    p.restore(failed, 10);
    let batch = p.take();
    assert_eq!(batch.statuses, vec![status("p1", "01", 3, 3)]);
    assert_eq!(
        batch.events.iter().map(|e| e.at).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(batch.first_seen, vec![change("p1", "01", 2, 1)]);
    assert_eq!(batch.history, vec![change("p1", "01", 3, 3)]);

    // Beyond the cap, the oldest events go (and are counted).
    p.restore(batch, 2);
    assert_eq!(p.dropped, 1);
    assert_eq!(
        p.take().events.iter().map(|e| e.at).collect::<Vec<_>>(),
        [2, 3]
    );
}

#[test]
fn reads_see_what_is_pending() {
    let mut p = Pending::default();
    p.status(status("p1", "02", 3, 9));
    p.status(status("p2", "01", 1, 9));
    let stored = vec![status("p1", "01", 2, 1), status("p1", "02", 2, 1)];
    assert_eq!(
        p.overlay_guns("p1", stored),
        vec![status("p1", "01", 2, 1), status("p1", "02", 3, 9)]
    );
    assert_eq!(
        p.overlay_guns("p3", vec![]),
        vec![],
        "another pile's statuses stay out"
    );
    p.event(event("t1", 5));
    p.event(event("t2", 6));
    let events = p.overlay_events("t1", vec![event("t1", 1)]);
    assert_eq!(events.iter().map(|e| e.at).collect::<Vec<_>>(), [1, 5]);
}

#[test]
fn reads_see_the_batch_being_written_until_it_is_in_the_store() {
    let mut p = Pending::default();
    p.status(status("p1", "01", 3, 1));
    p.event(event("t1", 1));
    let writing = p.take();
    p.status(status("p1", "02", 2, 2));
    assert_eq!(
        p.overlay_guns("p1", vec![]),
        vec![status("p1", "01", 3, 1), status("p1", "02", 2, 2)]
    );
    assert_eq!(p.overlay_events("t1", vec![]).len(), 1);
    // Written: the store has it now, and the overlay no longer repeats it.
    p.written();
    assert_eq!(p.overlay_events("t1", vec![]).len(), 0);
    // Failed: back in the pending rows, seen once.
    let failed = p.take();
    p.restore(failed, 10);
    assert_eq!(p.overlay_guns("p1", vec![]), vec![status("p1", "02", 2, 2)]);
    drop(writing);
}

#[test]
fn a_pile_forgotten_twice_in_one_batch_compares_with_its_pending_status() {
    let mut p = Pending::default();
    p.status(status("p1", "01", 3, 1));
    p.forget_pile("p1");
    p.status(status("p1", "01", 2, 2));
    let batch = p.take();
    // The first is compared with the store; the second with the first (a change).
    assert_eq!(batch.first_seen, vec![change("p1", "01", 3, 1)]);
    assert_eq!(batch.history, vec![change("p1", "01", 2, 2)]);
}
