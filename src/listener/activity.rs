//! One connection's clock: which phase of its request cycle it is in (reading a head, answering,
//! idle between requests), since when, and the socket wrapper that notices a new head starting.
//! The watchdog in the parent module closes the connection when the phase's bound runs out.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{REQUEST_BACKSTOP, Settings};
use crate::metrics::Timeout;

/// Reading a request head (also a new connection's first state).
pub(super) const HEAD: u8 = 0;
/// A request is being answered.
pub(super) const BUSY: u8 = 1;
/// Between requests on a kept-alive connection.
pub(super) const IDLE: u8 = 2;

/// Where a connection is in its request cycle and since when. Written by the socket wrapper
/// (first byte of a head), the service (request start and end) and read by the watchdog; all of
/// them run inside the connection's one task, so relaxed atomics suffice. Times are
/// milliseconds since the accept.
pub(super) struct Activity {
    start: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
    /// The deadline the watchdog sleeps until; a phase change wakes it only when its own
    /// deadline is earlier (a new head after an idle pause, an idle timeout below the
    /// backstop), so a request costs no timer work in the usual case.
    armed_ms: AtomicU64,
    header_ms: u64,
    idle_ms: u64,
    pub(super) wake: Notify,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Activity {
    pub(super) fn new(s: &Settings) -> Activity {
        Activity {
            start: Instant::now(),
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
            armed_ms: AtomicU64::new(u64::MAX),
            header_ms: millis(s.header_timeout),
            idle_ms: millis(s.idle_timeout),
            wake: Notify::new(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        millis(self.start.elapsed())
    }

    fn due_ms(&self, phase: u8, since: u64) -> (u64, Timeout) {
        let (limit, bound) = match phase {
            HEAD => (self.header_ms, Timeout::Header),
            BUSY => (millis(REQUEST_BACKSTOP), Timeout::Request),
            _ => (self.idle_ms, Timeout::Idle),
        };
        (since.saturating_add(limit), bound)
    }

    /// Enters `phase` now.
    pub(super) fn enter(&self, phase: u8) {
        let now = self.now_ms();
        self.since_ms.store(now, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
        if self.due_ms(phase, now).0 < self.armed_ms.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    /// Bytes arrived from the client.
    fn read_some(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.enter(HEAD);
        }
    }

    /// When the current phase runs out (ms since the accept), and which bound that is.
    pub(super) fn deadline(&self) -> (u64, Timeout) {
        self.due_ms(
            self.phase.load(Ordering::Relaxed),
            self.since_ms.load(Ordering::Relaxed),
        )
    }

    /// Records the deadline the watchdog now sleeps until, and returns it as an instant.
    pub(super) fn arm(&self, due_ms: u64) -> Instant {
        self.armed_ms.store(due_ms, Ordering::Relaxed);
        self.start + Duration::from_millis(due_ms)
    }
}

/// The client socket, telling [`Activity`] when bytes arrive.
pub(super) struct Watched {
    pub(super) io: TcpStream,
    pub(super) activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::Limits;

    #[test]
    fn phases_have_their_own_deadlines() {
        let s = Settings::resolve(&Limits::default(), None);
        let a = Activity::new(&s);
        assert_eq!(a.deadline(), (10_000, Timeout::Header));
        a.arm(10_000);
        a.enter(BUSY);
        // Later than the armed deadline: no wake-up; bytes during a request restart nothing.
        assert!(a.deadline().0 >= 60_000 && a.deadline().1 == Timeout::Request);
        a.read_some();
        assert_eq!(a.deadline().1, Timeout::Request);
        a.enter(IDLE);
        assert_eq!(a.deadline().1, Timeout::Idle);
        a.arm(a.deadline().0);
        // A new head after the pause moves the deadline closer: the watchdog is woken.
        a.read_some();
        assert_eq!(a.deadline().1, Timeout::Header);
        let woken = a.wake.notified();
        tokio::pin!(woken);
        assert!(
            woken
                .as_mut()
                .poll(&mut Context::from_waker(std::task::Waker::noop()))
                .is_ready()
        );
    }
}
