//! One simulated charger: connects over TCP or TLS, logs in, sends heartbeats and
//! real-time data at the spec's cadence, and measures what it sees.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pylon_proto::ykc::frames::{Heartbeat, Login, RealtimeData};
use pylon_proto::ykc::{self, Ascii, Frame, FrameSplitter, PileNo, SplitEvent};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A connection to an edge, plain or TLS.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How to reach the edge.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// TLS client config and the name to verify; None for plain TCP.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl Target {
    /// This target with a TLS session store of its own: one charger's, as on a device.
    /// A ticket is then only ever resumed by the charger it was issued to (with client
    /// certificates, a ticket stands for the charger's identity).
    pub fn with_own_sessions(&self) -> Target {
        Target {
            addr: self.addr,
            tls: self.tls.as_ref().map(|(config, name)| {
                let mut own = (**config).clone();
                own.resumption = rustls::client::Resumption::store(Arc::new(
                    rustls::client::ClientSessionMemoryCache::new(1),
                ));
                (Arc::new(own), name.clone())
            }),
        }
    }
}

impl Stream {
    /// Whether the TLS handshake resumed an earlier session (false for plain TCP).
    pub fn resumed(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
            Stream::Tls(s) => {
                s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
            }
        }
    }
}

/// Opens a connection from `source` (any port) to the target, with TLS when configured.
pub async fn connect(target: &Target, source: Option<IpAddr>) -> std::io::Result<Stream> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        bind_address_no_port(&socket);
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    match &target.tls {
        None => Ok(Stream::Tcp(tcp)),
        Some((config, name)) => {
            let tls = TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await?;
            Ok(Stream::Tls(Box::new(tls)))
        }
    }
}

/// Lets many sockets bound to one source address share ports across destinations.
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // IP_BIND_ADDRESS_NO_PORT = 24; best effort, harmless when unsupported.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            24,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A charger's conversation over one connection, frame by frame (for tests and the fleet).
pub struct ChargerConn {
    pub stream: Stream,
    splitter: FrameSplitter,
    ready: std::collections::VecDeque<(u16, Frame)>,
    pub next_seq: u16,
    /// Set once a pile that encrypts has logged in (see [`ChargerConn::encrypt_with`]).
    cipher: Option<ykc::PileCipher>,
}

/// What went wrong on a charger connection.
#[derive(Debug, thiserror::Error)]
pub enum ChargerError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the edge")]
    Closed,
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("login refused")]
    LoginRefused,
    #[error("bad frame from the edge: {0}")]
    Protocol(String),
    #[error("dispatch: {0}")]
    Dispatch(String),
    /// A misbehaving charger left on purpose ([`crate::trouble`]).
    #[error("left on purpose")]
    Planned,
    /// Told to reconnect (a reconnect wave: SIGUSR1 to `pylon-fleet`).
    #[error("reconnecting on request")]
    Reconnect,
}

impl ChargerError {
    pub fn kind(&self) -> &'static str {
        match self {
            ChargerError::Connect(_) => "connect",
            ChargerError::Io(_) => "io",
            ChargerError::Closed => "closed",
            ChargerError::Timeout(_) => "timeout",
            ChargerError::LoginRefused => "login_refused",
            ChargerError::Protocol(_) => "protocol",
            ChargerError::Planned => "planned",
            ChargerError::Reconnect => "reconnect",
            ChargerError::Dispatch(_) => "dispatch",
        }
    }
}

impl ChargerConn {
    pub async fn connect(target: &Target, source: Option<IpAddr>) -> Result<Self, ChargerError> {
        Ok(ChargerConn::new(
            connect(target, source)
                .await
                .map_err(ChargerError::Connect)?,
        ))
    }

    pub fn new(stream: Stream) -> Self {
        ChargerConn {
            stream,
            splitter: FrameSplitter::new(),
            ready: Default::default(),
            next_seq: 0,
            cipher: None,
        }
    }

    /// From now on, frames both ways are encrypted with `cipher` (YKC flag 0x01), as a
    /// pile set up for encryption does once logged in.
    pub fn encrypt_with(&mut self, cipher: Option<ykc::PileCipher>) {
        self.cipher = cipher;
    }

    fn encode(&self, seq: u16, frame: &Frame) -> Result<Vec<u8>, ChargerError> {
        let mut bytes = Vec::new();
        ykc::encode_into_with(&mut bytes, seq, frame, self.cipher.as_ref())
            .map_err(|e| ChargerError::Protocol(e.to_string()))?;
        Ok(bytes)
    }

    /// Sends a frame with the next sequence number; returns that number.
    pub async fn send(&mut self, frame: &Frame) -> Result<u16, ChargerError> {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let bytes = self.encode(seq, frame)?;
        self.send_raw(&bytes).await?;
        Ok(seq)
    }

    /// Sends a reply, echoing the request's sequence number.
    pub async fn reply(&mut self, seq: u16, frame: &Frame) -> Result<(), ChargerError> {
        let bytes = self.encode(seq, frame)?;
        self.send_raw(&bytes).await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ChargerError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Waits for the next frame from the edge.
    pub async fn recv(&mut self) -> Result<(u16, Frame), ChargerError> {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Ok(f);
            }
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(ChargerError::Closed);
            }
            let mut error = None;
            let ready = &mut self.ready;
            let cipher = self.cipher.as_ref();
            self.splitter.feed(&buf[..n], |ev| {
                match ev {
                    SplitEvent::Frame(raw) => match ykc::decode_with(&raw, cipher) {
                        Ok(f) => ready.push_back((raw.seq, f)),
                        Err(e) => error = Some(e.to_string()),
                    },
                    SplitEvent::Skipped { error: e, .. } => error = Some(e.to_string()),
                }
                error.is_none()
            });
            if let Some(e) = error {
                return Err(ChargerError::Protocol(e));
            }
        }
    }

    pub async fn recv_timeout(
        &mut self,
        what: &'static str,
        limit: Duration,
    ) -> Result<(u16, Frame), ChargerError> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| ChargerError::Timeout(what))?
    }

    /// Logs in as `pile` and waits for the answer.
    pub async fn login(&mut self, pile: PileNo) -> Result<(), ChargerError> {
        self.send(&login_frame(pile)).await?;
        loop {
            match self
                .recv_timeout("login reply", Duration::from_secs(10))
                .await?
            {
                (_, Frame::LoginReply(r)) if r.result == 0 => return Ok(()),
                (_, Frame::LoginReply(_)) => return Err(ChargerError::LoginRefused),
                _ => continue,
            }
        }
    }
}

pub fn login_frame(pile: PileNo) -> Frame {
    Login {
        pile_no: pile,
        pile_type: 0,
        gun_count: 2,
        protocol_version: ykc::Scaled(16),
        program_version: Ascii::parse("v4.1.50").unwrap_or_default(),
        network_type: 1,
        sim: Default::default(),
        carrier: 4,
    }
    .into()
}

pub fn heartbeat_frame(pile: PileNo) -> Frame {
    Heartbeat {
        pile_no: pile,
        gun_no: ykc::Bcd([1]),
        gun_status: 0,
    }
    .into()
}

/// An idle gun's real-time data (what a charger sends every 5 minutes when idle).
pub fn idle_realtime_frame(pile: PileNo) -> Frame {
    RealtimeData {
        pile_no: pile,
        gun_no: ykc::Bcd([1]),
        status: 2,
        gun_homed: 1,
        ..Default::default()
    }
    .into()
}

/// Real-time data of an idle gun reporting hardware fault `bits` (status fault when
/// any is set).
pub fn realtime_with_faults(pile: PileNo, bits: u16) -> Frame {
    RealtimeData {
        pile_no: pile,
        gun_no: ykc::Bcd([1]),
        status: if bits == 0 { 2 } else { 1 },
        gun_homed: 1,
        hardware_faults: bits,
        ..Default::default()
    }
    .into()
}

/// Pile number `base + index` as 14 BCD digits.
pub fn pile_number(base: u64, index: u64) -> PileNo {
    PileNo::from_u64(base + index)
}

/// The timing of a simulated charger.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub heartbeat: Duration,
    pub realtime_idle: Duration,
}

impl Default for Cadence {
    fn default() -> Self {
        Cadence {
            heartbeat: Duration::from_secs(10),
            realtime_idle: Duration::from_secs(300),
        }
    }
}

/// Measured time since `start`, in microseconds.
pub fn micros_since(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}
