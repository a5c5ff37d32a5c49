//! A ketama consistent-hash ring: every backend owns [`POINTS_PER_WEIGHT`] points per unit of
//! weight at positions hashed from its address, and a key belongs to the first point at or after
//! the key's hash (clockwise). Removing a backend moves only the keys of its own points.
//!
//! Hashes are xxh3-64 of the address text and key bytes: a pure function of (key, backend set,
//! weights), identical in every process and on every fulcrum instance, with no per-process seed.
//!
//! A lookup is O(1): a jump table maps the top bits of a hash to the first point with that
//! prefix, leaving a handful of points to scan instead of a binary search over hundreds of
//! thousands. The table has about one entry per point (at most 2^16): a 2-backend ring's is 2 KiB,
//! not the 256 KiB a fixed 2^16 entries would cost each of thousands of upstreams.
//!
//! Why ketama and not Maglev: ketama's minimal disruption is exact (Maglev also reshuffles a
//! few percent of other backends' keys), bounded load needs a walk over alternatives in a
//! stable order (the ring's clockwise walk), and with the jump table it is as fast to look up.

use std::net::SocketAddr;

use xxhash_rust::xxh3::xxh3_64;

use super::weight_gcd;

/// Points per unit of (gcd-reduced) weight, as in nginx's ketama.
pub const POINTS_PER_WEIGHT: u64 = 160;
/// Most points on one ring (16 bytes each); past it every weight gets proportionally fewer.
pub const MAX_POINTS: u64 = 1 << 22;
/// Most bits of a hash the jump table is indexed by (2^16 + 1 entries of 4 bytes).
const MAX_JUMP_BITS: u32 = 16;

#[derive(Debug)]
pub struct Ring {
    /// (position, backend), sorted by position.
    points: Box<[(u64, u32)]>,
    /// `jump[p]` = index of the first point whose position's top `jump_bits` bits are >= p.
    jump: Box<[u32]>,
    /// About log2 of the number of points, 1 to [`MAX_JUMP_BITS`].
    jump_bits: u32,
    backends: usize,
    /// Each backend's weight as configured.
    weights: Box<[u32]>,
}

impl Ring {
    /// Each backend's weight, in index order.
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// A ring over `(address, weight)` backends, indexed in the given order.
    pub fn new(backends: &[(SocketAddr, u32)]) -> Ring {
        let weights: Vec<u32> = backends.iter().map(|&(_, w)| w).collect();
        let gcd = u64::from(weight_gcd(&weights));
        let units: u64 = weights.iter().map(|&w| u64::from(w) / gcd).sum();
        let per_unit = POINTS_PER_WEIGHT.min((MAX_POINTS / units.max(1)).max(1));
        let mut points = Vec::with_capacity((units * per_unit) as usize);
        let mut label = String::new();
        for (i, &(addr, w)) in backends.iter().enumerate() {
            for k in 0..(u64::from(w) / gcd) * per_unit {
                use std::fmt::Write;
                label.clear();
                // Writing into a String cannot fail.
                let _ = write!(label, "{addr}-{k}");
                points.push((xxh3_64(label.as_bytes()), i as u32));
            }
        }
        points.sort_unstable();
        let jump_bits = points
            .len()
            .next_power_of_two()
            .trailing_zeros()
            .clamp(1, MAX_JUMP_BITS);
        let mut jump = vec![0u32; (1 << jump_bits) + 1];
        let mut p = 0usize;
        for (prefix, slot) in jump.iter_mut().enumerate() {
            while p < points.len() && ((points[p].0 >> (64 - jump_bits)) as usize) < prefix {
                p += 1;
            }
            *slot = p as u32;
        }
        Ring {
            weights: weights.into_boxed_slice(),
            points: points.into_boxed_slice(),
            jump: jump.into_boxed_slice(),
            jump_bits,
            backends: backends.len(),
        }
    }

    pub fn hash(key: &[u8]) -> u64 {
        xxh3_64(key)
    }

    /// Index of the first point at or after `hash`, wrapping around; `None` on an empty ring.
    pub fn first_point(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let prefix = (hash >> (64 - self.jump_bits)) as usize;
        let (lo, hi) = (self.jump[prefix] as usize, self.jump[prefix + 1] as usize);
        let i = lo + self.points[lo..hi].partition_point(|&(pos, _)| pos < hash);
        Some(if i == self.points.len() { 0 } else { i })
    }

    /// The backends clockwise from point `start`: one full turn, with repeats.
    pub fn walk(&self, start: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.points.len();
        (0..n).map(move |k| self.points[(start + k) % n].1 as usize)
    }

    /// The owner of `key` on the ring.
    #[cfg(test)]
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        self.first_point(Ring::hash(key))
            .map(|p| self.points[p].1 as usize)
    }

    /// How many backends the ring was built over.
    pub fn backends(&self) -> usize {
        self.backends
    }

    #[cfg(test)]
    pub fn points(&self) -> usize {
        self.points.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u16) -> Vec<(SocketAddr, u32)> {
        (0..n)
            .map(|i| (SocketAddr::from(([10, 0, 0, 1], 8000 + i)), 1))
            .collect()
    }

    fn key(i: u32) -> Vec<u8> {
        format!("user-{i}").into_bytes()
    }

    #[test]
    fn lookup_matches_a_plain_binary_search() {
        // Jump tables of 8 bits (160 points) up to the largest, 16 bits (80 000 points).
        for n in [1, 2, 7, 500] {
            let ring = Ring::new(&backends(n));
            for i in 0..20_000 {
                let h = Ring::hash(&key(i));
                let want = ring.points.partition_point(|&(p, _)| p < h) % ring.points.len();
                assert_eq!(ring.first_point(h), Some(want), "{n} backends");
            }
            assert_eq!(ring.first_point(u64::MAX), Some(0), "wraps around");
            assert_eq!(ring.first_point(0), Some(0));
        }
    }

    #[test]
    fn the_jump_table_grows_with_the_points_up_to_a_cap() {
        // 320 points: 512 entries (2 KiB), not 2^16.
        assert_eq!(Ring::new(&backends(2)).jump.len(), (1 << 9) + 1);
        assert_eq!(
            Ring::new(&backends(500)).jump.len(),
            (1 << MAX_JUMP_BITS) + 1
        );
    }

    #[test]
    fn points_per_weight_and_cap() {
        assert_eq!(Ring::new(&backends(3)).points(), 480);
        let heavy: Vec<_> = (0..2u16)
            .map(|i| (SocketAddr::from(([10, 0, 0, 1], i)), 1000 * (i as u32 + 1)))
            .collect();
        assert!(Ring::new(&heavy).points() as u64 <= MAX_POINTS);
        // gcd reduction: 2,2 is 1,1
        let even: Vec<_> = backends(2).into_iter().map(|(a, _)| (a, 2)).collect();
        assert_eq!(Ring::new(&even).points(), 320);
    }

    #[test]
    fn keys_spread_evenly_chi_squared() {
        // The ring's arcs are uneven by construction (160 points per backend); what must be
        // uniform is the key hash over the ring. Compare each backend's key count with its arc.
        let ring = Ring::new(&backends(10));
        let mut arc = [0f64; 10];
        for (j, &(pos, b)) in ring.points.iter().enumerate() {
            let prev = if j == 0 {
                ring.points[ring.points.len() - 1].0
            } else {
                ring.points[j - 1].0
            };
            arc[b as usize] += pos.wrapping_sub(prev) as f64 / 2f64.powi(64);
        }
        let n = 100_000;
        let mut counts = [0f64; 10];
        for i in 0..n {
            counts[ring.owner(&key(i)).unwrap()] += 1.0;
        }
        let chi2: f64 = (0..10)
            .map(|b| (counts[b] - arc[b] * n as f64).powi(2) / (arc[b] * n as f64))
            .sum();
        // 9 degrees of freedom: p = 0.001 at 27.9.
        assert!(chi2 < 27.9, "chi² = {chi2:.1}");
        // and no backend's share strays far from 1/10
        for c in counts {
            assert!((c / n as f64 - 0.1).abs() < 0.03, "share {}", c / n as f64);
        }
    }

    #[test]
    fn removing_one_of_ten_moves_only_its_keys() {
        let all = backends(10);
        let ring = Ring::new(&all);
        let fewer = Ring::new(&all[..9]);
        let n = 100_000;
        let mut moved = 0;
        for i in 0..n {
            let (before, after) = (ring.owner(&key(i)).unwrap(), fewer.owner(&key(i)).unwrap());
            if before != after {
                assert_eq!(
                    before, 9,
                    "a key moved between two backends that both stayed"
                );
                moved += 1;
            }
        }
        assert!((moved as f64 / n as f64) <= 0.1 + 0.03, "moved {moved}");
    }

    #[test]
    fn same_input_same_ring() {
        let (a, b) = (Ring::new(&backends(5)), Ring::new(&backends(5)));
        assert_eq!(a.points, b.points);
    }
}
