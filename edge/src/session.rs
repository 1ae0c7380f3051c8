//! The YKC link state machine of one connection: login first, heartbeats answered here,
//! business frames handed to the host. Pure logic: bytes in, bytes out, no I/O.

use pylon_proto::ykc::frames::{HeartbeatReply, LoginReply};
use pylon_proto::ykc::PileCipher;
use pylon_proto::ykc::{self, CrcOrder, Frame, FrameSplitter, PileNo, RawFrame, SplitEvent};

/// Why a connection was closed (the `reason` label of `pylon_edge_closes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    PeerClosed,
    IoError,
    TlsHandshakeTimeout,
    /// The TLS session failed (the detail is counted in `pylon_edge_tls_errors_total`).
    TlsError,
    LoginTimeout,
    HeartbeatTimeout,
    NotLoggedIn,
    LoginRejected,
    /// No app instance could judge the login (none owns the pile's shard, or it did not
    /// answer in time): closed without an answer, so the charger simply retries.
    LoginUndecided,
    PileMismatch,
    Replaced,
    FrameRateExceeded,
    BufferLimit,
    Decode(&'static str),
    WrongDirection,
    ExecutorFull,
    Drain,
    /// An operator drained the edge: the charger should reconnect elsewhere.
    Moved,
    Shutdown,
    /// Serving this connection panicked (a bug): it was closed, nothing else touched.
    Panic,
}

impl CloseReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::IoError => "io_error",
            CloseReason::TlsHandshakeTimeout => "tls_handshake_timeout",
            CloseReason::TlsError => "tls_error",
            CloseReason::LoginTimeout => "login_timeout",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::NotLoggedIn => "not_logged_in",
            CloseReason::LoginRejected => "login_rejected",
            CloseReason::LoginUndecided => "login_undecided",
            CloseReason::PileMismatch => "pile_mismatch",
            CloseReason::Replaced => "replaced",
            CloseReason::FrameRateExceeded => "frame_rate_exceeded",
            CloseReason::BufferLimit => "buffer_limit",
            CloseReason::Decode(kind) => kind,
            CloseReason::WrongDirection => "wrong_direction",
            CloseReason::ExecutorFull => "executor_full",
            CloseReason::Drain => "drain",
            CloseReason::Moved => "moved",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Panic => "panic",
        }
    }
}

/// Who decides whether a pile may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginDecision {
    Accept,
    Reject,
    /// Ask the app service; see [`Session::login_verdict`].
    Ask,
}

/// What the session needs from the executor that runs it.
pub trait SessionHost {
    /// Whether `pile` may log in, or whether the app service must decide (the login frame
    /// then goes up like a business frame and the verdict comes back later).
    fn login_decision(&mut self, pile: &PileNo) -> LoginDecision;
    /// Whether a login the app service accepted may still go ahead: the live sessions may
    /// have changed while it decided (another connection logged in with the pile's
    /// certificate).
    fn still_may_log_in(&mut self, pile: &PileNo) -> bool;
    /// The pile logged in on this connection (any older session of it must go).
    fn logged_in(&mut self, pile: PileNo);
    /// A valid frame arrived; the link is alive.
    fn alive(&mut self);
    fn heartbeat(&mut self);
    /// A business frame for the app services.
    fn uplink(&mut self, pile: PileNo, seq: u16, frame: Frame);
    fn frame_in(&mut self, frame_type: u8, crc: CrcOrder);
    fn frame_out(&mut self, frame_type: u8);
    fn decode_error(&mut self, kind: &'static str);
    /// Milliseconds on a monotonic clock.
    fn now_ms(&self) -> u64;
}

/// A token bucket over frames.
#[derive(Debug)]
struct FrameBudget {
    tokens: u32,
    last_ms: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_sec: u32,
    pub burst: u32,
}

impl FrameBudget {
    fn take(&mut self, now_ms: u64, limit: RateLimit) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        let refill = elapsed * u64::from(limit.per_sec) / 1000;
        if refill > 0 {
            self.tokens = (u64::from(self.tokens) + refill).min(u64::from(limit.burst)) as u32;
            self.last_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The link-level state of one charger connection.
#[derive(Debug)]
pub struct Session {
    splitter: FrameSplitter,
    link: Link,
}

#[derive(Debug)]
struct Link {
    pile: Option<PileNo>,
    /// A login waiting for the app service's verdict: the pile and the frame's sequence.
    pending_login: Option<(PileNo, u16)>,
    budget: FrameBudget,
    limit: RateLimit,
    next_seq: u16,
    /// The pile encrypts its frames (YKC flag 0x01) with this, from its login on; plain
    /// frames from it are refused.
    cipher: Option<PileCipher>,
}

impl Session {
    pub fn new(limit: RateLimit, now_ms: u64) -> Self {
        Session {
            splitter: FrameSplitter::new(),
            link: Link {
                pile: None,
                pending_login: None,
                budget: FrameBudget {
                    tokens: limit.burst,
                    last_ms: now_ms,
                },
                limit,
                next_seq: 0,
                cipher: None,
            },
        }
    }

    pub fn pile(&self) -> Option<PileNo> {
        self.link.pile
    }

    /// Bytes held back for an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.splitter.buffered()
    }

    /// Handles plaintext bytes from the charger; replies are appended to `out`. An error
    /// means the connection must be closed (after writing what is in `out`).
    pub fn on_bytes(
        &mut self,
        data: &[u8],
        host: &mut dyn SessionHost,
        out: &mut Vec<u8>,
    ) -> Result<(), CloseReason> {
        let link = &mut self.link;
        let mut result = Ok(());
        self.splitter.feed(data, |event| {
            result = match event {
                SplitEvent::Frame(raw) => link.on_frame(&raw, host, out),
                SplitEvent::Skipped { error, .. } => {
                    host.decode_error(error.kind());
                    Err(CloseReason::Decode(error.kind()))
                }
            };
            result.is_ok()
        });
        result
    }

    /// Appends a frame for the pile: a reply echoes `reply_to` (the request's sequence
    /// number); a platform-initiated frame is numbered by this session's own sequence.
    pub fn encode_downlink(
        &mut self,
        frame: &Frame,
        reply_to: Option<u16>,
        host: &mut dyn SessionHost,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let seq = reply_to.unwrap_or_else(|| {
            let seq = self.link.next_seq;
            self.link.next_seq = seq.wrapping_add(1);
            seq
        });
        ykc::encode_into_with(out, seq, frame, self.link.cipher.as_ref())
            .map_err(|e| e.to_string())?;
        host.frame_out(frame.frame_type());
        Ok(())
    }
}

impl Session {
    /// The app service's verdict on the pending login: answers 0x02, and either the pile
    /// is logged in or the connection must close.
    pub fn login_verdict(
        &mut self,
        accepted: bool,
        cipher: Option<PileCipher>,
        host: &mut dyn SessionHost,
        out: &mut Vec<u8>,
    ) -> Result<(), CloseReason> {
        let Some((pile, seq)) = self.link.pending_login.take() else {
            // A late or repeated verdict: the login was settled already.
            return Ok(());
        };
        let accepted = accepted && host.still_may_log_in(&pile);
        // The 0x02 answers a plain login in plain; everything after is encrypted.
        self.link.settle_login(pile, seq, accepted, host, out)?;
        self.link.cipher = cipher;
        Ok(())
    }

    pub fn login_pending(&self) -> bool {
        self.link.pending_login.is_some()
    }
}

impl Link {
    fn settle_login(
        &mut self,
        pile: PileNo,
        seq: u16,
        accepted: bool,
        host: &mut dyn SessionHost,
        out: &mut Vec<u8>,
    ) -> Result<(), CloseReason> {
        reply(
            out,
            seq,
            LoginReply {
                pile_no: pile,
                result: u8::from(!accepted),
            }
            .into(),
            None,
            host,
        );
        if !accepted {
            return Err(CloseReason::LoginRejected);
        }
        self.pile = Some(pile);
        host.logged_in(pile);
        host.alive();
        Ok(())
    }

    fn on_frame(
        &mut self,
        raw: &RawFrame<'_>,
        host: &mut dyn SessionHost,
        out: &mut Vec<u8>,
    ) -> Result<(), CloseReason> {
        host.frame_in(raw.frame_type, raw.crc_order);
        if !self.budget.take(host.now_ms(), self.limit) {
            return Err(CloseReason::FrameRateExceeded);
        }
        let frame = ykc::decode_with(raw, self.cipher.as_ref()).map_err(|e| {
            host.decode_error(e.kind());
            CloseReason::Decode(e.kind())
        })?;
        // Even codes are platform -> charger (the errata's rule); decode accepted the type.
        if raw.frame_type.is_multiple_of(2) {
            host.decode_error("wrong_direction");
            return Err(CloseReason::WrongDirection);
        }
        match (self.pile, frame) {
            (None, Frame::Login(login)) => {
                if let Some((pending, _)) = self.pending_login {
                    // A repeated login while the app decides: still waiting.
                    return if pending == login.pile_no {
                        Ok(())
                    } else {
                        Err(CloseReason::PileMismatch)
                    };
                }
                match host.login_decision(&login.pile_no) {
                    LoginDecision::Accept => {
                        self.settle_login(login.pile_no, raw.seq, true, host, out)
                    }
                    LoginDecision::Reject => {
                        self.settle_login(login.pile_no, raw.seq, false, host, out)
                    }
                    LoginDecision::Ask => {
                        self.pending_login = Some((login.pile_no, raw.seq));
                        host.uplink(login.pile_no, raw.seq, Frame::Login(login));
                        Ok(())
                    }
                }
            }
            (None, _) => Err(CloseReason::NotLoggedIn),
            (Some(pile), Frame::Login(login)) => {
                if login.pile_no != pile {
                    return Err(CloseReason::PileMismatch);
                }
                reply(
                    out,
                    raw.seq,
                    LoginReply {
                        pile_no: pile,
                        result: 0,
                    }
                    .into(),
                    self.cipher.as_ref(),
                    host,
                );
                host.alive();
                Ok(())
            }
            (Some(pile), Frame::Heartbeat(hb)) => {
                if hb.pile_no != pile {
                    return Err(CloseReason::PileMismatch);
                }
                let answer = HeartbeatReply {
                    pile_no: pile,
                    gun_no: hb.gun_no,
                    reply: 0,
                };
                reply(out, raw.seq, answer.into(), self.cipher.as_ref(), host);
                host.heartbeat();
                host.alive();
                Ok(())
            }
            (Some(pile), frame) => {
                if frame.pile_no().is_some_and(|p| p != pile) {
                    return Err(CloseReason::PileMismatch);
                }
                host.alive();
                host.uplink(pile, raw.seq, frame);
                Ok(())
            }
        }
    }
}

fn reply(
    out: &mut Vec<u8>,
    seq: u16,
    frame: Frame,
    cipher: Option<&PileCipher>,
    host: &mut dyn SessionHost,
) {
    // Replies are built from values that were just decoded, so encoding cannot fail;
    // should it ever, the charger simply gets no reply and the error is counted.
    match ykc::encode_into_with(out, seq, &frame, cipher) {
        Ok(()) => host.frame_out(frame.frame_type()),
        Err(_) => host.decode_error("reply_encode"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_proto::ykc::frame::{parse, Parsed};
    use pylon_proto::ykc::frames::{Heartbeat, Login, RealtimeData};

    #[derive(Default)]
    struct Host {
        logins: Vec<PileNo>,
        uplinks: Vec<(PileNo, u16, u8)>,
        heartbeats: usize,
        errors: Vec<&'static str>,
        now: u64,
        deny: bool,
        ask: bool,
        /// Refuse at the verdict (the live sessions changed while the app decided).
        deny_late: bool,
    }

    impl SessionHost for Host {
        fn login_decision(&mut self, _: &PileNo) -> LoginDecision {
            match (self.ask, self.deny) {
                (true, _) => LoginDecision::Ask,
                (false, true) => LoginDecision::Reject,
                (false, false) => LoginDecision::Accept,
            }
        }
        fn still_may_log_in(&mut self, _: &PileNo) -> bool {
            !self.deny_late
        }
        fn logged_in(&mut self, pile: PileNo) {
            self.logins.push(pile);
        }
        fn alive(&mut self) {}
        fn heartbeat(&mut self) {
            self.heartbeats += 1;
        }
        fn uplink(&mut self, pile: PileNo, seq: u16, frame: Frame) {
            self.uplinks.push((pile, seq, frame.frame_type()));
        }
        fn frame_in(&mut self, _: u8, _: CrcOrder) {}
        fn frame_out(&mut self, _: u8) {}
        fn decode_error(&mut self, kind: &'static str) {
            self.errors.push(kind);
        }
        fn now_ms(&self) -> u64 {
            self.now
        }
    }

    const LIMIT: RateLimit = RateLimit {
        per_sec: 10,
        burst: 5,
    };

    fn pile() -> PileNo {
        PileNo::parse("32010600019236").unwrap()
    }

    fn wire(seq: u16, frame: Frame) -> Vec<u8> {
        ykc::encode(seq, &frame).unwrap()
    }

    fn login() -> Vec<u8> {
        wire(
            0,
            Login {
                pile_no: pile(),
                ..Default::default()
            }
            .into(),
        )
    }

    fn replies(out: &[u8]) -> Vec<(u16, Frame)> {
        let mut pos = 0;
        let mut frames = Vec::new();
        while pos < out.len() {
            let Ok(Parsed::Frame(raw, used)) = parse(&out[pos..]) else {
                panic!("bad reply")
            };
            frames.push((raw.seq, ykc::decode(&raw).unwrap()));
            pos += used;
        }
        frames
    }

    #[test]
    fn login_then_heartbeat_is_answered_locally() {
        let mut host = Host::default();
        let mut s = Session::new(LIMIT, 0);
        let mut out = Vec::new();
        s.on_bytes(&login(), &mut host, &mut out).unwrap();
        let hb = wire(
            9,
            Heartbeat {
                pile_no: pile(),
                ..Default::default()
            }
            .into(),
        );
        s.on_bytes(&hb, &mut host, &mut out).unwrap();
        let r = replies(&out);
        assert!(matches!(&r[0], (0, Frame::LoginReply(l)) if l.result == 0));
        assert!(matches!(&r[1], (9, Frame::HeartbeatReply(h)) if h.pile_no == pile()));
        assert_eq!(host.logins, vec![pile()]);
        assert_eq!(host.heartbeats, 1);
    }

    #[test]
    fn the_app_decides_a_login_when_asked() {
        let mut host = Host {
            ask: true,
            ..Default::default()
        };
        let mut s = Session::new(LIMIT, 0);
        let mut out = Vec::new();
        s.on_bytes(&login(), &mut host, &mut out).unwrap();
        // No answer yet: the login went up, the session waits.
        assert!(out.is_empty() && s.login_pending() && s.pile().is_none());
        assert_eq!(host.uplinks, vec![(pile(), 0, 0x01)]);
        // A retransmitted login while waiting changes nothing.
        s.on_bytes(&login(), &mut host, &mut out).unwrap();
        assert_eq!(host.uplinks.len(), 1);
        s.login_verdict(true, None, &mut host, &mut out).unwrap();
        assert!(matches!(&replies(&out)[0], (0, Frame::LoginReply(l)) if l.result == 0));
        assert_eq!(s.pile(), Some(pile()));
        assert_eq!(host.logins, vec![pile()]);
        // A late second verdict is ignored.
        assert_eq!(s.login_verdict(false, None, &mut host, &mut out), Ok(()));

        let mut refused = Session::new(LIMIT, 0);
        let mut out = Vec::new();
        refused.on_bytes(&login(), &mut host, &mut out).unwrap();
        assert_eq!(
            refused.login_verdict(false, None, &mut host, &mut out),
            Err(CloseReason::LoginRejected)
        );
        assert!(matches!(&replies(&out)[0], (0, Frame::LoginReply(l)) if l.result == 1));

        // Accepted by the app, but the pile logged in with its certificate meanwhile.
        let mut late = Host {
            ask: true,
            deny_late: true,
            ..Default::default()
        };
        let mut s = Session::new(LIMIT, 0);
        let mut out = Vec::new();
        s.on_bytes(&login(), &mut late, &mut out).unwrap();
        assert_eq!(
            s.login_verdict(true, None, &mut late, &mut out),
            Err(CloseReason::LoginRejected)
        );
        assert!(matches!(&replies(&out)[0], (0, Frame::LoginReply(l)) if l.result == 1));
        assert!(late.logins.is_empty());
    }

    #[test]
    fn a_pile_with_a_cipher_is_answered_encrypted_and_refused_in_plain() {
        let mut host = Host {
            ask: true,
            ..Default::default()
        };
        let mut s = Session::new(LIMIT, 0);
        let mut out = Vec::new();
        s.on_bytes(&login(), &mut host, &mut out).unwrap();
        let cipher = PileCipher::ecb([7; 24]);
        s.login_verdict(true, Some(cipher.clone()), &mut host, &mut out)
            .unwrap();
        // The 0x02 answers the plain login in plain.
        assert!(matches!(&replies(&out)[0], (0, Frame::LoginReply(l)) if l.result == 0));
        out.clear();
        let heartbeat: Frame = Heartbeat {
            pile_no: pile(),
            ..Default::default()
        }
        .into();
        let mut sealed = Vec::new();
        ykc::encode_into_with(&mut sealed, 5, &heartbeat, Some(&cipher)).unwrap();
        s.on_bytes(&sealed, &mut host, &mut out).unwrap();
        let Ok(Parsed::Frame(raw, _)) = parse(&out) else {
            panic!("no reply")
        };
        assert_eq!(raw.encryption, ykc::frame::TRIPLE_DES);
        assert!(matches!(
            ykc::decode_with(&raw, Some(&cipher)),
            Ok(Frame::HeartbeatReply(_))
        ));
        // Downlinks are encrypted too.
        out.clear();
        s.encode_downlink(&heartbeat, None, &mut host, &mut out)
            .unwrap();
        assert!(matches!(parse(&out), Ok(Parsed::Frame(r, _)) if r.encryption == 1));
        // A plain frame from it closes the connection.
        assert_eq!(
            s.on_bytes(&wire(6, heartbeat), &mut host, &mut Vec::new()),
            Err(CloseReason::Decode("unencrypted"))
        );
    }

    #[test]
    fn business_before_login_closes() {
        let mut s = Session::new(LIMIT, 0);
        let rt = wire(
            1,
            RealtimeData {
                pile_no: pile(),
                ..Default::default()
            }
            .into(),
        );
        assert_eq!(
            s.on_bytes(&rt, &mut Host::default(), &mut Vec::new()),
            Err(CloseReason::NotLoggedIn)
        );
    }

    #[test]
    fn business_frames_go_to_the_uplink() {
        let mut host = Host::default();
        let mut s = Session::new(LIMIT, 0);
        s.on_bytes(&login(), &mut host, &mut Vec::new()).unwrap();
        let rt = wire(
            3,
            RealtimeData {
                pile_no: pile(),
                ..Default::default()
            }
            .into(),
        );
        s.on_bytes(&rt, &mut host, &mut Vec::new()).unwrap();
        assert_eq!(host.uplinks, vec![(pile(), 3, 0x13)]);
    }

    #[test]
    fn rejected_login_is_answered_then_closed() {
        let mut host = Host {
            deny: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        let r = Session::new(LIMIT, 0).on_bytes(&login(), &mut host, &mut out);
        assert_eq!(r, Err(CloseReason::LoginRejected));
        assert!(matches!(&replies(&out)[0], (0, Frame::LoginReply(l)) if l.result == 1));
    }

    #[test]
    fn garbage_and_bad_crc_close_with_a_counted_kind() {
        let mut host = Host::default();
        let r = Session::new(LIMIT, 0).on_bytes(b"GET / HTTP/1.1\r\n", &mut host, &mut Vec::new());
        assert_eq!(r, Err(CloseReason::Decode("bad_start")));
        let mut bad = login();
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        let r = Session::new(LIMIT, 0).on_bytes(&bad, &mut host, &mut Vec::new());
        assert_eq!(r, Err(CloseReason::Decode("bad_crc")));
        assert_eq!(host.errors, vec!["bad_start", "bad_crc"]);
    }

    #[test]
    fn frame_flood_is_cut_off() {
        let mut host = Host::default();
        let mut s = Session::new(LIMIT, 0);
        s.on_bytes(&login(), &mut host, &mut Vec::new()).unwrap();
        let hb = wire(
            1,
            Heartbeat {
                pile_no: pile(),
                ..Default::default()
            }
            .into(),
        );
        let flood: Vec<u8> = hb.iter().copied().cycle().take(hb.len() * 20).collect();
        assert_eq!(
            s.on_bytes(&flood, &mut host, &mut Vec::new()),
            Err(CloseReason::FrameRateExceeded)
        );
        // After a pause the budget refills.
        let mut s = Session::new(LIMIT, 0);
        s.on_bytes(&login(), &mut host, &mut Vec::new()).unwrap();
        for i in 0..30 {
            host.now = i * 200;
            s.on_bytes(&hb, &mut host, &mut Vec::new()).unwrap();
        }
    }

    #[test]
    fn platform_frames_from_a_charger_are_refused() {
        let mut host = Host::default();
        let mut s = Session::new(LIMIT, 0);
        s.on_bytes(&login(), &mut host, &mut Vec::new()).unwrap();
        let f = wire(
            1,
            HeartbeatReply {
                pile_no: pile(),
                ..Default::default()
            }
            .into(),
        );
        assert_eq!(
            s.on_bytes(&f, &mut host, &mut Vec::new()),
            Err(CloseReason::WrongDirection)
        );
    }
}
