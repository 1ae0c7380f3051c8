//! A fleet of simulated chargers in one process.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pylon_proto::ykc::{Frame, PileNo};
use rand::Rng;
use tokio::sync::watch;

use crate::charger::{self, Cadence, ChargerConn, ChargerError, Target};
use crate::charging::{ChargeEvent, ChargingConfig, ChargingGun, Out};
use crate::dispatch::Dispatch;
use crate::stats::FleetStats;

#[derive(Clone)]
pub struct FleetConfig {
    pub target: Target,
    pub sessions: u64,
    pub pile_base: u64,
    pub sources: Vec<IpAddr>,
    /// New chargers started per second.
    pub ramp_per_sec: u64,
    pub cadence: Cadence,
    /// Ask the control plane for each pile's edge instead of connecting to `target.addr`
    /// (whose TLS settings still apply).
    pub dispatch: Option<Dispatch>,
    /// Charge: answer remote starts and stops, start by card, send transaction records.
    pub charging: Option<ChargingConfig>,
    /// Some piles misbehave on purpose.
    pub trouble: Option<crate::trouble::TroubleConfig>,
    /// Each change is a reconnect wave: every connected charger closes its connection
    /// and connects again (resuming its TLS session), charger i after i / `ramp_per_sec`
    /// seconds.
    pub waves: Option<watch::Receiver<u64>>,
}

/// Runs the fleet until `stop` turns true.
pub async fn run(cfg: FleetConfig, stats: Arc<FleetStats>, stop: watch::Receiver<bool>) {
    let cfg = Arc::new(cfg);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.sessions as usize);
    for i in 0..cfg.sessions {
        if *stop.borrow() {
            break;
        }
        // Pace the ramp: charger i starts at i / rate seconds.
        let due = Duration::from_secs_f64(i as f64 / cfg.ramp_per_sec.max(1) as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let source = (!cfg.sources.is_empty()).then(|| cfg.sources[i as usize % cfg.sources.len()]);
        tasks.push(tokio::spawn(charger_loop(
            cfg.clone(),
            i,
            source,
            stats.clone(),
            stop.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn charger_loop(
    cfg: Arc<FleetConfig>,
    index: u64,
    source: Option<IpAddr>,
    stats: Arc<FleetStats>,
    mut stop: watch::Receiver<bool>,
) {
    let pile = charger::pile_number(cfg.pile_base, index);
    // Each charger keeps its own TLS session, as a device does.
    let target = cfg.target.with_own_sessions();
    let mut backoff = Duration::from_millis(500);
    let troubled = cfg.trouble.filter(|t| t.troubled(index));
    for session in 0u64.. {
        if *stop.borrow() {
            return;
        }
        let episode = troubled.map(|t| (crate::trouble::episode(session), t.calm));
        match run_session(
            &cfg, &target, index, pile, source, &stats, &mut stop, episode,
        )
        .await
        {
            Ok(()) => return,
            Err(ChargerError::Reconnect) => {
                backoff = Duration::from_millis(500);
                continue;
            }
            Err(ChargerError::Planned) => {
                // Back at once (a flapping pile reconnects quickly).
                backoff = Duration::from_millis(500);
                stats.error("planned");
            }
            Err(e) => {
                stats.error(e.kind());
                tracing::debug!(%pile, "charger session ended: {e}");
            }
        }
        // Jittered exponential backoff, so a restarted edge is not hit by all at once.
        let wait = backoff.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
        backoff = (backoff * 2).min(Duration::from_secs(30));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Sends what the gun wants sent and counts what happened.
async fn act(
    conn: &mut ChargerConn,
    stats: &FleetStats,
    out: Vec<Out>,
    events: Vec<ChargeEvent>,
) -> Result<(), ChargerError> {
    for item in out {
        match item {
            Out::Send(frame) => {
                conn.send(&frame).await?;
            }
            Out::Reply(seq, frame) => conn.reply(seq, &frame).await?,
        }
    }
    for event in events {
        let counter = match event {
            ChargeEvent::Started => &stats.charges,
            ChargeEvent::StartRefused => {
                stats.error("start_refused");
                continue;
            }
            ChargeEvent::RecordSent => &stats.records_sent,
            ChargeEvent::RecordRetransmitted => &stats.record_retransmits,
            ChargeEvent::RecordConfirmed { trade_no, .. } => {
                stats.confirmed(&trade_no);
                &stats.records_confirmed
            }
            ChargeEvent::RecordAbandoned => &stats.records_abandoned,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Connects to the pile's primary edge, or to the backups in turn if it does not answer.
async fn connect_dispatched(
    target: &Target,
    dispatch: &Dispatch,
    pile: PileNo,
    source: Option<IpAddr>,
) -> Result<ChargerConn, ChargerError> {
    let entry = dispatch
        .lookup(pile.to_string())
        .await
        .map_err(ChargerError::Dispatch)?;
    let mut last = None;
    for candidate in entry.addresses() {
        let addr = crate::dispatch::resolve(&candidate.address)
            .await
            .map_err(ChargerError::Dispatch)?;
        let target = Target {
            addr,
            tls: target.tls.clone(),
        };
        match ChargerConn::connect(&target, source).await {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                tracing::debug!(%pile, edge = %candidate.edge, "entry address did not answer: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(ChargerError::Dispatch("no entry address".into())))
}

struct Connected<'a>(&'a FleetStats);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_session(
    cfg: &FleetConfig,
    target: &Target,
    index: u64,
    pile: PileNo,
    source: Option<IpAddr>,
    stats: &FleetStats,
    stop: &mut watch::Receiver<bool>,
    trouble: Option<(crate::trouble::Episode, Duration)>,
) -> Result<(), ChargerError> {
    let t0 = Instant::now();
    let mut conn = match &cfg.dispatch {
        None => ChargerConn::connect(target, source).await?,
        Some(dispatch) => connect_dispatched(target, dispatch, pile, source).await?,
    };
    conn.login(pile).await?;
    stats.setup(charger::micros_since(t0), conn.stream.resumed());
    // Waves before this session do not concern it.
    let mut waves = cfg.waves.clone();
    if let Some(w) = waves.as_mut() {
        w.borrow_and_update();
    }
    let mut reconnect_at: Option<tokio::time::Instant> = None;
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let _connected = Connected(stats);

    let cadence = cfg.cadence;
    let (hb_offset, rt_offset) = {
        let mut rng = rand::thread_rng();
        (
            cadence.heartbeat.mul_f64(rng.gen_range(0.0..1.0)),
            cadence.realtime_idle.mul_f64(rng.gen_range(0.0..1.0)),
        )
    };
    let now = tokio::time::Instant::now();
    let mut heartbeat = tokio::time::interval_at(now + hb_offset, cadence.heartbeat);
    let mut realtime = tokio::time::interval_at(now + rt_offset, cadence.realtime_idle);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    realtime.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gun = cfg.charging.map(|mut c| {
        if trouble.is_some() {
            c.end_reason = crate::trouble::ABNORMAL_STOP;
            c.misbehave = true;
        }
        let offset = c.card_start_every.map_or(Duration::ZERO, |every| {
            every.mul_f64(rand::thread_rng().gen_range(0.0..1.0))
        });
        ChargingGun::new(pile, c, Instant::now(), offset)
    });
    let mut charge_tick = tokio::time::interval(Duration::from_millis(500));
    charge_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Option<(u16, Instant)> = None;
    let mut unanswered = 0u32;
    let hb = charger::heartbeat_frame(pile);
    let mut rt = charger::idle_realtime_frame(pile);
    let mut trouble_tick = tokio::time::interval(Duration::from_secs(1));
    let (mut quiet, mut reported) = (false, 0u16);
    let logged_in = Instant::now();
    loop {
        tokio::select! {
            _ = trouble_tick.tick(), if trouble.is_some() => {
                let Some((episode, calm)) = trouble else { continue };
                match crate::trouble::act(episode, calm, logged_in.elapsed()) {
                    crate::trouble::Act::Normal => {}
                    crate::trouble::Act::Quiet => quiet = true,
                    crate::trouble::Act::Leave => return Err(ChargerError::Planned),
                    crate::trouble::Act::Report(bits) if bits != reported || rt_is_idle(&rt) != (bits == 0) => {
                        reported = bits;
                        rt = charger::realtime_with_faults(pile, bits);
                        conn.send(&rt).await?;
                        stats.realtime_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    crate::trouble::Act::Report(_) => {}
                }
            }
            _ = heartbeat.tick(), if !quiet => {
                if pending.is_some() {
                    unanswered += 1;
                    if unanswered >= 3 {
                        return Err(ChargerError::Timeout("heartbeat replies"));
                    }
                }
                let seq = conn.send(&hb).await?;
                stats.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                pending = Some((seq, Instant::now()));
            }
            _ = realtime.tick(), if !quiet => {
                conn.send(&rt).await?;
                stats.realtime_sent.fetch_add(1, Ordering::Relaxed);
            }
            _ = charge_tick.tick(), if gun.is_some() => {
                if let Some(g) = gun.as_mut() {
                    let (out, events) = g.tick(Instant::now());
                    act(&mut conn, stats, out, events).await?;
                }
            }
            received = conn.recv() => match received? {
                (seq, Frame::HeartbeatReply(_)) => {
                    if let Some((sent_seq, at)) = pending {
                        if sent_seq == seq {
                            stats.heartbeat_rtt(charger::micros_since(at));
                            pending = None;
                            unanswered = 0;
                        }
                    }
                }
                (seq, frame) => {
                    stats.downlinks.fetch_add(1, Ordering::Relaxed);
                    if let Some(g) = gun.as_mut() {
                        let (out, events) = g.receive(seq, &frame, Instant::now());
                        act(&mut conn, stats, out, events).await?;
                    }
                }
            },
            wave = next_wave(&mut waves), if reconnect_at.is_none() => {
                if wave {
                    let offset = Duration::from_secs_f64(index as f64 / cfg.ramp_per_sec.max(1) as f64);
                    reconnect_at = Some(tokio::time::Instant::now() + offset);
                } else {
                    waves = None;
                }
            }
            _ = until(reconnect_at) => return Err(ChargerError::Reconnect),
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Resolves when a reconnect wave comes (true) or its sender is gone (false); never
/// without waves.
async fn next_wave(waves: &mut Option<watch::Receiver<u64>>) -> bool {
    match waves {
        Some(w) => w.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Resolves at `at`; never without it.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether a real-time frame reports a healthy, idle gun.
fn rt_is_idle(frame: &pylon_proto::ykc::Frame) -> bool {
    matches!(frame, pylon_proto::ykc::Frame::RealtimeData(r) if r.hardware_faults == 0)
}
