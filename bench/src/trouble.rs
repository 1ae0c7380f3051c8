//! Chargers that misbehave on purpose (the demo's, and tests'): every N-th pile of a
//! fleet goes through episodes, one per session, in turn: a hardware fault raised and
//! cleared, a silence (no heartbeats, so the edge times it out), and a burst of quick
//! reconnects (flapping). Sans-io: the session asks what to do at each moment. Their
//! charges also end abnormally and cost 5 % more than the tariff, they never confirm
//! remote starts, and a remote stop loses the record (`ChargingConfig::misbehave`).

use std::time::Duration;

/// What a troubled pile does in one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Episode {
    /// Report emergency stop and door open (0x13 fault bits 1 and 13, gun status fault)
    /// for `FAULT_FOR`, then report healthy again, then reconnect.
    Fault,
    /// Stop heartbeating: the edge closes the session (heartbeat timeout).
    Silent,
    /// Log in and leave at once (several sessions in a row).
    Flap,
}

/// The episodes, one per session, in turn.
const CYCLE: [Episode; 8] = [
    Episode::Fault,
    Episode::Silent,
    Episode::Flap,
    Episode::Flap,
    Episode::Flap,
    Episode::Flap,
    Episode::Flap,
    Episode::Flap,
];

/// How long a fault is reported.
pub const FAULT_FOR: Duration = Duration::from_secs(60);
/// The fault bits reported: emergency stop (bit 1) and door open (bit 13).
pub const FAULT_BITS: u16 = 0b1_0000_0000_0001;
/// The stop reason of troubled piles' charges: "stopped abnormally: circuit breaker
/// tripped".
pub const ABNORMAL_STOP: u8 = 0x6C;

#[derive(Debug, Clone, Copy)]
pub struct TroubleConfig {
    /// Every `every`-th pile of the fleet misbehaves (index % every == 0).
    pub every: u64,
    /// Calm time at the start of each session before its episode.
    pub calm: Duration,
}

impl TroubleConfig {
    pub fn troubled(&self, index: u64) -> bool {
        self.every > 0 && index.is_multiple_of(self.every)
    }
}

/// The episode of a troubled pile's `session`-th session (0-based).
pub fn episode(session: u64) -> Episode {
    CYCLE[(session % CYCLE.len() as u64) as usize]
}

/// What a session of a troubled pile does at `elapsed` since it logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Behave.
    Normal,
    /// Report these fault bits in real-time data (0 after a fault: healthy again).
    Report(u16),
    /// Send nothing (no heartbeats, no data).
    Quiet,
    /// Close the connection now.
    Leave,
}

pub fn act(episode: Episode, calm: Duration, elapsed: Duration) -> Act {
    if episode == Episode::Flap {
        return if elapsed >= Duration::from_secs(2) {
            Act::Leave
        } else {
            Act::Normal
        };
    }
    let Some(into) = elapsed.checked_sub(calm) else {
        return Act::Normal;
    };
    match episode {
        Episode::Fault if into < FAULT_FOR => Act::Report(FAULT_BITS),
        Episode::Fault if into < FAULT_FOR + Duration::from_secs(30) => Act::Report(0),
        Episode::Fault => Act::Leave,
        Episode::Silent => Act::Quiet,
        Episode::Flap => Act::Leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_troubled_pile_goes_through_every_episode() {
        let kinds: Vec<Episode> = (0..8).map(episode).collect();
        assert!(kinds.contains(&Episode::Fault));
        assert!(kinds.contains(&Episode::Silent));
        // Flapping needs at least five logins in a row.
        assert!(kinds.iter().filter(|e| **e == Episode::Flap).count() >= 5);
        let calm = Duration::from_secs(20);
        assert_eq!(
            act(Episode::Fault, calm, Duration::from_secs(5)),
            Act::Normal
        );
        assert_eq!(
            act(Episode::Fault, calm, Duration::from_secs(30)),
            Act::Report(FAULT_BITS)
        );
        assert_eq!(
            act(Episode::Fault, calm, Duration::from_secs(85)),
            Act::Report(0)
        );
        assert_eq!(
            act(Episode::Fault, calm, Duration::from_secs(200)),
            Act::Leave
        );
        assert_eq!(
            act(Episode::Silent, calm, Duration::from_secs(30)),
            Act::Quiet
        );
        assert_eq!(act(Episode::Flap, calm, Duration::from_secs(3)), Act::Leave);
        let cfg = TroubleConfig { every: 10, calm };
        assert!(cfg.troubled(0) && cfg.troubled(20) && !cfg.troubled(5));
    }
}
