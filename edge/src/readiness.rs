//! Socket readiness for one executor: one edge-triggered epoll set, polled in batches.
//!
//! glommio waits for each socket with its own one-shot io_uring poll, re-submitted after
//! every read, and on every sleep it cancels and re-arms its preemption timers (the
//! kernel then searches the pending polls of *all* idle connections) and issues a
//! membarrier. With tens of thousands of mostly idle chargers per executor that doubled
//! the CPU cost of a heartbeat. Here sockets are registered once, and the executor parks
//! in `epoll_wait` (see `executor::poll_readiness`) instead of in io_uring.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A registration key: the connection's session id, or a listener's slot.
pub type Token = u64;

/// Tokens at the top of the range belong to listeners.
pub const LISTENER_TOKENS: Token = u64::MAX - 16;
/// The executor's doorbell (see `crate::doorbell`), below the listeners' tokens.
pub const DOORBELL_TOKEN: Token = LISTENER_TOKENS - 1;

pub struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Poller {
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for reads and writes (edge-triggered) under `token`. The
    /// registration ends by itself when the socket is closed.
    pub fn register(&self, fd: RawFd, token: Token) -> io::Result<()> {
        self.add(
            fd,
            token,
            libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET,
        )
    }

    /// Watches `fd` for reads only (edge-triggered): a descriptor that is always
    /// writable, like an eventfd.
    pub fn register_reads(&self, fd: RawFd, token: Token) -> io::Result<()> {
        self.add(fd, token, libc::EPOLLIN | libc::EPOLLET)
    }

    fn add(&self, fd: RawFd, token: Token, events: libc::c_int) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open and `event` outlives the call.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Collects the tokens of sockets that became ready since the last call, waiting up
    /// to `timeout` for the first one; returns how many there were.
    pub fn wait(
        &self,
        events: &mut Vec<libc::epoll_event>,
        timeout: Duration,
        mut on_ready: impl FnMut(Token, Readiness),
    ) -> usize {
        events.clear();
        let capacity = events.capacity().max(1);
        // SAFETY: the buffer has room for `capacity` events; the kernel fills `n` of them.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                capacity as libc::c_int,
                timeout.as_millis().min(i32::MAX as u128) as libc::c_int,
            )
        };
        if n <= 0 {
            return 0;
        }
        // SAFETY: the kernel initialised the first `n` entries.
        unsafe { events.set_len(n as usize) };
        for e in events.iter() {
            let (token, mask) = (e.u64, e.events);
            let hangup = mask & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
            let readable = hangup || mask & libc::EPOLLIN as u32 != 0;
            on_ready(token, Readiness { readable, hangup });
        }
        n as usize
    }
}

/// What an event said about a socket.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    /// New data, end of stream or an error: worth reading.
    pub readable: bool,
    /// The peer closed its side, or the socket failed: no further event will come, so
    /// reading must go on until it says so (0 or an error), even after a short read.
    pub hangup: bool,
}

/// A non-blocking listener shared with other executors and processes (SO_REUSEPORT).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
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
    Ok(socket.into())
}

/// Prepares an accepted connection: non-blocking, no Nagle delay (chargers send small
/// frames and wait for answers).
pub fn prepare(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reports_readable_sockets_once_per_edge() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = loop {
            match listener.accept() {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        };
        prepare(&server).unwrap();
        let poller = Poller::new().unwrap();
        poller.register(server.as_raw_fd(), 7).unwrap();
        let mut events = Vec::with_capacity(8);
        let mut seen = Vec::new();
        poller.wait(&mut events, Duration::ZERO, |t, _| seen.push(t)); // initial writable edge
        seen.clear();
        client.write_all(b"hi").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            poller.wait(&mut events, Duration::ZERO, |t, r| {
                assert!(r.readable);
                seen.push(t)
            }),
            1
        );
        assert_eq!(seen, vec![7]);
        assert_eq!(
            poller.wait(&mut events, Duration::ZERO, |_, _| ()),
            0,
            "edge-triggered: no repeat"
        );
    }
}
