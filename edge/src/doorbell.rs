//! How other threads wake a parked executor at once.
//!
//! An executor parks in `epoll_wait` (see `executor::poll_readiness`), where glommio's
//! cross-thread wake-ups do not reach it: a command (a downlink, a login verdict, a
//! drain) used to wait for the park's timeout, 10 ms. Each executor's epoll set also
//! watches an eventfd, its doorbell. The executor arms the bell before it parks; a sender
//! queues its command and then rings the bell only if it is armed, so a busy executor
//! (which finds the command on its own before it parks) costs senders no system call.
//!
//! The order makes it race-free: the executor arms, then checks its inbox, then parks;
//! a sender queues, then disarms. Either the executor's check sees the command, or the
//! sender's disarm sees the bell armed and writes the eventfd, which ends the park.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Doorbell {
    fd: OwnedFd,
    armed: AtomicBool,
}

impl Doorbell {
    pub fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Doorbell {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            armed: AtomicBool::new(false),
        })
    }

    /// The descriptor to watch for reads.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The executor is about to check its inbox and park.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// The executor is awake: senders need not ring.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    /// After queueing a command: wakes the executor if it may be parked.
    pub fn ring(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd. It cannot fail
            // short of the counter overflowing (2^64 - 2 unread rings), and a failed ring
            // only delays the command to the park's timeout.
            unsafe {
                libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
            }
        }
    }

    /// Resets the eventfd after it woke the executor, so it stays quiet until rung again.
    pub fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN (nothing rung) is fine.
        unsafe {
            libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness::Poller;
    use std::time::Duration;

    const BELL: u64 = 99;

    fn rung(poller: &Poller, timeout: Duration) -> bool {
        let mut events = Vec::with_capacity(4);
        let mut seen = false;
        poller.wait(&mut events, timeout, |token, _| seen |= token == BELL);
        seen
    }

    #[test]
    fn an_armed_bell_ends_a_park_and_a_disarmed_one_stays_silent() {
        let bell = std::sync::Arc::new(Doorbell::new().unwrap());
        let poller = Poller::new().unwrap();
        poller.register_reads(bell.fd(), BELL).unwrap();

        // Disarmed (the executor is busy): ringing writes nothing.
        bell.ring();
        assert!(!rung(&poller, Duration::ZERO));

        // Armed and parked: a ring from another thread ends the park long before its
        // timeout.
        bell.arm();
        let ringer = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                bell.ring();
            })
        };
        // Without the ring, this would return after the timeout with nothing.
        assert!(rung(&poller, Duration::from_secs(30)));
        ringer.join().unwrap();
        bell.clear();
        // One ring disarms: a second sender does not write again.
        bell.ring();
        assert!(!rung(&poller, Duration::ZERO));
    }
}
