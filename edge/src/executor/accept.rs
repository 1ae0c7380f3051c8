//! Listening and accepting: SO_REUSEPORT listeners per executor (with the kernel's
//! per-CPU selection when eBPF is on), each accepted socket handed to its own task.

use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use super::connection::serve;
use super::Executor;
use crate::metrics::Transport;
use crate::readiness::{self, Token, LISTENER_TOKENS};
use crate::runtime;
use crate::session::CloseReason;

/// Opens this executor's listeners and starts accepting; false if one cannot listen.
pub(super) fn start_listeners(exec: &Rc<Executor>) -> bool {
    // One waker slot per entry here (see `listener_wakers`).
    let listeners = [
        (exec.shared.config.tcp_listen, Transport::Tcp),
        (exec.shared.config.tls_listen, Transport::Tls),
    ];
    for (slot, (addr, transport)) in listeners.into_iter().enumerate() {
        let Some(addr) = addr else { continue };
        let listening = readiness::listen(addr).and_then(|l| {
            exec.poller
                .register(l.as_raw_fd(), LISTENER_TOKENS + slot as Token)?;
            Ok(l)
        });
        match listening {
            Ok(listener) => {
                if let Some(selectors) = &exec.shared.selectors {
                    // Executor i runs on CPU i when pinned; unpinned, SYNs still spread
                    // by CPU, just without the locality.
                    // Executor i's CPU (when pinned): the slot SYNs on that CPU select.
                    let cpu = (exec.shared.config.first_cpu + exec.id) as u32;
                    if let Err(e) = selectors.register(slot, cpu, &listener) {
                        tracing::warn!(executor = exec.id, %addr, "eBPF listener selection not set up: {e}");
                    }
                }
                runtime::spawn(accept_loop(exec.clone(), listener, transport, addr, slot));
            }
            Err(e) => {
                tracing::error!(executor = exec.id, %addr, "cannot listen: {e}");
                return false;
            }
        }
    }
    true
}

async fn accept_loop(
    exec: Rc<Executor>,
    listener: TcpListener,
    transport: Transport,
    addr: SocketAddr,
    slot: usize,
) {
    tracing::info!(executor = exec.id, %addr, transport = transport.as_str(), "listening");
    let generation = exec.listen_generation.get();
    loop {
        let accepted = poll_fn(|cx| {
            if exec.draining.get() || exec.listen_generation.get() != generation {
                return Poll::Ready(None);
            }
            match listener.accept() {
                Ok((stream, _)) => Poll::Ready(Some(Ok(stream))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    exec.listener_wakers.borrow_mut()[slot] = Some(cx.waker().clone());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Some(Err(e))),
            }
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(executor = exec.id, "accept failed: {e}");
                runtime::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if exec.conns.borrow().len() >= exec.limits().max_sessions_per_executor {
            exec.metrics.close(CloseReason::ExecutorFull.as_str());
            continue;
        }
        if let Err(e) = readiness::prepare(&stream) {
            tracing::debug!("preparing an accepted socket: {e}");
            continue;
        }
        runtime::spawn(serve(exec.clone(), stream, transport));
    }
    tracing::info!(executor = exec.id, %addr, "stopped accepting");
}
