//! Counts requests in flight so that a graceful shutdown can end as soon as the last one is done.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Drain {
    in_flight: AtomicUsize,
    /// Set when a shutdown (SIGTERM, SIGQUIT) starts: `/readyz` says not ready from then on.
    draining: AtomicBool,
}

impl Drain {
    /// Marks one request as started; it ends when the returned guard is dropped (on success,
    /// error or cancellation alike, since the guard lives in the request context).
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_until_dropped() {
        let d = Arc::new(Drain::default());
        let a = d.enter();
        let b = d.enter();
        assert_eq!(d.in_flight(), 2);
        drop(a);
        assert_eq!(d.in_flight(), 1);
        drop(b);
        assert_eq!(d.in_flight(), 0);
    }
}
