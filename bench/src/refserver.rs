//! The reference server: the same YKC login + heartbeat responder written the common
//! way (tokio + tokio-rustls, one multi-threaded runtime, buffered TLS streams). Every
//! bench run measures the edge against it on the same machine.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pylon_proto::ykc::frames::{HeartbeatReply, LoginReply};
use pylon_proto::ykc::{self, Frame, FrameSplitter, SplitEvent};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Default)]
pub struct RefStats {
    pub connections: AtomicU64,
    pub heartbeats: AtomicU64,
}

/// A listener that other processes can share with SO_REUSEPORT.
pub fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    heartbeat_timeout: Duration,
    stats: Arc<RefStats>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            stats.connections.fetch_add(1, Ordering::Relaxed);
            match acceptor {
                None => respond(tcp, heartbeat_timeout, &stats).await,
                Some(a) => {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), a.accept(tcp)).await
                    {
                        respond(tls, heartbeat_timeout, &stats).await
                    }
                }
            }
            stats.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, timeout: Duration, stats: &RefStats) {
    let mut buf = [0u8; 1024];
    let mut splitter = FrameSplitter::new();
    let mut out = Vec::new();
    loop {
        let n = match tokio::time::timeout(timeout, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        let mut ok = true;
        splitter.feed(&buf[..n], |ev| {
            let SplitEvent::Frame(raw) = ev else {
                ok = false;
                return false;
            };
            let reply: Option<Frame> = match ykc::decode(&raw) {
                Ok(Frame::Login(l)) => Some(
                    LoginReply {
                        pile_no: l.pile_no,
                        result: 0,
                    }
                    .into(),
                ),
                Ok(Frame::Heartbeat(h)) => {
                    stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                    Some(
                        HeartbeatReply {
                            pile_no: h.pile_no,
                            gun_no: h.gun_no,
                            reply: 0,
                        }
                        .into(),
                    )
                }
                Ok(_) => None,
                Err(_) => {
                    ok = false;
                    None
                }
            };
            if let Some(f) = reply {
                ok &= ykc::encode_into(&mut out, raw.seq, &f).is_ok();
            }
            ok
        });
        if !ok {
            return;
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() || s.flush().await.is_err() {
                return;
            }
            out.clear();
        }
    }
}
