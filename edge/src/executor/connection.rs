//! One connection from accept to close: socket -> TLS -> session, and back. A panic in
//! here costs this connection only (see [`serve`]).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Poll, Waker};

use futures_lite::FutureExt;
use pylon_proto::ykc::{CrcOrder, Frame, PileNo};

use super::Executor;
use crate::metrics::Transport;
use crate::runtime;
use crate::session::{CloseReason, LoginDecision, Session, SessionHost};
use crate::tls::{PeerIdentity, TlsError, TlsSession};
use crate::uplink::UplinkMessage;

/// Size of each executor's read buffer, shared by all its connections.
pub(super) const READ_BUFFER: usize = 64 * 1024;
/// A connection whose output buffer grows past this keeps it; smaller ones are freed.
const KEEP_BUFFER: usize = 512;
/// One TLS record at most: 16 KiB of payload plus expansion and header.
const TLS_RECORD_HOLD: usize = 18 * 1024;
/// What a TLS session may hold during the handshake: rustls's largest handshake message
/// (64 KiB) and the record around its last piece.
const TLS_HANDSHAKE_HOLD: usize = 64 * 1024 + TLS_RECORD_HOLD;

/// What the executor hands a connection to write.
pub(super) enum Outgoing {
    Frame {
        frame: Frame,
        reply_to: Option<u16>,
    },
    LoginVerdict {
        accepted: bool,
        cipher: Option<Box<pylon_proto::ykc::PileCipher>>,
    },
}

/// The part of a connection that the executor can reach: its mailbox.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) transport: Transport,
    pub(super) waker: Cell<Option<Waker>>,
    pub(super) close: Cell<Option<CloseReason>>,
    pub(super) downlink: RefCell<Vec<Outgoing>>,
    pub(super) deadline_ms: Cell<u64>,
    pub(super) deadline_reason: Cell<CloseReason>,
    /// The deadline wheel's slot it is filed under (see `deadlines`).
    pub(super) filed_slot: Cell<u64>,
    /// The socket may have unread data. Cleared by a short read: with edge-triggered
    /// readiness, data arriving after it raises a new event, so no extra read (that
    /// would only say WouldBlock) is needed before waiting.
    pub(super) readable: Cell<bool>,
    /// The peer hung up (or the socket failed). The end of stream came with the event
    /// that brought the last data, and no new event follows it: a short read must not
    /// clear `readable`, or the close would only be noticed at the next deadline.
    pub(super) hangup: Cell<bool>,
    /// TLS: who the client certificate names, once the handshake is done.
    pub(super) peer: RefCell<Option<Arc<OnceLock<PeerIdentity>>>>,
    /// When the last heartbeat arrived (0: none yet), for the gap between heartbeats.
    pub(super) last_heartbeat_ms: Cell<u64>,
}

impl Conn {
    pub(super) fn close(&self, reason: CloseReason) {
        if self.close.get().is_none() {
            self.close.set(Some(reason));
        }
        self.wake();
    }

    pub(super) fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The session host: how a session's decisions reach the executor.
struct Host<'a> {
    exec: &'a Executor,
    conn: &'a Conn,
    pile: Option<PileNo>,
}

impl Host<'_> {
    /// Whether this connection may log in as `pile` as far as transport and identity go:
    /// the TLS-only policy, the client certificate naming the pile, and the rules for
    /// taking over a live session. `Err` is the metric's result label.
    fn identity_allows(&self, pile: &PileNo) -> Result<(), &'static str> {
        let exec = self.exec;
        let tls = self.conn.transport == Transport::Tls;
        let live = exec.shared.live.load();
        if !tls && live.tls_only.contains(pile) {
            return Err("tls_required");
        }
        let identity = self.conn.identity();
        if tls && live.client_certs && !identity.names_pile(&pile.to_string()) {
            return Err("certificate_mismatch");
        }
        match exec.shared.logins.lock() {
            Ok(mut logins) => logins.check(
                *pile,
                self.conn.id,
                identity.fingerprint,
                crate::takeover::process_ms(),
            ),
            Err(_) => Err("internal"),
        }
    }
}

impl Conn {
    /// The peer's certificate identity (empty for plain TCP, or before the handshake).
    fn identity(&self) -> PeerIdentity {
        self.peer
            .borrow()
            .as_ref()
            .and_then(|p| p.get().cloned())
            .unwrap_or_default()
    }
}

impl SessionHost for Host<'_> {
    fn login_decision(&mut self, pile: &PileNo) -> LoginDecision {
        if let Err(why) = self.identity_allows(pile) {
            self.exec.metrics.login(why);
            tracing::warn!(
                executor = self.exec.id,
                session = self.conn.id,
                %pile,
                reason = why,
                "login refused (alarm: a pile number used by another connection or without its certificate)"
            );
            return LoginDecision::Reject;
        }
        if self.exec.shared.config.auth.app_login {
            self.exec.metrics.login("asked");
            return LoginDecision::Ask;
        }
        let allowed = self.exec.shared.live.load().policy.allows(pile);
        self.exec
            .metrics
            .login(if allowed { "accepted" } else { "rejected" });
        if allowed {
            LoginDecision::Accept
        } else {
            LoginDecision::Reject
        }
    }

    fn still_may_log_in(&mut self, pile: &PileNo) -> bool {
        let exec = self.exec;
        let fingerprint = self.conn.identity().fingerprint;
        // Checked and taken under one lock: no other executor's login can come between.
        let verdict = match exec.shared.logins.lock() {
            Ok(mut logins) => logins
                .recheck(*pile, self.conn.id, fingerprint)
                .map(|()| logins.logged_in(*pile, self.conn.id, fingerprint)),
            Err(_) => Err("internal"),
        };
        match verdict {
            Ok(()) => true,
            Err(why) => {
                exec.metrics.login(why);
                tracing::warn!(
                    executor = exec.id,
                    session = self.conn.id,
                    %pile,
                    reason = why,
                    "login refused after the app's verdict (alarm: the pile logged in with its certificate meanwhile)"
                );
                false
            }
        }
    }

    fn logged_in(&mut self, pile: PileNo) {
        let exec = self.exec;
        if let Ok(mut logins) = exec.shared.logins.lock() {
            logins.logged_in(pile, self.conn.id, self.conn.identity().fingerprint);
        }
        let previous = exec.piles.borrow_mut().insert(pile, self.conn.id);
        if let Some(old) = previous.filter(|&old| old != self.conn.id) {
            if let Some(conn) = exec.conns.borrow().get(&old) {
                conn.close(CloseReason::Replaced);
            }
        }
        exec.shared
            .peers
            .evict_elsewhere(exec.id, pile, self.conn.id);
        self.pile = Some(pile);
        exec.metrics.transport(self.conn.transport).sessions.inc();
        exec.uplink.online(pile, self.conn.id, exec.id);
        tracing::debug!(executor = exec.id, session = self.conn.id, %pile, "logged in");
    }

    fn alive(&mut self) {
        let timeout = self.exec.limits().heartbeat_timeout().as_millis() as u64;
        self.exec.set_deadline(
            self.conn,
            self.exec.now_ms() + timeout,
            CloseReason::HeartbeatTimeout,
        );
    }

    fn heartbeat(&mut self) {
        self.exec.metrics.all.heartbeats.inc();
        let now = self.exec.now_ms();
        let last = self.conn.last_heartbeat_ms.replace(now);
        if last != 0 {
            let gap = now.saturating_sub(last) as f64 / 1000.0;
            self.exec.metrics.heartbeat_gap.observe(gap);
        }
    }

    fn uplink(&mut self, pile: PileNo, seq: u16, frame: Frame) {
        self.exec.uplink.send(UplinkMessage {
            edge_id: self.exec.shared.edge_id.clone(),
            executor: self.exec.id,
            session_id: self.conn.id,
            pile,
            seq,
            frame,
        });
    }

    fn frame_in(&mut self, frame_type: u8, crc: CrcOrder) {
        self.exec.metrics.frame_in(frame_type);
        if crc == CrcOrder::Swapped {
            self.exec.metrics.all.crc_swapped.inc();
        }
    }

    fn frame_out(&mut self, frame_type: u8) {
        self.exec.metrics.frame_out(frame_type);
    }

    fn decode_error(&mut self, kind: &'static str) {
        self.exec.metrics.decode_error(kind);
    }

    fn now_ms(&self) -> u64 {
        self.exec.now_ms()
    }
}

enum Wake {
    Read(Result<(), CloseReason>),
    Downlink,
    Close(CloseReason),
}

/// Serves one connection from accept to close.
pub(super) async fn serve(exec: Rc<Executor>, stream: TcpStream, transport: Transport) {
    let limits = exec.limits();
    let id = exec.shared.session_ids.fetch_add(1, Ordering::Relaxed);
    let now = exec.now_ms();
    let (first_deadline, first_reason) = match transport {
        Transport::Tls => (
            limits.tls_handshake_timeout_secs,
            CloseReason::TlsHandshakeTimeout,
        ),
        Transport::Tcp => (limits.login_timeout_secs, CloseReason::LoginTimeout),
    };
    let first_deadline_ms = now + first_deadline * 1000;
    let conn = Rc::new(Conn {
        id,
        transport,
        waker: Cell::new(None),
        close: Cell::new(None),
        downlink: RefCell::new(Vec::new()),
        deadline_ms: Cell::new(first_deadline_ms),
        deadline_reason: Cell::new(first_reason),
        filed_slot: Cell::new(u64::MAX),
        readable: Cell::new(true),
        hangup: Cell::new(false),
        last_heartbeat_ms: Cell::new(0),
        peer: RefCell::new(None),
    });
    exec.conns.borrow_mut().insert(id, conn.clone());
    exec.set_deadline(&conn, first_deadline_ms, first_reason);
    if let Err(e) = exec.poller.register(stream.as_raw_fd(), id) {
        tracing::warn!(executor = exec.id, "cannot watch a connection: {e}");
        conn.close(CloseReason::IoError);
    }
    let counters = exec.metrics.transport(transport);
    counters.connections.inc();
    if transport == Transport::Tcp {
        exec.metrics.handshake(transport, "ok");
    }

    let mut host = Host {
        exec: &exec,
        conn: &conn,
        pile: None,
    };
    // A panic while serving this connection is a bug; it must cost this connection only.
    // Everything `drive` touches of the executor is released by unwinding (RefCell
    // guards), and the bookkeeping below runs either way, so no session is left behind.
    let served = AssertUnwindSafe(drive(&exec, &conn, &mut host, stream, transport))
        .catch_unwind()
        .await;
    let reason = served.unwrap_or_else(|panic| {
        tracing::error!(
            executor = exec.id,
            session = id,
            pile = host.pile.as_ref().map(tracing::field::display),
            "serving a connection panicked: {}; closed it",
            runtime::panic_message(&*panic)
        );
        CloseReason::Panic
    });

    exec.conns.borrow_mut().remove(&id);
    if let Some(pile) = host.pile {
        let mut piles = exec.piles.borrow_mut();
        if piles.get(&pile) == Some(&id) {
            piles.remove(&pile);
        }
        counters.sessions.dec();
        exec.uplink.offline(pile, id, reason.as_str());
        if let Ok(mut logins) = exec.shared.logins.lock() {
            logins.closed(pile, id);
        }
    }
    counters.connections.dec();
    exec.metrics.close(reason.as_str());
    tracing::debug!(
        executor = exec.id,
        session = id,
        pile = host.pile.as_ref().map(tracing::field::display),
        reason = reason.as_str(),
        "closed"
    );
}

async fn drive(
    exec: &Executor,
    conn: &Conn,
    host: &mut Host<'_>,
    stream: TcpStream,
    transport: Transport,
) -> CloseReason {
    let limits = exec.limits();
    let counters = exec.metrics.transport(transport);
    let tls_config = match transport {
        Transport::Tls => exec.shared.live.load().tls.clone(),
        Transport::Tcp => None,
    };
    let mut tls = match (transport, tls_config) {
        (Transport::Tls, Some(cfg)) => match TlsSession::new(cfg) {
            Ok(t) => {
                conn.peer.replace(Some(t.peer()));
                Some(t)
            }
            Err(e) => return tls_failed(exec, &e, true),
        },
        _ => None,
    };
    let mut session = Session::new(exec.rate.get(), exec.now_ms());
    // Wire bytes waiting to be written, and (TLS) plaintext waiting to be encrypted.
    let mut out: Vec<u8> = Vec::new();
    let mut plain: Vec<u8> = Vec::new();

    loop {
        let wake = poll_fn(|cx| {
            if let Some(reason) = conn.close.take() {
                return Poll::Ready(Wake::Close(reason));
            }
            if !conn.downlink.borrow().is_empty() {
                return Poll::Ready(Wake::Downlink);
            }
            conn.waker.set(Some(cx.waker().clone()));
            if !conn.readable.get() {
                return Poll::Pending;
            }
            // The app service is behind: leave the bytes in the socket (TCP backpressure)
            // rather than buffer frames without bound.
            if exec.uplink.poll_ready(cx).is_pending() {
                return Poll::Pending;
            }
            let mut buffer = exec.read_buffer.borrow_mut();
            match nonblocking(|| (&stream).read(&mut buffer[..])) {
                Poll::Pending => {
                    conn.readable.set(false);
                    Poll::Pending
                }
                Poll::Ready(Ok(0)) => Poll::Ready(Wake::Close(CloseReason::PeerClosed)),
                Poll::Ready(Err(_)) => Poll::Ready(Wake::Close(CloseReason::IoError)),
                Poll::Ready(Ok(n)) => {
                    if n < buffer.len() && !conn.hangup.get() {
                        conn.readable.set(false);
                    }
                    counters.bytes_in.inc_by(n as u64);
                    let data = &mut buffer[..n];
                    let result = match tls.as_mut() {
                        None => session.on_bytes(data, host, &mut out),
                        Some(tls) => {
                            receive_tls(tls, data, &mut session, host, &mut out, &mut plain, exec)
                        }
                    };
                    Poll::Ready(Wake::Read(result))
                }
            }
        })
        .await;

        let closing = match wake {
            Wake::Close(reason) => return reason,
            Wake::Read(Ok(())) => None,
            Wake::Read(Err(reason)) => Some(reason),
            Wake::Downlink => {
                let outgoing = std::mem::take(&mut *conn.downlink.borrow_mut());
                let target = if tls.is_some() { &mut plain } else { &mut out };
                let mut verdict = Ok(());
                for item in outgoing {
                    match item {
                        Outgoing::Frame { frame, reply_to } => {
                            if let Err(e) = session.encode_downlink(&frame, reply_to, host, target)
                            {
                                tracing::warn!(session = conn.id, "downlink frame not sent: {e}");
                            }
                        }
                        Outgoing::LoginVerdict { accepted, cipher } => {
                            verdict = verdict.and(session.login_verdict(
                                accepted,
                                cipher.map(|c| *c),
                                host,
                                target,
                            ));
                        }
                    }
                }
                if let Some(tls) = tls.as_mut() {
                    if let Err(e) = tls.send(&plain, &mut out) {
                        return tls_failed(exec, &e, false);
                    }
                    plain.clear();
                }
                verdict.err()
            }
        };

        if out.len() > limits.max_buffered_bytes {
            return CloseReason::BufferLimit;
        }
        if !out.is_empty() {
            if let Err(reason) = write_all(&stream, &out, conn).await {
                return closing.unwrap_or(reason);
            }
            counters.bytes_out.inc_by(out.len() as u64);
            out.clear();
        }
        if out.capacity() > KEEP_BUFFER {
            out = Vec::new();
        }
        if plain.capacity() > KEEP_BUFFER {
            plain = Vec::new();
        }
        if let Some(reason) = closing {
            return reason;
        }
    }
}

/// Feeds bytes through TLS into the session; encrypts what the session answered.
fn receive_tls(
    tls: &mut TlsSession,
    data: &mut [u8],
    session: &mut Session,
    host: &mut Host<'_>,
    out: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    exec: &Executor,
) -> Result<(), CloseReason> {
    let was_handshaking = tls.is_handshaking();
    let mut result = Ok(());
    let received = tls.receive(data, out, &mut |bytes| {
        if result.is_ok() {
            result = session.on_bytes(bytes, host, plain);
        }
    });
    let received = received.map_err(|e| tls_failed(exec, &e, was_handshaking))?;
    if was_handshaking && !tls.is_handshaking() {
        exec.metrics.handshake(Transport::Tls, "ok");
        if session.pile().is_none() {
            let deadline = exec.now_ms() + exec.limits().login_timeout_secs * 1000;
            exec.set_deadline(host.conn, deadline, CloseReason::LoginTimeout);
        }
    }
    // Held TLS bytes: after the handshake, at most one record and a frame; during it,
    // handshake messages rustls reassembles across records (up to 64 KiB, e.g. a long
    // client-certificate chain).
    let limit = if tls.is_handshaking() {
        TLS_HANDSHAKE_HOLD
    } else {
        pylon_proto::ykc::frame::MAX_FRAME + TLS_RECORD_HOLD
    };
    if tls.buffered() > limit {
        return Err(CloseReason::BufferLimit);
    }
    if !plain.is_empty() {
        tls.send(plain, out)
            .map_err(|e| tls_failed(exec, &e, false))?;
        plain.clear();
    }
    if received.peer_closed {
        return Err(result.err().unwrap_or(CloseReason::PeerClosed));
    }
    result
}

/// Counts a failed TLS session (as a failed handshake, or a decode error after it) and
/// gives the close reason.
fn tls_failed(exec: &Executor, e: &TlsError, handshaking: bool) -> CloseReason {
    if handshaking {
        exec.metrics.handshake(Transport::Tls, e.kind());
    } else {
        exec.metrics.decode_error(e.kind());
    }
    exec.metrics.tls_error(e.detail());
    tracing::debug!(executor = exec.id, "TLS session failed: {e}");
    CloseReason::TlsError
}

/// Writes all of `data`, giving up when the connection is told to close meanwhile.
async fn write_all(stream: &TcpStream, data: &[u8], conn: &Conn) -> Result<(), CloseReason> {
    let mut written = 0;
    while written < data.len() {
        let n = poll_fn(|cx| {
            if let Some(reason) = conn.close.take() {
                return Poll::Ready(Err(reason));
            }
            conn.waker.set(Some(cx.waker().clone()));
            match nonblocking(|| (&*stream).write(&data[written..])) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Err(CloseReason::IoError)),
                Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
            }
        })
        .await?;
        written += n;
    }
    Ok(())
}

/// One non-blocking socket call: WouldBlock means "wait for the next readiness edge"
/// (the caller has registered its waker already).
fn nonblocking(mut call: impl FnMut() -> io::Result<usize>) -> Poll<io::Result<usize>> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            other => return Poll::Ready(other),
        }
    }
}
