//! Pinned children: decoded interior nodes that a clean interior node keeps for lookups.
//!
//! A lookup walks from the root to a leaf. Without pins every level below the root is a
//! buffer pool lookup: a shard lock, a hash probe, a reference count taken and given back
//! (on a line other threads' lookups write too). A clean interior node (read from a page, or
//! written by a checkpoint: one that no longer changes) may instead keep its children that are
//! interior nodes themselves, decoded, in [`Pins`]: a lookup then borrows the child from its
//! parent (no lock, no hash, no reference count) while it holds the node it started from.
//! Leaves are never pinned: they are most of the tree, and the pool's clock decides which of
//! them stay in memory.
//!
//! # Invariants
//!
//! * **A pin is the page it names.** A pin records the page its node was decoded from, and a
//!   lookup uses it only if the child pointer still names that page. A clean node never
//!   changes while a snapshot can reach it, and the pages it refers to are not reused while
//!   it is reachable, so a matching pin is the page's content.
//! * **Only unchanging nodes pin.** Pins live beside the search prefixes: built (empty) by
//!   [`Node::index`](super::Node::index), dropped by
//!   [`Node::changed`](super::Node::changed) before any change, and a copy of a node starts
//!   without pins.
//! * **Bounded memory.** Every pin array and every pinned node is charged against one
//!   [`PinBudget`] per page file, and given back when the array is dropped (with its parent).
//!   When the budget is spent, lookups go through the pool as before. A pinned node may also
//!   sit in the buffer pool; the pool charges it again (the memory is counted twice, never
//!   missed).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::Node;

/// The memory the pins of one page file may take.
#[derive(Debug)]
pub struct PinBudget {
    used: AtomicUsize,
    cap: usize,
}

impl PinBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        PinBudget {
            used: AtomicUsize::new(0),
            cap,
        }
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most bytes pins may take.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Charges `bytes` if they fit.
    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(bytes).filter(|&n| n <= self.cap)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A decoded child, and the page it was read from.
struct Pin {
    page: u64,
    node: Arc<Node>,
}

/// One slot per child, and what the slots and their nodes charge.
struct PinArray {
    slots: Box<[OnceLock<Pin>]>,
    budget: Arc<PinBudget>,
    charged: AtomicUsize,
}

impl Drop for PinArray {
    fn drop(&mut self) {
        self.budget.release(*self.charged.get_mut());
    }
}

/// The pinned children of a clean interior node (see the [module documentation](self)).
///
/// Empty until a lookup pins the first child; a clone is empty.
#[derive(Default)]
pub struct Pins(OnceLock<Box<PinArray>>);

impl Clone for Pins {
    fn clone(&self) -> Self {
        Pins::default()
    }
}

impl fmt::Debug for Pins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pinned = self
            .0
            .get()
            .map_or(0, |a| a.slots.iter().filter(|s| s.get().is_some()).count());
        write!(f, "Pins({pinned})")
    }
}

impl Pins {
    /// The node pinned as child `i`, if it was read from `page`.
    #[inline]
    pub fn get(&self, i: usize, page: u64) -> Option<&Arc<Node>> {
        let pin = self.0.get()?.slots.get(i)?.get()?;
        (pin.page == page).then_some(&pin.node)
    }

    /// Pins `node`, read from `page`, as child `i` of a node with `children` children, if
    /// `budget` has room for it (and for the slots, on the first pin). Returns the pinned
    /// node: `node` itself, or the one another thread pinned first.
    ///
    /// The caller pins only interior nodes, and only into a node that no longer changes.
    pub fn pin(
        &self,
        i: usize,
        children: usize,
        page: u64,
        node: &Arc<Node>,
        budget: &Arc<PinBudget>,
    ) -> Option<&Arc<Node>> {
        let array = match self.0.get() {
            Some(a) => a,
            None => {
                let bytes = std::mem::size_of::<PinArray>()
                    + children * std::mem::size_of::<OnceLock<Pin>>();
                if !budget.reserve(bytes) {
                    return None;
                }
                let array = Box::new(PinArray {
                    slots: (0..children).map(|_| OnceLock::new()).collect(),
                    budget: budget.clone(),
                    charged: AtomicUsize::new(bytes),
                });
                // Another thread may have set one meanwhile: then this one drops and gives
                // its charge back.
                let _ = self.0.set(array);
                self.0.get()?
            }
        };
        let slot = array.slots.get(i)?;
        if slot.get().is_none() {
            let bytes = match &**node {
                Node::Interior(int) => int.memory(),
                Node::Leaf(_) => return None,
            };
            if !array.budget.reserve(bytes) {
                return None;
            }
            match slot.set(Pin {
                page,
                node: node.clone(),
            }) {
                Ok(()) => {
                    array.charged.fetch_add(bytes, Ordering::AcqRel);
                }
                Err(_) => array.budget.release(bytes),
            }
        }
        let pin = slot.get()?;
        (pin.page == page).then_some(&pin.node)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::tree::{Child, Interior, Leaf, Ptr};

    fn interior(children: usize) -> Arc<Node> {
        let mut int = Interior::default();
        for p in 0..children {
            int.children.push(Child {
                ptr: Ptr::Clean(100 + p as u64),
                count: 1,
            });
            if p > 0 {
                int.seps.push(&[p as u8]);
            }
        }
        let mut node = Node::Interior(int);
        node.index();
        Arc::new(node)
    }

    #[test]
    fn a_pin_answers_only_for_its_page_and_gives_its_charge_back() {
        let budget = Arc::new(PinBudget::new(1 << 20));
        let parent = interior(4);
        let child = interior(3);
        let Node::Interior(p) = &*parent else {
            unreachable!()
        };
        assert!(p.pins.get(1, 101).is_none());
        let got = p.pins.pin(1, 4, 101, &child, &budget).map(Arc::as_ptr);
        assert_eq!(got, Some(Arc::as_ptr(&child)));
        assert_eq!(
            p.pins.get(1, 101).map(Arc::as_ptr),
            Some(Arc::as_ptr(&child))
        );
        // Another page at the same position (the slot names page 101) is not answered.
        assert!(p.pins.get(1, 555).is_none());
        assert!(p.pins.get(2, 101).is_none());
        // Leaves are never pinned.
        let leaf = Arc::new(Node::Leaf(Leaf::default()));
        assert!(p.pins.pin(2, 4, 102, &leaf, &budget).is_none());
        assert!(budget.used() > 0);
        drop(parent);
        assert_eq!(
            budget.used(),
            0,
            "dropping the parent gives every charge back"
        );
        // The child lives on wherever else it is held.
        assert_eq!(Arc::strong_count(&child), 1);
    }

    #[test]
    fn pins_stop_at_the_budget_and_a_copy_has_none() {
        let parent = interior(8);
        let child = interior(100);
        let Node::Interior(p) = &*parent else {
            unreachable!()
        };
        // Room for the slots but not for the child.
        let slots = std::mem::size_of::<PinArray>() + 8 * std::mem::size_of::<OnceLock<Pin>>();
        let budget = Arc::new(PinBudget::new(slots + 10));
        assert!(p.pins.pin(0, 8, 100, &child, &budget).is_none());
        assert_eq!(budget.used(), slots);
        let roomy = Arc::new(PinBudget::new(1 << 20));
        // The slots were made with the first budget; the child still does not fit in it.
        assert!(p.pins.pin(0, 8, 100, &child, &roomy).is_none());
        assert_eq!(roomy.used(), 0);
        let copy = p.clone();
        assert!(copy.pins.0.get().is_none());
    }

    #[test]
    fn racing_pins_charge_once_and_give_everything_back() {
        let budget = Arc::new(PinBudget::new(1 << 20));
        let parent = interior(16);
        let children: Vec<Arc<Node>> = (0..16).map(|_| interior(5)).collect();
        let Node::Interior(p) = &*parent else {
            unreachable!()
        };
        let charged: usize = std::thread::scope(|s| {
            let racers: Vec<_> = (0..4)
                .map(|t| {
                    let (p, children, budget) = (p, &children, &budget);
                    s.spawn(move || {
                        for k in 0..16 {
                            let i = (k + t * 5) % 16;
                            let got = p.pins.pin(i, 16, 100 + i as u64, &children[i], budget);
                            assert_eq!(got.map(Arc::as_ptr), Some(Arc::as_ptr(&children[i])));
                        }
                    })
                })
                .collect();
            for r in racers {
                r.join().unwrap();
            }
            p.pins.0.get().unwrap().charged.load(Ordering::Acquire)
        });
        assert_eq!(
            budget.used(),
            charged,
            "losers of a race gave their charge back"
        );
        drop(parent);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn changing_a_node_drops_its_pins() {
        let budget = Arc::new(PinBudget::new(1 << 20));
        let mut parent = Arc::unwrap_or_clone(interior(4));
        let child = interior(3);
        {
            let Node::Interior(p) = &parent else {
                unreachable!()
            };
            assert!(p.pins.pin(0, 4, 100, &child, &budget).is_some());
        }
        parent.changed();
        let Node::Interior(p) = &parent else {
            unreachable!()
        };
        assert!(p.pins.get(0, 100).is_none());
        assert_eq!(budget.used(), 0);
    }
}
