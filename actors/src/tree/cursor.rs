//! Cursors: positions between entries of a tree snapshot, moving in both directions.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::{Child, Node, PageSource, Val, ValRef, child_index, load, load_child};
use crate::error::Result;

/// A position between two entries of a tree (a "gap"). [`Cursor::next`] returns the entry
/// after the gap and moves past it; [`Cursor::prev`] the entry before it. The cursor holds
/// the nodes of its path, so it stays valid however the tree changes later (it reads the
/// snapshot it was made from).
#[derive(Debug, Clone)]
pub struct Cursor {
    /// Interior levels from the root: node and the index of the child taken.
    path: Vec<(Arc<Node>, usize)>,
    /// The leaf and the gap index in it (0..=len).
    leaf: Arc<Node>,
    gap: usize,
}

fn leaf_len(node: &Node) -> usize {
    match node {
        Node::Leaf(l) => l.len(),
        Node::Interior(_) => 0,
    }
}

impl Cursor {
    /// A cursor at the gap before the first key that is `>= key` (`Included`), `> key`
    /// (`Excluded`), or before the first entry (`Unbounded`).
    pub async fn lower(src: &dyn PageSource, root: &Child, bound: Bound<&[u8]>) -> Result<Cursor> {
        Self::seek(src, root, bound, true).await
    }

    /// A cursor at the gap after the last key that is `<= key` (`Included`), `< key`
    /// (`Excluded`), or after the last entry (`Unbounded`).
    pub async fn upper(src: &dyn PageSource, root: &Child, bound: Bound<&[u8]>) -> Result<Cursor> {
        Self::seek(src, root, bound, false).await
    }

    async fn seek(
        src: &dyn PageSource,
        root: &Child,
        bound: Bound<&[u8]>,
        lower: bool,
    ) -> Result<Cursor> {
        let mut path = Vec::new();
        let mut node = load(src, &root.ptr).await?;
        loop {
            let next = match &*node {
                Node::Leaf(l) => {
                    let gap = match bound {
                        Bound::Unbounded if lower => 0,
                        Bound::Unbounded => l.len(),
                        Bound::Included(k) if lower => l.rank(k, false),
                        Bound::Included(k) => l.rank(k, true),
                        Bound::Excluded(k) if lower => l.rank(k, true),
                        Bound::Excluded(k) => l.rank(k, false),
                    };
                    return Ok(Cursor {
                        path,
                        leaf: node,
                        gap,
                    });
                }
                Node::Interior(int) => {
                    let i = match bound {
                        Bound::Unbounded if lower => 0,
                        Bound::Unbounded => int.children.len() - 1,
                        Bound::Included(k) | Bound::Excluded(k) => child_index(int, k),
                    };
                    (i, load_child(src, int, i).await?)
                }
            };
            path.push((std::mem::replace(&mut node, next.1), next.0));
        }
    }

    /// Returns the entry after the cursor and moves past it; `None` at the end.
    pub async fn next(&mut self, src: &dyn PageSource) -> Result<Option<(Bytes, Val)>> {
        loop {
            if let Node::Leaf(l) = &*self.leaf
                && self.gap < l.len()
            {
                let e = (l.key_bytes(self.gap), l.val(self.gap));
                self.gap += 1;
                return Ok(Some(e));
            }
            if !self.step(src, true).await? {
                return Ok(None);
            }
        }
    }

    /// Returns the entry before the cursor and moves before it; `None` at the start.
    pub async fn prev(&mut self, src: &dyn PageSource) -> Result<Option<(Bytes, Val)>> {
        loop {
            if let Node::Leaf(l) = &*self.leaf
                && self.gap > 0
            {
                self.gap -= 1;
                return Ok(Some((l.key_bytes(self.gap), l.val(self.gap))));
            }
            if !self.step(src, false).await? {
                return Ok(None);
            }
        }
    }

    /// Moves past the entry after the cursor (`forward`) or before it, and hands it to `f`
    /// by reference: no copy and no reference count of the leaf's buffer. `None` at the end.
    pub async fn step_with<R>(
        &mut self,
        src: &dyn PageSource,
        forward: bool,
        f: impl FnOnce(&[u8], ValRef<'_>) -> R,
    ) -> Result<Option<R>> {
        loop {
            if let Node::Leaf(l) = &*self.leaf {
                let at = if forward {
                    (self.gap < l.len()).then_some(self.gap)
                } else {
                    self.gap.checked_sub(1)
                };
                if let Some(i) = at {
                    self.gap = if forward { i + 1 } else { i };
                    return Ok(Some(f(l.key(i), l.value(i))));
                }
            }
            if !self.step(src, forward).await? {
                return Ok(None);
            }
        }
    }

    /// Moves to the start of the next leaf (or the end of the previous one). False when
    /// there is none.
    async fn step(&mut self, src: &dyn PageSource, forward: bool) -> Result<bool> {
        // Climb to the lowest level that has a sibling in the direction of travel.
        let mut depth = self.path.len();
        loop {
            if depth == 0 {
                return Ok(false);
            }
            let (node, i) = &self.path[depth - 1];
            let m = match &**node {
                Node::Interior(int) => int.children.len(),
                Node::Leaf(_) => 0,
            };
            if (forward && i + 1 < m) || (!forward && *i > 0) {
                break;
            }
            depth -= 1;
        }
        self.path.truncate(depth);
        let last = self.path.len() - 1;
        if forward {
            self.path[last].1 += 1;
        } else {
            self.path[last].1 -= 1;
        }
        // Descend to the first (or last) leaf of the new subtree.
        let (node, i) = &self.path[last];
        let mut node = match &**node {
            Node::Interior(int) => load_child(src, int, *i).await?,
            Node::Leaf(_) => return Ok(false),
        };
        loop {
            let (j, child) = match &*node {
                Node::Leaf(_) => {
                    self.gap = if forward { 0 } else { leaf_len(&node) };
                    self.leaf = node;
                    return Ok(true);
                }
                Node::Interior(int) => {
                    let j = if forward { 0 } else { int.children.len() - 1 };
                    (j, load_child(src, int, j).await?)
                }
            };
            self.path.push((std::mem::replace(&mut node, child), j));
        }
    }
}
