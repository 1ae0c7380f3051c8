//! The charging business: what the platform does with each frame a pile sends, and the
//! commands operators send to piles.
//!
//! Frames arrive decoded (the codec is `pylon_proto::ykc`); state lives in the [`Store`].
//! Each handler returns the replies for the edge the frame came from; commands for piles
//! go out through the [`Directory`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pylon_proto::ykc::frames::{
    BillingModelVerifyReply, CardStartReply, ParallelStartReply, RemoteStop, TransactionConfirm,
};
use pylon_proto::ykc::{Bcd, Frame, PileNo, Scaled, TradeNo};
use serde_json::Value;
use time::UtcOffset;
use tokio::sync::oneshot;

use crate::clock::{self, Clock};
use crate::config::Fault;
use crate::directory::{Directory, Location, SendError};
use crate::metrics::AppMetrics;
use crate::revenue::authorize::{Refusal, StartPolicy};
use crate::revenue::vault::Vault;
use crate::store::revenue::{Repeat, SettleInput};
use crate::store::{
    GunStatus, Order, OrderOrigin, OrderState, SessionEvent, Store, StoreError, TransactionRecord,
};

/// The spec's limit for a pile to confirm a remote start (appendix, 注意事项 1).
pub const START_CONFIRM_LIMIT: Duration = Duration::from_secs(90);

/// A business frame as it reaches the business logic.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub edge: Arc<str>,
    pub pile: PileNo,
    pub session_id: u64,
    pub executor: u32,
    pub seq: u16,
    pub frame: Frame,
}

/// What to send back to the edge the frame came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The verdict on a login (0x01); the edge answers 0x02 and closes refused piles.
    Login { accepted: bool },
    /// A frame for the pile, echoing the request's sequence number.
    Frame(Frame),
}

/// Why a frame could not be handled as the pile meant it (counted, answered if the
/// protocol has an answer, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum BusinessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Rejected(String),
}

/// Operator-facing errors of commands.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no pile {0} is registered")]
    UnknownPile(String),
    #[error("pile {0} is disabled")]
    DisabledPile(String),
    #[error("no order {0}")]
    UnknownOrder(String),
    #[error("no account {0}")]
    UnknownAccount(i64),
    #[error("the start was refused: {0}")]
    Refused(Refusal),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the pile did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Invalid(String),
}

type WaiterKey = (String, u8);

pub struct Business {
    pub store: Arc<dyn Store>,
    pub directory: Arc<Directory>,
    pub metrics: Arc<AppMetrics>,
    /// The piles' local time zone (their CP56Time2a stamps are local time).
    pub offset: UtcOffset,
    /// Seals, indexes and masks card numbers and VINs; `None`: no card keys configured,
    /// so card and VIN starts are refused.
    pub vault: Option<Arc<Vault>>,
    /// The operator's rules for starts (least balance, largest hold).
    pub policy: StartPolicy,
    /// Largest difference between the pile's amount and ours, in 0.0001 yuan, that is not
    /// flagged as a discrepancy.
    pub tolerance: i64,
    /// How long personal data and raw history are kept.
    pub retention: crate::config::RetentionConfig,
    /// Operator commands waiting for a pile's reply, by (pile, reply frame type).
    waiters: Mutex<HashMap<WaiterKey, Vec<oneshot::Sender<Frame>>>>,
    trade_seq: AtomicU16,
    command_ids: AtomicU64,
    /// When [`Business::push_due_tariffs`] last looked (Unix ms; 0: never).
    tariffs_checked: std::sync::atomic::AtomicI64,
    /// Fault injection for tests ([`Fault::KillAfterStore`]): the process kills itself
    /// (SIGKILL) right after committing a new transaction record, before the
    /// confirmation leaves.
    kill_after_store: bool,
    clock: Arc<dyn Clock>,
    /// The alarm engine.
    pub alarms: Arc<crate::alarms::Alarms>,
    /// Real-time status and charging events, written behind in batches.
    pub ingest: Arc<ingest::Ingest>,
    /// When each connected pile's guns last kept a sample, and their status then.
    last_samples: Mutex<HashMap<String, Vec<(String, SampleMark)>>>,
}

/// When a gun's trace last kept a sample (Unix ms), and the gun's status then.
type SampleMark = (i64, u8);

/// How a [`Business`] is set up beyond its store, directory and metrics.
#[derive(Debug, Clone)]
pub struct BusinessSettings {
    /// The piles' local time zone (their CP56Time2a stamps are local time).
    pub offset: UtcOffset,
    pub vault: Option<Arc<Vault>>,
    pub policy: StartPolicy,
    /// 0.0001 yuan.
    pub tolerance: i64,
    pub retention: crate::config::RetentionConfig,
    pub fault: Option<Fault>,
    pub clock: Arc<dyn Clock>,
    /// Where alarm notifications go.
    pub notifier: crate::alarms::notify::Notifier,
    pub alarm_settings: crate::alarms::AlarmSettings,
    pub ingest: ingest::IngestSettings,
}

fn digits<const N: usize>(b: &Bcd<N>) -> String {
    b.to_string()
}

fn gun_text(gun: &Bcd<1>) -> String {
    digits(gun)
}

fn gun_number(gun: &Bcd<1>) -> u8 {
    gun.to_u64() as u8
}

/// The `trade_no` and `gun_no` of a frame's JSON fields (every charging-process frame
/// names both).
fn trade_and_gun(fields: &Value) -> (String, String) {
    let text = |k: &str| {
        fields
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (text("trade_no"), text("gun_no"))
}

impl Business {
    pub fn new(
        store: Arc<dyn Store>,
        directory: Arc<Directory>,
        metrics: Arc<AppMetrics>,
        settings: BusinessSettings,
    ) -> Self {
        Business {
            alarms: Arc::new(crate::alarms::Alarms::new(
                store.clone(),
                settings.notifier,
                settings.alarm_settings,
            )),
            last_samples: Mutex::new(HashMap::new()),
            ingest: ingest::Ingest::new(store.clone(), settings.ingest),
            store,
            directory,
            metrics,
            offset: settings.offset,
            vault: settings.vault,
            policy: settings.policy,
            tolerance: settings.tolerance,
            retention: settings.retention,
            waiters: Mutex::new(HashMap::new()),
            trade_seq: AtomicU16::new(0),
            command_ids: AtomicU64::new(1),
            tariffs_checked: std::sync::atomic::AtomicI64::new(0),
            kill_after_store: settings.fault == Some(Fault::KillAfterStore),
            clock: settings.clock,
        }
    }

    /// Unix milliseconds, from the injected clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn next_command_id(&self) -> u64 {
        self.command_ids.fetch_add(1, Ordering::Relaxed)
    }

    fn next_trade_no(&self, pile: &PileNo, gun: u8) -> TradeNo {
        let seq = self.trade_seq.fetch_add(1, Ordering::Relaxed) % 10_000;
        clock::trade_no(pile, gun, self.now_ms(), self.offset, seq)
    }

    /// Handles one frame from a pile; returns the replies for its edge.
    pub async fn handle(&self, incoming: &Incoming) -> Result<Vec<Reply>, BusinessError> {
        let pile = digits(&incoming.pile);
        let frame = &incoming.frame;
        self.metrics.frame(frame.frame_type());
        match frame {
            Frame::Login(_) => self.login(incoming, &pile).await,
            Frame::BillingModelVerify(v) => {
                let (current, _) = self.pile_model(&pile).await?;
                let result = u8::from(current != v.billing_model_no.to_u64() as u16);
                Ok(vec![Reply::Frame(
                    BillingModelVerifyReply {
                        pile_no: incoming.pile,
                        billing_model_no: v.billing_model_no,
                        result,
                    }
                    .into(),
                )])
            }
            Frame::BillingModelRequest(_) => Ok(vec![Reply::Frame(
                self.model_reply(incoming.pile, &pile).await?,
            )]),
            Frame::RealtimeData(r) => {
                let status = GunStatus {
                    pile_no: pile.clone(),
                    gun_no: gun_text(&r.gun_no),
                    status: r.status,
                    data: frame.fields_json(),
                    updated_at: self.now_ms(),
                };
                let gun_no = status.gun_no.clone();
                self.ingest.status(status);
                self.realtime(&pile, &gun_no, r).await;
                // Also the answer to a read request (0x12).
                self.wake(&pile, frame);
                Ok(vec![])
            }
            Frame::CardStartRequest(c) => {
                let trade_no = self.next_trade_no(&incoming.pile, gun_number(&c.gun_no));
                let answer = self
                    .pile_start(charging::PileStartAsk {
                        pile: &pile,
                        gun_no: c.gun_no,
                        trade_no: digits(&trade_no),
                        start_mode: c.start_mode,
                        password_required: c.password_required,
                        card: &c.account_or_card_no,
                        password: &c.password_md5,
                        vin: &c.vin,
                        origin: OrderOrigin::Pile,
                    })
                    .await?;
                let trade_no = answer
                    .again
                    .as_deref()
                    .and_then(|t| TradeNo::parse(t).ok())
                    .unwrap_or(trade_no);
                Ok(vec![Reply::Frame(
                    CardStartReply {
                        trade_no,
                        pile_no: incoming.pile,
                        gun_no: c.gun_no,
                        logical_card_no: answer.logical_card_no,
                        balance: Scaled(answer.balance),
                        auth_result: answer.auth_result,
                        failure_reason: answer.failure_reason,
                    }
                    .into(),
                )])
            }
            Frame::ParallelStartRequest(p) => {
                let trade_no = self.next_trade_no(&incoming.pile, gun_number(&p.gun_no));
                let answer = self
                    .pile_start(charging::PileStartAsk {
                        pile: &pile,
                        gun_no: p.gun_no,
                        trade_no: digits(&trade_no),
                        start_mode: p.start_mode,
                        password_required: p.password_required,
                        card: &p.account_or_card_no,
                        password: &p.password_md5,
                        vin: &p.vin,
                        origin: OrderOrigin::Parallel,
                    })
                    .await?;
                let trade_no = answer
                    .again
                    .as_deref()
                    .and_then(|t| TradeNo::parse(t).ok())
                    .unwrap_or(trade_no);
                Ok(vec![Reply::Frame(
                    ParallelStartReply {
                        trade_no,
                        pile_no: incoming.pile,
                        gun_no: p.gun_no,
                        logical_card_no: answer.logical_card_no,
                        balance: Scaled(answer.balance),
                        auth_result: answer.auth_result,
                        failure_reason: answer.failure_reason,
                        parallel_no: p.parallel_no,
                    }
                    .into(),
                )])
            }
            Frame::RemoteStartReply(r) => {
                self.event(&pile, frame);
                let trade_no = digits(&r.trade_no);
                let (state, failure) = if r.result == 1 {
                    (OrderState::Charging, None)
                } else {
                    (
                        OrderState::Failed,
                        Some(format!(
                            "the pile refused to start (reason {:#04x})",
                            r.failure_reason
                        )),
                    )
                };
                self.move_open_order(&trade_no, state, failure.as_deref())
                    .await?;
                self.wake(&pile, frame);
                Ok(vec![])
            }
            Frame::RemoteStopReply(r) => {
                self.event(&pile, frame);
                if r.result != 1 {
                    tracing::warn!(%pile, gun = %gun_text(&r.gun_no), reason = r.failure_reason, "the pile refused to stop");
                }
                self.wake(&pile, frame);
                Ok(vec![])
            }
            Frame::TransactionRecord(t) => self.transaction(incoming, &pile, t).await,
            // Replies to commands, and reports without an answer: kept as events.
            Frame::BalanceUpdateReply(_)
            | Frame::OfflineCardSyncReply(_)
            | Frame::OfflineCardClearReply(_)
            | Frame::OfflineCardQueryReply(_)
            | Frame::WorkingParamsReply(_)
            | Frame::TimeSyncReply(_)
            | Frame::BillingModelSetReply(_)
            | Frame::ParkingLockReply(_)
            | Frame::RemoteRebootReply(_)
            | Frame::RemoteUpdateReply(_)
            | Frame::ParallelRemoteStartReply(_) => {
                self.event(&pile, frame);
                self.wake(&pile, frame);
                Ok(vec![])
            }
            Frame::ChargeHandshake(_)
            | Frame::ParameterConfig(_)
            | Frame::ChargeEnd(_)
            | Frame::ErrorReport(_)
            | Frame::BmsAbort(_)
            | Frame::ChargerAbort(_)
            | Frame::BmsDemandChargerOutput(_)
            | Frame::BmsInfo(_)
            | Frame::ParkingLockStatus(_) => {
                self.event(&pile, frame);
                Ok(vec![])
            }
            other => Err(BusinessError::Rejected(format!(
                "{} ({:#04x}) is not a frame a pile sends",
                other.name(),
                other.frame_type()
            ))),
        }
    }

    async fn login(&self, incoming: &Incoming, pile: &str) -> Result<Vec<Reply>, BusinessError> {
        let known = self.store.pile(pile).await?;
        let accepted = known.as_ref().is_some_and(|p| p.enabled);
        let result = match &known {
            Some(_) if accepted => "accepted",
            Some(_) => "disabled",
            None => "unknown",
        };
        self.metrics.login(result);
        if accepted {
            self.store.record_login(pile, self.now_ms()).await?;
            // It may have reported to another instance meanwhile.
            self.ingest.forget_pile(pile);
            if let Frame::Login(login) = &incoming.frame {
                let firmware = login.program_version.text();
                self.logged_in(pile, firmware.trim_matches(char::from(0)).trim())
                    .await;
            }
            self.directory.pile_online(
                pile,
                Location {
                    edge: incoming.edge.clone(),
                    executor: incoming.executor,
                    session_id: incoming.session_id,
                },
            );
        } else {
            tracing::info!(%pile, result, "login refused");
        }
        Ok(vec![Reply::Login { accepted }])
    }

    /// Settles a start: only an order still `starting` moves (a late reply after the 90 s
    /// limit, or after a stop, changes nothing).
    async fn move_open_order(
        &self,
        trade_no: &str,
        state: OrderState,
        failure: Option<&str>,
    ) -> Result<(), StoreError> {
        let moved = self
            .store
            .move_order(
                trade_no,
                &[OrderState::Starting],
                state,
                failure,
                self.now_ms(),
            )
            .await?;
        if moved {
            if state == OrderState::Failed {
                let why = failure.unwrap_or("the start failed");
                self.store
                    .release_hold(trade_no, why, self.now_ms())
                    .await?;
            }
            return Ok(());
        }
        match self.store.order(trade_no).await? {
            Some(order) if order.state.is_open() => {}
            Some(order) => {
                tracing::info!(
                    trade_no,
                    state = order.state.as_str(),
                    "reply for a closed order ignored"
                );
                self.metrics.unexpected("closed_order");
            }
            None => {
                tracing::warn!(trade_no, "reply for an unknown order");
                self.metrics.unexpected("unknown_order");
            }
        }
        Ok(())
    }

    /// Keeps a frame as an event of its charge (written with the next batch).
    fn event(&self, pile: &str, frame: &Frame) {
        let fields = frame.fields_json();
        let (trade_no, gun_no) = trade_and_gun(&fields);
        self.ingest.event(SessionEvent {
            pile_no: pile.to_owned(),
            gun_no,
            trade_no,
            frame_type: frame.frame_type(),
            fields: charging::redacted(fields),
            at: self.now_ms(),
        });
    }

    /// A pile's guns as the store has them, with the statuses not yet written over them.
    pub async fn gun_statuses(&self, pile_no: &str) -> Result<Vec<GunStatus>, StoreError> {
        let stored = self.store.gun_statuses(pile_no).await?;
        Ok(self.ingest.overlay_guns(pile_no, stored))
    }

    /// A charge's events, the ones not yet written included.
    pub async fn events(&self, trade_no: &str) -> Result<Vec<SessionEvent>, StoreError> {
        let stored = self.store.events(trade_no).await?;
        Ok(self.ingest.overlay_events(trade_no, stored))
    }

    /// Stores a transaction record, then (only then) confirms it.
    async fn transaction(
        &self,
        incoming: &Incoming,
        pile: &str,
        t: &pylon_proto::ykc::frames::TransactionRecord,
    ) -> Result<Vec<Reply>, BusinessError> {
        let started = Instant::now();
        let trade_no = digits(&t.trade_no);
        let confirm = |result: u8| {
            Reply::Frame(
                TransactionConfirm {
                    trade_no: t.trade_no,
                    result,
                }
                .into(),
            )
        };
        if self.store.pile(pile).await?.is_none() {
            self.metrics.record("unknown_pile");
            tracing::warn!(%pile, %trade_no, "transaction record for an unknown pile: refused");
            return Ok(vec![confirm(1)]);
        }
        let fields = charging::redacted(incoming.frame.fields_json());
        let record = TransactionRecord {
            trade_no: trade_no.clone(),
            pile_no: pile.to_owned(),
            gun_no: gun_text(&t.gun_no),
            start_time: clock::from_cp56(&t.start_time, self.offset).unwrap_or(0),
            end_time: clock::from_cp56(&t.end_time, self.offset).unwrap_or_else(|| self.now_ms()),
            total_energy: i64::from(t.total_energy.0),
            total_amount: i64::from(t.total_amount.0),
            stop_reason: t.stop_reason,
            fields,
            received_at: self.now_ms(),
        };
        let input = SettleInput {
            metered: Self::metered(t),
            card_index: self.record_card_index(t),
            tolerance: self.tolerance,
            at: self.now_ms(),
            record,
        };
        let settled = self.store.settle_record(&input).await?;
        if self.kill_after_store && settled.is_ok() {
            tracing::warn!(%trade_no, "fault injection: killed after storing, before confirming");
            // SAFETY: plain libc calls on this process.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        // A retransmission of a stored record alarms nothing again.
        if !matches!(settled, Err(Repeat::Same)) {
            self.alarms
                .record_arrived(
                    crate::alarms::RecordFacts {
                        pile,
                        gun: &input.record.gun_no,
                        trade_no: &trade_no,
                        stop_reason: t.stop_reason,
                        discrepancy: settled.as_ref().is_ok_and(|s| s.discrepancy),
                        quarantined: matches!(settled, Err(Repeat::Quarantined)),
                    },
                    self.now_ms(),
                )
                .await;
        }
        let result = match &settled {
            Ok(s) => {
                self.metrics.record("new");
                if s.discrepancy {
                    self.metrics.record("discrepancy");
                    tracing::warn!(%trade_no, %pile, "the pile's amount differs from the platform's: kept for review");
                }
                0
            }
            Err(Repeat::Same) => {
                self.metrics.record("duplicate");
                0
            }
            Err(Repeat::Quarantined) => {
                self.metrics.record("quarantined");
                tracing::error!(%trade_no, %pile, "a different record under a trade number already used: quarantined, not settled");
                1
            }
        };
        self.metrics
            .confirm_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(vec![confirm(result)])
    }

    /// The billing model as a frame of `frame_type` (0x0A reply or 0x58 set).
    pub async fn billing_model_frame(
        &self,
        pile: &str,
        model_no: u16,
        frame_type: u8,
    ) -> Result<Frame, BusinessError> {
        let mut fields = match self.store.billing_model(model_no).await? {
            Some(model) => model.fields,
            None => default_billing_model(),
        };
        if let Value::Object(map) = &mut fields {
            map.insert("pile_no".into(), Value::String(pile.to_owned()));
            map.insert(
                "billing_model_no".into(),
                Value::String(format!("{model_no:04}")),
            );
        }
        Frame::from_fields_json(frame_type, fields).map_err(|e| {
            BusinessError::Rejected(format!("billing model {model_no} is not valid: {e}"))
        })
    }

    fn wake(&self, pile: &str, frame: &Frame) {
        let key = (pile.to_owned(), frame.frame_type());
        let waiters = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(frame.clone());
        }
    }

    /// Sends `frame` to `pile` and waits up to `limit` for its reply of `reply_type`.
    pub async fn command(
        &self,
        pile: &str,
        frame: Frame,
        reply_type: u8,
        limit: Duration,
    ) -> Result<Frame, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((pile.to_owned(), reply_type))
            .or_default()
            .push(tx);
        let id = self.command_ids.fetch_add(1, Ordering::Relaxed);
        let sent = self.directory.send(pile, &frame, None, id).await;
        self.metrics.command(
            frame.name(),
            if sent.is_ok() {
                "sent"
            } else {
                "not_connected"
            },
        );
        if let Err(e) = sent {
            self.waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(pile.to_owned(), reply_type));
            return Err(e.into());
        }
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(reply)) => {
                self.metrics.command(frame.name(), "answered");
                Ok(reply)
            }
            _ => {
                self.metrics.command(frame.name(), "timeout");
                // Forget this waiter (and any other whose caller gave up).
                let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(list) = waiters.get_mut(&(pile.to_owned(), reply_type)) {
                    list.retain(|w| !w.is_closed());
                    if list.is_empty() {
                        waiters.remove(&(pile.to_owned(), reply_type));
                    }
                }
                Err(CommandError::Timeout(limit))
            }
        }
    }

    /// Closes orders whose pile did not confirm the start within [`START_CONFIRM_LIMIT`].
    /// Runs from the store, so a restart of the instance does not forget a pending start.
    pub async fn fail_unconfirmed_starts(&self) -> Result<usize, StoreError> {
        let now = self.now_ms();
        let limit = START_CONFIRM_LIMIT.as_millis() as i64;
        let mut failed = 0;
        for order in self.store.open_orders(None).await? {
            if order.state == OrderState::Starting && now - order.created_at >= limit {
                let why = "the pile did not confirm the start within 90 s";
                if self
                    .store
                    .move_order(
                        &order.trade_no,
                        &[OrderState::Starting],
                        OrderState::Failed,
                        Some(why),
                        now,
                    )
                    .await?
                {
                    self.store.release_hold(&order.trade_no, why, now).await?;
                    self.metrics.command("RemoteStart", "timeout");
                    self.alarms
                        .start_unconfirmed(&order.pile_no, &order.gun_no, &order.trade_no, now)
                        .await;
                    tracing::warn!(trade_no = %order.trade_no, "{why}: order closed");
                    failed += 1;
                }
            }
        }
        Ok(failed)
    }

    /// Remote stop (0x36) of an open order.
    pub async fn stop_charge(&self, trade_no: &str) -> Result<Order, CommandError> {
        let order = self
            .store
            .order(trade_no)
            .await?
            .ok_or_else(|| CommandError::UnknownOrder(trade_no.to_owned()))?;
        if !order.state.is_open() {
            return Err(CommandError::Conflict(format!(
                "order {trade_no} is {} already",
                order.state.as_str()
            )));
        }
        let pile_no = PileNo::parse(&order.pile_no).map_err(CommandError::Invalid)?;
        let gun: u64 = order.gun_no.parse().unwrap_or(1);
        let command = RemoteStop {
            pile_no,
            gun_no: Bcd::<1>::from_u64(gun),
        };
        let id = self.command_ids.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .directory
            .send(&order.pile_no, &command.into(), None, id)
            .await;
        self.metrics.command(
            "RemoteStop",
            if sent.is_ok() {
                "sent"
            } else {
                "not_connected"
            },
        );
        sent?;
        // 0x35's rule: the platform closes the order once it sent 0x36; the record that
        // follows finishes it (unless it already did while we were sending).
        self.store
            .move_order(
                trade_no,
                &[OrderState::Starting, OrderState::Charging],
                OrderState::Stopping,
                None,
                self.now_ms(),
            )
            .await?;
        Ok(Order {
            state: OrderState::Stopping,
            ..order
        })
    }
}

/// Model 1 when none is stored: one flat rate all day (1.0000 yuan/kWh energy, 0.4000
/// service).
pub fn default_billing_model() -> Value {
    serde_json::json!({
        "sharp_energy_rate": 1.0, "sharp_service_rate": 0.4,
        "peak_energy_rate": 1.0, "peak_service_rate": 0.4,
        "flat_energy_rate": 1.0, "flat_service_rate": 0.4,
        "valley_energy_rate": 1.0, "valley_service_rate": 0.4,
        "loss_ratio": 0,
        "period_rates": vec![2; 48],
    })
}

mod charging;
pub mod ingest;
mod presence;
mod privacy;
mod tariffs;
#[cfg(test)]
mod tests;

pub use charging::{
    card_bytes, card_number, normalise_card, password_index, password_md5, redacted, vin_from_pile,
};

impl Business {
    /// The body cipher of a pile that encrypts its frames, opened from the store.
    /// `Err`: the pile has one that cannot be opened (no card keys, or a bad seal), so its
    /// login must be refused rather than let it talk in the clear.
    pub async fn pile_cipher(
        &self,
        pile: &str,
    ) -> Result<Option<pylon_proto::ykc::PileCipher>, String> {
        match self
            .store
            .pile_cipher(pile)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(sealed) => self.open_cipher(&sealed.sealed).map(Some),
            None => Ok(None),
        }
    }

    /// A sealed pile cipher, opened.
    pub fn open_cipher(&self, sealed: &str) -> Result<pylon_proto::ykc::PileCipher, String> {
        let vault = self
            .vault
            .as_ref()
            .ok_or("the pile encrypts, and no card key file is configured to open its key")?;
        let json = vault.open(sealed).map_err(|e| e.to_string())?;
        serde_json::from_str(&json).map_err(|e| format!("a stored pile cipher is unreadable: {e}"))
    }
}
