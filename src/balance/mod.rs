//! Load-balancing strategies behind one small trait. Each strategy lives in its own file with
//! its tests at the bottom; [`build`] picks one from the config.

mod round_robin;

pub use round_robin::RoundRobin;

use crate::config::{BackendConfig, BalanceKind};

/// What a strategy may consult for one pick.
pub struct Pick<'a> {
    /// Whether backend `i` may receive this attempt: false for backends this request already
    /// tried, and (in later issues) for unhealthy or broken ones.
    pub eligible: &'a dyn Fn(usize) -> bool,
}

/// A balancing strategy for one upstream's backends, indexed `0..n` in config order.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Called on the request path for every attempt (the first try and each retry). Returns the
    /// index of an eligible backend, or `None` when none is eligible.
    fn pick(&self, pick: &Pick<'_>) -> Option<usize>;
}

/// The strategy the config asks for, over these backends.
pub fn build(kind: BalanceKind, backends: &[BackendConfig]) -> Box<dyn Balancer> {
    match kind {
        BalanceKind::RoundRobin => Box::new(RoundRobin::new(backends.len())),
    }
}
