//! Giving back the spare room of maps and queues after a burst.
//!
//! A `HashMap`, `HashSet` or `VecDeque` keeps the capacity of its largest moment: emptied after
//! 100,000 ended games, it still holds (and the process still touches) the table sized for
//! them. The core's collections that follow a burst (ended games, probe tombstones, live
//! connections and sessions) call [`ShrinkWhenSparse::shrink_when_sparse`] after removing
//! entries, so what a server holds once everyone has left does not grow with the busiest
//! minute it ever had.
//!
//! The rule: a collection with room for more than [`SPARE_FLOOR`] entries that is less than a
//! quarter full is shrunk to twice its length. Shrinking copies the entries, and the next
//! shrink needs at least half of them removed again, so the cost is amortised over the
//! removals (constant per removal).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};

/// Capacity, in entries, that a collection may always keep: below it nothing is shrunk, so
/// small collections never reallocate back and forth.
pub const SPARE_FLOOR: usize = 64;

/// A collection that can give back capacity it no longer needs.
pub trait ShrinkWhenSparse {
    /// Shrinks to twice the length when the capacity is over [`SPARE_FLOOR`] and more than
    /// four times the length (see the module docs).
    fn shrink_when_sparse(&mut self);
}

/// The capacity to shrink to, when a collection of `len` entries with room for `capacity`
/// should shrink.
fn sparse_target(len: usize, capacity: usize) -> Option<usize> {
    (capacity > SPARE_FLOOR && capacity / 4 > len).then(|| (len * 2).max(SPARE_FLOOR / 2))
}

impl<K: Eq + Hash, V, S: BuildHasher> ShrinkWhenSparse for HashMap<K, V, S> {
    fn shrink_when_sparse(&mut self) {
        if let Some(target) = sparse_target(self.len(), self.capacity()) {
            self.shrink_to(target);
        }
    }
}

impl<T: Eq + Hash, S: BuildHasher> ShrinkWhenSparse for HashSet<T, S> {
    fn shrink_when_sparse(&mut self) {
        if let Some(target) = sparse_target(self.len(), self.capacity()) {
            self.shrink_to(target);
        }
    }
}

impl<T> ShrinkWhenSparse for VecDeque<T> {
    fn shrink_when_sparse(&mut self) {
        if let Some(target) = sparse_target(self.len(), self.capacity()) {
            self.shrink_to(target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_collection_gives_its_room_back_and_a_small_one_keeps_it() {
        let mut map: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let mut queue: VecDeque<u32> = (0..10_000).collect();
        let mut set: HashSet<u32> = (0..10_000).collect();
        for i in 0..9_990 {
            map.remove(&i);
            set.remove(&i);
            queue.pop_front();
            map.shrink_when_sparse();
            set.shrink_when_sparse();
            queue.shrink_when_sparse();
        }
        assert_eq!((map.len(), set.len(), queue.len()), (10, 10, 10));
        assert!(map.capacity() <= SPARE_FLOOR * 2, "{}", map.capacity());
        assert!(set.capacity() <= SPARE_FLOOR * 2, "{}", set.capacity());
        assert!(queue.capacity() <= SPARE_FLOOR * 2, "{}", queue.capacity());

        let mut small: VecDeque<u32> = VecDeque::with_capacity(SPARE_FLOOR);
        small.push_back(1);
        small.shrink_when_sparse();
        assert!(
            small.capacity() >= SPARE_FLOOR,
            "under the floor nothing shrinks"
        );
    }

    #[test]
    fn shrinking_waits_until_three_quarters_are_gone() {
        let mut queue: VecDeque<u32> = VecDeque::with_capacity(1_000);
        queue.extend(0..1_000);
        let before = queue.capacity();
        while queue.len() > before / 4 {
            queue.pop_front();
            queue.shrink_when_sparse();
        }
        assert_eq!(queue.capacity(), before, "a quarter full is not sparse yet");
        queue.pop_front();
        queue.shrink_when_sparse();
        assert_eq!(queue.capacity(), queue.len() * 2, "then twice its length");
    }
}
