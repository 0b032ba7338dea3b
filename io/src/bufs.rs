//! Page-sized buffers (pages read, pages encoded by checkpoints), recycled through one
//! shared free list.
//!
//! A buffer-pool miss reads a page into a fresh buffer on the reader's thread, and the
//! page leaves memory when another thread's insert evicts it (the same for the pages a
//! checkpoint encodes and then caches). With the C allocator's
//! per-thread arenas, memory freed that way returns to the reading thread's arena, so every
//! reading thread's arena grows to hold a pool's worth of pages. Buffers returned here are
//! reused by whichever thread reads next: the process holds about the pages in use.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

/// Free buffers kept at most (16 MiB of 4 KiB pages); more are given back to the allocator.
const KEEP: usize = 4096;

static FREE: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// A buffer that goes back to the free list when dropped.
pub struct PageBuf(Option<Box<[u8]>>);

impl Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl AsRef<[u8]> for PageBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
            if free.len() < KEEP {
                free.push(b);
            }
        }
    }
}

/// A buffer of `len` bytes (recycled if one of that size is free; its old bytes are
/// overwritten by the read that fills it).
pub fn take(len: usize) -> PageBuf {
    let recycled = FREE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_if(|b| b.len() == len);
    PageBuf(Some(
        recycled.unwrap_or_else(|| vec![0u8; len].into_boxed_slice()),
    ))
}

/// Shares the buffer as `Bytes`; it returns to the free list when the last clone drops.
pub fn into_bytes(buf: PageBuf) -> Bytes {
    Bytes::from_owner(buf)
}
