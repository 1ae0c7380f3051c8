//! One edge stream's work, queued by pile: a pile's items are handled one at a time and
//! in the order the edge sent them, while different piles' items run side by side. A
//! pile that is busy (a record waiting on the store) holds up only itself, so a login
//! never waits behind another pile's frames.
//!
//! Sans-io: the stream's reader pushes, a worker per busy pile takes the next item when
//! it has handled one; whoever is told "start" spawns that worker.

use std::collections::{HashMap, VecDeque};

/// The queues of the piles that have work; a pile with none is not kept.
pub struct PileQueues<T> {
    /// Items waiting behind the one the pile's worker is handling.
    waiting: HashMap<String, VecDeque<T>>,
}

/// What the reader does with an item it pushed.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<T> {
    /// The pile was idle: start a worker for it with this item.
    Start(T),
    /// The pile's worker is busy: the item waits for it.
    Queued,
}

impl<T> Default for PileQueues<T> {
    fn default() -> Self {
        PileQueues {
            waiting: HashMap::new(),
        }
    }
}

impl<T> PileQueues<T> {
    /// Queues an item for a pile.
    pub fn push(&mut self, pile: &str, item: T) -> Pushed<T> {
        match self.waiting.get_mut(pile) {
            Some(queue) => {
                queue.push_back(item);
                Pushed::Queued
            }
            None => {
                self.waiting.insert(pile.to_string(), VecDeque::new());
                Pushed::Start(item)
            }
        }
    }

    /// The pile's next item, once its worker has handled the last one; `None` when it has
    /// none (the pile is idle again and its worker ends).
    pub fn next(&mut self, pile: &str) -> Option<T> {
        let queue = self.waiting.get_mut(pile)?;
        let item = queue.pop_front();
        if item.is_none() {
            self.waiting.remove(pile);
        }
        item
    }

    /// Piles with a worker.
    #[cfg(test)]
    fn busy(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_pile_starts_a_worker_and_a_busy_one_queues() {
        let mut q = PileQueues::default();
        assert_eq!(q.push("a", 1), Pushed::Start(1));
        assert_eq!(q.push("a", 2), Pushed::Queued);
        assert_eq!(q.push("b", 10), Pushed::Start(10));
        assert_eq!(q.push("a", 3), Pushed::Queued);
        assert_eq!(q.busy(), 2);
        // Pile a's items come out in the order they were pushed.
        assert_eq!(q.next("a"), Some(2));
        assert_eq!(q.next("a"), Some(3));
        assert_eq!(q.next("a"), None);
        assert_eq!(q.busy(), 1);
        // Idle again: the next item starts a new worker.
        assert_eq!(q.push("a", 4), Pushed::Start(4));
        assert_eq!(q.next("b"), None);
        assert_eq!(q.next("a"), None);
        assert_eq!(q.busy(), 0);
    }

    #[test]
    fn next_for_an_unknown_pile_is_none() {
        let mut q: PileQueues<u8> = PileQueues::default();
        assert_eq!(q.next("x"), None);
        assert_eq!(q.busy(), 0);
    }
}
