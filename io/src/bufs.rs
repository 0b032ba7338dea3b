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

/// Gives every kept free buffer back to the allocator: for when the memory is about to be
/// needed for something else (the buffer pool was just made smaller). Follow with
/// [`trim_allocator`] to return it to the system.
pub fn release_kept() {
    let kept = std::mem::take(&mut *FREE.lock().unwrap_or_else(PoisonError::into_inner));
    drop(kept);
}

/// Shares the buffer as `Bytes`; it returns to the free list when the last clone drops.
pub fn into_bytes(buf: PageBuf) -> Bytes {
    Bytes::from_owner(buf)
}

/// Set while a thread gives free memory back (at most one does at a time).
static TRIMMING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Gives the C allocator's free memory back to the system, on a thread of its own, unless
/// that is already under way. Called after a checkpoint or a bulk write's spill has freed
/// many pages' worth of nodes.
///
/// glibc's `malloc` keeps an arena per thread (up to eight per core), and memory freed
/// in an arena serves only that arena: after a checkpoint frees the dirty nodes one tokio
/// worker allocated, the next nodes (built on the other worker) take fresh memory, so
/// each arena grows to the peak and the process holds several. `malloc_trim` returns the
/// free pages of every arena. It takes a few milliseconds to tens of milliseconds, so it
/// never runs on the caller's thread (a tokio worker). Elsewhere (another C library, or a
/// program with its own global allocator) it does nothing.
pub fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::atomic::Ordering;
        if TRIMMING.swap(true, Ordering::AcqRel) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("persistx-trim".into())
            .spawn(|| {
                #[allow(unsafe_code)]
                // SAFETY: malloc_trim takes no pointer; it only walks the allocator's own
                // free lists (under the arenas' locks) and advises the kernel.
                unsafe {
                    libc::malloc_trim(0);
                }
                TRIMMING.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            TRIMMING.store(false, Ordering::Release);
        }
    }
}
