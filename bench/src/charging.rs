//! A simulated gun that charges: remote start (0x34 -> 0x33), starts of its own (card,
//! 0x31 -> 0x32), real-time data while charging (0x13), remote stop (0x36 -> 0x35), and
//! the transaction record (0x3B), sent again until the platform confirms it (0x40).
//!
//! Pure state: the fleet feeds it frames and clock ticks and sends what it returns.

use std::time::{Duration, Instant};

use pylon_proto::ykc::frames::{
    CardStartRequest, RealtimeData, RemoteRebootReply, RemoteStartReply, RemoteStopReply,
    TimeSyncReply, TransactionRecord,
};
use pylon_proto::ykc::{Bcd, Cp56Time2a, Frame, PileNo, Scaled, TradeNo};

#[derive(Debug, Clone, Copy)]
pub struct ChargingConfig {
    /// How long a charge lasts unless stopped remotely.
    pub session: Duration,
    /// Real-time data interval while charging.
    pub realtime_every: Duration,
    /// Start a charge of our own (card) this often when idle; `None`: only remote starts.
    pub card_start_every: Option<Duration>,
    /// Send the transaction record again when unconfirmed for this long.
    pub confirm_timeout: Duration,
    /// The stop reason of a charge that ends by itself (0x45: stopped by hand).
    pub end_reason: u8,
    /// Misbehave ([`crate::trouble`]): ignore remote starts (never confirm them) and,
    /// stopped remotely, confirm the stop but never send the transaction record.
    pub misbehave: bool,
}

#[derive(Debug)]
enum Gun {
    Idle {
        next_card: Option<Instant>,
    },
    Requesting {
        since: Instant,
    },
    Charging {
        trade_no: TradeNo,
        started: Instant,
        ends: Instant,
        next_realtime: Instant,
    },
    Ending {
        record: Frame,
        trade_no: TradeNo,
        first_sent: Instant,
        last_sent: Instant,
        attempts: u32,
    },
}

/// Something worth counting.
#[derive(Debug, Clone, PartialEq)]
pub enum ChargeEvent {
    Started,
    StartRefused,
    RecordSent,
    RecordRetransmitted,
    /// The platform confirmed the record `trade_no`, `after` it was first sent.
    RecordConfirmed {
        trade_no: TradeNo,
        after: Duration,
    },
    RecordAbandoned,
}

/// What to send: a new frame (numbered by the charger) or a reply echoing `seq`.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Send(Frame),
    Reply(u16, Frame),
}

pub struct ChargingGun {
    pile: PileNo,
    config: ChargingConfig,
    gun: Gun,
}

const GUN: Bcd<1> = Bcd([1]);

impl ChargingGun {
    pub fn new(pile: PileNo, config: ChargingConfig, now: Instant, offset: Duration) -> Self {
        ChargingGun {
            pile,
            config,
            gun: Gun::Idle {
                next_card: config.card_start_every.map(|every| now + offset.min(every)),
            },
        }
    }

    pub fn is_idle(&self) -> bool {
        matches!(self.gun, Gun::Idle { .. })
    }

    fn idle(&self, now: Instant) -> Gun {
        Gun::Idle {
            next_card: self.config.card_start_every.map(|every| now + every),
        }
    }

    fn start(&mut self, trade_no: TradeNo, now: Instant) {
        self.gun = Gun::Charging {
            trade_no,
            started: now,
            ends: now + self.config.session,
            next_realtime: now,
        };
    }

    fn record(&self, trade_no: TradeNo, started: Instant, now: Instant, reason: u8) -> Frame {
        // 7 kW: energy in 0.0001 kWh, all in the flat period, at the flat rate of the
        // demo's tariff (`accounts::station_with_tariff`: 0.8 + 0.4 = 1.2 yuan/kWh) in
        // 0.0001 yuan, so the platform's price agrees with the pile's.
        let secs = now.duration_since(started).as_secs_f64().max(1.0);
        let energy = (7.0 * secs / 3600.0 * 10_000.0) as u32;
        // A misbehaving pile overcharges by 5 %: a settlement discrepancy.
        let price = if self.config.misbehave { 1.26 } else { 1.2 };
        let amount = (f64::from(energy) * price).round() as u32;
        let end = cp56_now();
        let start = cp56_at(std::time::SystemTime::now() - now.duration_since(started));
        TransactionRecord {
            trade_no,
            pile_no: self.pile,
            gun_no: GUN,
            start_time: start,
            end_time: end,
            trade_time: end,
            flat_unit_price: Scaled(120_000),
            flat_energy: Scaled(energy),
            flat_amount: Scaled(amount),
            total_energy: Scaled(energy),
            total_amount: Scaled(amount),
            trade_kind: 1,
            stop_reason: reason,
            ..Default::default()
        }
        .into()
    }

    fn finish(
        &mut self,
        now: Instant,
        reason: u8,
        out: &mut Vec<Out>,
        events: &mut Vec<ChargeEvent>,
    ) {
        if let Gun::Charging {
            trade_no, started, ..
        } = self.gun
        {
            let record = self.record(trade_no, started, now, reason);
            out.push(Out::Send(record.clone()));
            events.push(ChargeEvent::RecordSent);
            self.gun = Gun::Ending {
                record,
                trade_no,
                first_sent: now,
                last_sent: now,
                attempts: 1,
            };
        }
    }

    /// Time passes: real-time data, the end of a charge, retransmissions, card starts.
    pub fn tick(&mut self, now: Instant) -> (Vec<Out>, Vec<ChargeEvent>) {
        let (mut out, mut events) = (Vec::new(), Vec::new());
        match &mut self.gun {
            Gun::Idle {
                next_card: Some(at),
            } if *at <= now => {
                out.push(Out::Send(
                    CardStartRequest {
                        pile_no: self.pile,
                        gun_no: GUN,
                        start_mode: 1,
                        account_or_card_no: pylon_proto::ykc::Bytes(crate::accounts::fleet_card(
                            self.pile.to_u64(),
                        )),
                        ..Default::default()
                    }
                    .into(),
                ));
                self.gun = Gun::Requesting { since: now };
            }
            Gun::Requesting { since } if now.duration_since(*since) > Duration::from_secs(30) => {
                events.push(ChargeEvent::StartRefused);
                self.gun = self.idle(now);
            }
            Gun::Charging { ends, .. } if *ends <= now => {
                // 0x45: 手动停止 (stopped at the pile).
                self.finish(now, self.config.end_reason, &mut out, &mut events);
            }
            Gun::Charging {
                trade_no,
                started,
                next_realtime,
                ..
            } if *next_realtime <= now => {
                *next_realtime = now + self.config.realtime_every;
                let minutes = now.duration_since(*started).as_secs() / 60;
                out.push(Out::Send(
                    RealtimeData {
                        trade_no: *trade_no,
                        pile_no: self.pile,
                        gun_no: GUN,
                        status: 3,
                        gun_homed: 0,
                        gun_plugged: 1,
                        output_voltage: Scaled(3800),
                        output_current: Scaled(184),
                        soc: 50,
                        charging_minutes: minutes as u16,
                        ..Default::default()
                    }
                    .into(),
                ));
            }
            Gun::Ending {
                record,
                last_sent,
                attempts,
                ..
            } if now.duration_since(*last_sent) >= self.config.confirm_timeout => {
                if *attempts >= 10 {
                    events.push(ChargeEvent::RecordAbandoned);
                    self.gun = self.idle(now);
                } else {
                    out.push(Out::Send(record.clone()));
                    *last_sent = now;
                    *attempts += 1;
                    events.push(ChargeEvent::RecordRetransmitted);
                }
            }
            _ => {}
        }
        (out, events)
    }

    /// A frame from the platform.
    pub fn receive(
        &mut self,
        seq: u16,
        frame: &Frame,
        now: Instant,
    ) -> (Vec<Out>, Vec<ChargeEvent>) {
        let (mut out, mut events) = (Vec::new(), Vec::new());
        match frame {
            Frame::RemoteStart(_) if self.config.misbehave => {}
            Frame::RemoteStart(r) => {
                let idle = self.is_idle();
                out.push(Out::Reply(
                    seq,
                    RemoteStartReply {
                        trade_no: r.trade_no,
                        pile_no: self.pile,
                        gun_no: r.gun_no,
                        result: u8::from(idle),
                        // 0x02: 枪已在充电.
                        failure_reason: if idle { 0 } else { 0x02 },
                    }
                    .into(),
                ));
                if idle {
                    self.start(r.trade_no, now);
                    events.push(ChargeEvent::Started);
                }
            }
            Frame::CardStartReply(r) => {
                if matches!(self.gun, Gun::Requesting { .. }) {
                    if r.auth_result == 1 {
                        self.start(r.trade_no, now);
                        events.push(ChargeEvent::Started);
                    } else {
                        events.push(ChargeEvent::StartRefused);
                        self.gun = self.idle(now);
                    }
                }
            }
            Frame::RemoteStop(r) => {
                let charging = matches!(self.gun, Gun::Charging { .. });
                out.push(Out::Reply(
                    seq,
                    RemoteStopReply {
                        pile_no: self.pile,
                        gun_no: r.gun_no,
                        result: u8::from(charging),
                        // 0x02: 枪未处于充电状态.
                        failure_reason: if charging { 0 } else { 0x02 },
                    }
                    .into(),
                ));
                if self.config.misbehave {
                    // The record is lost: the platform must notice it never came.
                    self.gun = self.idle(now);
                } else {
                    // 0x40: APP 远程停止.
                    self.finish(now, 0x40, &mut out, &mut events);
                }
            }
            Frame::TransactionConfirm(c) => {
                if let Gun::Ending {
                    trade_no,
                    first_sent,
                    ..
                } = self.gun
                {
                    if c.trade_no == trade_no && c.result == 0 {
                        events.push(ChargeEvent::RecordConfirmed {
                            trade_no,
                            after: now.duration_since(first_sent),
                        });
                        self.gun = self.idle(now);
                    }
                }
            }
            Frame::TimeSync(t) => out.push(Out::Reply(
                seq,
                TimeSyncReply {
                    pile_no: self.pile,
                    current_time: t.current_time,
                }
                .into(),
            )),
            Frame::RemoteReboot(_) => out.push(Out::Reply(
                seq,
                RemoteRebootReply {
                    pile_no: self.pile,
                    result: 1,
                }
                .into(),
            )),
            _ => {}
        }
        (out, events)
    }
}

/// Piles keep local time; the simulated ones live in China (UTC+8).
const PILE_UTC_OFFSET_SECS: i32 = 8 * 3600;

/// A wall-clock time as a pile's CP56Time2a stamp.
pub fn cp56_at(at: std::time::SystemTime) -> Cp56Time2a {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let t = time::OffsetDateTime::from_unix_timestamp(since.as_secs() as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(
            time::UtcOffset::from_whole_seconds(PILE_UTC_OFFSET_SECS)
                .unwrap_or(time::UtcOffset::UTC),
        );
    Cp56Time2a::new(
        t.year().clamp(2000, 2099) as u16,
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        u16::from(t.second()) * 1000 + (since.subsec_millis() as u16),
    )
    .unwrap_or_default()
}

pub fn cp56_now() -> Cp56Time2a {
    cp56_at(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_proto::ykc::frames::{RemoteStart, RemoteStop, TransactionConfirm};

    fn config() -> ChargingConfig {
        ChargingConfig {
            end_reason: 0x45,
            misbehave: false,
            session: Duration::from_secs(60),
            realtime_every: Duration::from_secs(15),
            card_start_every: None,
            confirm_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn remote_start_realtime_stop_record_confirm() {
        let pile = PileNo::parse("32010200000001").unwrap();
        let t0 = Instant::now();
        let mut gun = ChargingGun::new(pile, config(), t0, Duration::ZERO);
        let trade_no = TradeNo::parse("32010200000001012611241820300007").unwrap();
        let start: Frame = RemoteStart {
            trade_no,
            pile_no: pile,
            gun_no: GUN,
            ..Default::default()
        }
        .into();
        let (out, events) = gun.receive(9, &start, t0);
        assert!(matches!(&out[0], Out::Reply(9, Frame::RemoteStartReply(r)) if r.result == 1));
        assert_eq!(events, vec![ChargeEvent::Started]);
        let (out, _) = gun.tick(t0);
        assert!(
            matches!(&out[0], Out::Send(Frame::RealtimeData(r)) if r.status == 3 && r.trade_no == trade_no)
        );
        let stop: Frame = RemoteStop {
            pile_no: pile,
            gun_no: GUN,
        }
        .into();
        let t1 = t0 + Duration::from_secs(30);
        let (out, _) = gun.receive(10, &stop, t1);
        assert!(matches!(&out[0], Out::Reply(10, Frame::RemoteStopReply(r)) if r.result == 1));
        assert!(
            matches!(&out[1], Out::Send(Frame::TransactionRecord(r)) if r.trade_no == trade_no && r.stop_reason == 0x40)
        );
        // Unconfirmed: sent again after the timeout.
        let (out, events) = gun.tick(t1 + Duration::from_secs(5));
        assert!(matches!(&out[0], Out::Send(Frame::TransactionRecord(_))));
        assert_eq!(events, vec![ChargeEvent::RecordRetransmitted]);
        let confirm: Frame = TransactionConfirm {
            trade_no,
            result: 0,
        }
        .into();
        let (_, events) = gun.receive(11, &confirm, t1 + Duration::from_secs(6));
        assert!(matches!(events[0], ChargeEvent::RecordConfirmed { .. }));
        assert!(gun.is_idle());
    }
}
