//! The backends health has in service, for the strategies that draw at random (p2c, random): they
//! draw from this table so that an outage does not make most draws miss. Rebuilt when a
//! [`Balancer::sync`](super::Balancer::sync) finds that the set changed (at most once per
//! change), read without a lock. [`Pick::eligible`](super::Pick::eligible) stays the authority.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// In-service backends and their cumulative weights.
#[derive(Debug, Default)]
pub struct Table {
    /// Backend indices, ascending.
    pub backends: Vec<u32>,
    /// `cumulative[k]` = sum of the weights of `backends[..=k]`.
    pub cumulative: Vec<u64>,
}

impl Table {
    fn build(weights: &[u64], available: &[bool]) -> Table {
        let mut t = Table::default();
        let mut sum = 0;
        for (i, (&w, _)) in weights
            .iter()
            .zip(available)
            .enumerate()
            .filter(|(_, (_, &a))| a)
        {
            sum += w;
            t.backends.push(i as u32);
            t.cumulative.push(sum);
        }
        t
    }

    /// A backend drawn with probability proportional to its weight; `None` if empty.
    pub fn draw_weighted(&self) -> Option<usize> {
        let total = *self.cumulative.last()?;
        let point = fastrand::u64(..total);
        let k = self.cumulative.partition_point(|&c| c <= point);
        Some(self.backends[k] as usize)
    }
}

#[derive(Debug)]
pub struct InService {
    weights: Vec<u64>,
    available: Mutex<Vec<bool>>,
    table: ArcSwap<Table>,
}

impl InService {
    /// Every backend in service.
    pub fn new(weights: &[u64]) -> InService {
        let available = vec![true; weights.len()];
        InService {
            table: ArcSwap::from_pointee(Table::build(weights, &available)),
            weights: weights.to_vec(),
            available: Mutex::new(available),
        }
    }

    /// Takes the backends `in_service` names; rebuilds the table only if that changed it.
    pub fn sync(&self, in_service: &dyn Fn(usize) -> bool) {
        let mut a = self.available.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        for (i, slot) in a.iter_mut().enumerate() {
            let now = in_service(i);
            changed |= *slot != now;
            *slot = now;
        }
        if changed {
            self.table.store(Arc::new(Table::build(&self.weights, &a)));
        }
    }

    pub fn table(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_follows_availability() {
        let s = InService::new(&[1, 2, 3]);
        assert_eq!(s.table().backends, vec![0, 1, 2]);
        assert_eq!(s.table().cumulative, vec![1, 3, 6]);
        s.sync(&|i| i != 1);
        assert_eq!(s.table().backends, vec![0, 2]);
        assert_eq!(s.table().cumulative, vec![1, 4]);
        let before = Arc::as_ptr(&s.table());
        s.sync(&|i| i != 1);
        assert_eq!(Arc::as_ptr(&s.table()), before, "unchanged: not rebuilt");
        s.sync(&|_| false);
        assert_eq!(s.table().draw_weighted(), None);
        s.sync(&|i| i == 2);
        assert_eq!(s.table().draw_weighted(), Some(2));
    }
}
