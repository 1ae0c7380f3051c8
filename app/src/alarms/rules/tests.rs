use super::*;

#[test]
fn fault_bits_are_numbered_from_one_at_the_lowest_bit() {
    assert_eq!(fault_bits(0b1).collect::<Vec<_>>(), vec![1]);
    assert_eq!(
        fault_bits(0b1_0000_0000_0101).collect::<Vec<_>>(),
        vec![1, 3, 13]
    );
    // Bits 14..16 are not defined: ignored.
    assert_eq!(fault_bits(0xE000).count(), 0);
    let alarm = gun_fault("32010200000001", "1", 1);
    assert!(alarm.text.contains("emergency stop"), "{}", alarm.text);
    assert_eq!(alarm.severity, Severity::Critical);
    assert_eq!(
        gun_fault("32010200000001", "1", 13).severity,
        Severity::Warning
    );
}

#[test]
fn fault_changes_open_and_resolve_per_bit() {
    assert_eq!(fault_changes(0, 0b101), (vec![1, 3], vec![]));
    assert_eq!(fault_changes(0b101, 0b110), (vec![2], vec![1]));
    assert_eq!(fault_changes(0b110, 0), (vec![], vec![2, 3]));
    assert_eq!(fault_changes(0b1, 0b1), (vec![], vec![]));
}

#[test]
fn only_abnormal_closes_are_offline_alarms() {
    assert!(offline_is_abnormal("heartbeat_timeout"));
    assert!(offline_is_abnormal("io_error"));
    for clean in [
        "peer_closed",
        "replaced",
        "moved",
        "drain",
        "shutdown",
        "login_rejected",
        "",
    ] {
        assert!(!offline_is_abnormal(clean), "{clean}");
    }
}

#[test]
fn flapping_needs_the_threshold_within_the_window() {
    let mut flaps = FlapDetector::new(3, 60_000);
    assert_eq!(flaps.login("p", 0), None);
    assert_eq!(flaps.login("p", 10_000), None);
    assert_eq!(flaps.login("p", 20_000), Some(3));
    // Spread out: the old logins leave the window.
    let mut slow = FlapDetector::new(3, 60_000);
    for at in [0, 50_000, 100_000, 150_000] {
        assert_eq!(slow.login("p", at), None);
    }
    assert!(slow.prune(1_000_000).is_empty());
    assert!(slow.logins.is_empty());
    // A flapping pile that calmed down is given back once.
    assert_eq!(flaps.prune(20_000), Vec::<String>::new());
    assert_eq!(flaps.prune(200_000), vec!["p".to_owned()]);
    assert!(flaps.prune(300_000).is_empty());
}

#[test]
fn stop_reasons_follow_the_appendix() {
    for normal in 0x40..=0x49 {
        assert_eq!(abnormal_stop(normal), None, "{normal:#x}");
    }
    assert!(abnormal_stop(0x4A).is_some_and(|t| t.starts_with("start failed")));
    assert!(abnormal_stop(0x72).is_some_and(|t| t.contains("emergency stop")));
    assert!(abnormal_stop(0x8F).is_some());
    assert!(abnormal_stop(0x90).is_some());
    assert_eq!(abnormal_stop(0x00), None);
    assert_eq!(abnormal_stop(0x91), None);
    assert!(charge_abnormal_end("p", "1", "t", 0x41).is_none());
    let raised = charge_abnormal_end("p", "1", "t", 0x6C);
    assert!(raised.is_some_and(|r| r.key == "charge_abnormal_end:t"));
}
