//! Adaptive busy polling of the FUSE device (`busy_poll=`).
//!
//! A request costs the calling thread a sleep and a wake-up on each side
//! of the round trip. When the daemon's worker sleeps in `read(2)` on
//! /dev/fuse, the kernel must wake it on another CPU for every request,
//! and on a virtual machine that cross-CPU wake-up is most of a small
//! request's cost. With `busy_poll=N`, one worker (the one reading the
//! session's own descriptor) reads without blocking and so spins through
//! a burst of requests, taking each as soon as it is queued; once no
//! request has come for about N microseconds, a governor thread makes its
//! descriptor blocking again and the worker sleeps as before. An idle
//! mount costs nothing; a busy one costs up to one CPU while requests
//! keep coming, which is why this is an option and not the default.
//!
//! The switch is the descriptor's `O_NONBLOCK` flag, which fuser's worker
//! loop already handles (it retries a read that answers `EAGAIN`). The
//! flag belongs to the open file description, so the governor sets it
//! through a duplicate of the session's descriptor; the other workers read
//! their own cloned descriptors and keep sleeping.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The busy-polling switch of one session.
#[derive(Debug)]
pub struct BusyPoll {
    shared: Arc<Shared>,
    governor: OnceLock<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// How long the worker keeps polling after the last request.
    window: Duration,
    /// Requests seen, so that the governor can tell a quiet window.
    requests: AtomicU64,
    /// Whether the descriptor is (being made) non-blocking.
    polling: AtomicBool,
    /// The session's descriptor, once attached.
    fd: OnceLock<OwnedFd>,
    /// Guards `polling` transitions and `stop`; the governor waits on `wake`.
    state: Mutex<bool>,
    wake: Condvar,
}

impl BusyPoll {
    /// A switch that polls for `window` after each request, inactive until
    /// [`BusyPoll::attach`] gives it the session's descriptor.
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                window,
                requests: AtomicU64::new(0),
                polling: AtomicBool::new(false),
                fd: OnceLock::new(),
                state: Mutex::new(false),
                wake: Condvar::new(),
            }),
            governor: OnceLock::new(),
        }
    }

    /// Takes a duplicate of the session's descriptor and starts the
    /// governor thread; a second call changes nothing.
    ///
    /// # Errors
    /// The governor thread could not be started.
    pub fn attach(&self, fd: OwnedFd) -> std::io::Result<()> {
        if self.shared.fd.set(fd).is_err() {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name("tmpfsd-poll".into())
            .spawn(move || shared.govern())?;
        let _ = self.governor.set(handle);
        Ok(())
    }

    /// Called on every request: counts it and, if the worker sleeps
    /// between requests, makes it poll.
    pub fn request(&self) {
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        if !self.shared.polling.load(Ordering::Relaxed) {
            self.shared.start();
        }
    }

    /// Whether the session's descriptor is non-blocking right now (for
    /// tests and diagnostics).
    #[must_use]
    pub fn is_polling(&self) -> bool {
        self.shared.polling.load(Ordering::Relaxed)
    }
}

impl Drop for BusyPoll {
    fn drop(&mut self) {
        *self.shared.state.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.governor.take() {
            let _ = h.join();
        }
    }
}

impl Shared {
    fn start(&self) {
        let stopped = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *stopped || self.polling.load(Ordering::Relaxed) || !self.set_nonblocking(true) {
            return;
        }
        self.polling.store(true, Ordering::Relaxed);
        drop(stopped);
        self.wake.notify_all();
    }

    /// The governor: waits for polling to start, then ends it after a
    /// window without requests; returns once the session is dropped.
    fn govern(&self) {
        let mut stopped = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            while !*stopped && !self.polling.load(Ordering::Relaxed) {
                stopped = self.wake.wait(stopped).unwrap_or_else(PoisonError::into_inner);
            }
            if *stopped {
                return;
            }
            let seen = self.requests.load(Ordering::Relaxed);
            stopped = self
                .wake
                .wait_timeout(stopped, self.window)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if *stopped {
                return;
            }
            if self.requests.load(Ordering::Relaxed) == seen && self.set_nonblocking(false) {
                self.polling.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Sets or clears `O_NONBLOCK` on the session's descriptor; false when
    /// there is none yet or fcntl failed (the worker then keeps its mode).
    fn set_nonblocking(&self, on: bool) -> bool {
        let Some(fd) = self.fd.get() else { return false };
        let fd = fd.as_raw_fd();
        // SAFETY: fcntl on a descriptor this struct owns; F_GETFL and
        // F_SETFL take and return plain integers.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 {
                return false;
            }
            let flags = if on {
                flags | libc::O_NONBLOCK
            } else {
                flags & !libc::O_NONBLOCK
            };
            libc::fcntl(fd, libc::F_SETFL, flags) == 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(fd: &OwnedFd) -> i32 {
        // SAFETY: F_GETFL on an open descriptor.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
    }

    fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..500 {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_request_starts_polling_and_a_quiet_window_ends_it() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let probe: OwnedFd = file.try_clone().unwrap().into();
        let poll = BusyPoll::new(Duration::from_millis(5));
        poll.request();
        assert!(!poll.is_polling(), "nothing to switch before attach");
        poll.attach(file.into()).unwrap();
        poll.request();
        assert!(poll.is_polling());
        assert_ne!(
            flags(&probe) & libc::O_NONBLOCK,
            0,
            "the shared description is non-blocking"
        );
        assert!(wait_until(|| !poll.is_polling()), "polling never ended");
        assert_eq!(flags(&probe) & libc::O_NONBLOCK, 0, "blocking again once quiet");
        poll.request();
        assert_ne!(
            flags(&probe) & libc::O_NONBLOCK,
            0,
            "and polls again on the next request"
        );
        drop(poll);
    }
}
