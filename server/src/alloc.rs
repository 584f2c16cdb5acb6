//! The broker's global allocator: mimalloc, except that very large allocations are reserved
//! lazily, so that a length read off the wire cannot abort the process.
//!
//! Why mimalloc and not the system allocator: every flush allocates a write buffer as large as
//! the batches it writes (up to `write_bytes_max`, 4 MiB by default), and each batch a patched
//! copy that the batch cache keeps. glibc serves blocks above its mmap threshold as fresh
//! mappings, unmapped on free, and its threads' arenas unmap heaps that empty; so with group
//! commit's 4 MiB writes every flush faulted in fresh pages. `keel-bench engine`, 1 MiB batches,
//! 4 appenders on one partition: 256 page faults per append, 40% of the shard's time in the
//! kernel and 520 to 720 MB/s with glibc; 1.4 faults, 7% and 930 to 970 MB/s with mimalloc,
//! which keeps freed pages per thread and reuses them (it returns memory unused for 10 ms to
//! the kernel, so the broker's footprint still follows its load). Fixing glibc's thresholds with
//! `mallopt` helped only sometimes: an arena heap that empties is still unmapped.
//!
//! kafka-protocol's decoders read an array, string or bytes length from the request and
//! allocate for it before decoding one element (`Vec::with_capacity(n)`). A 14-byte Metadata
//! request that claims 2^31 - 1 topics asks for ~100 GB; the system allocator refuses, and a
//! failed allocation aborts a Rust process: any client could kill the broker. The decoder then
//! fails a few bytes later on the missing elements, so the memory is never used.
//!
//! So allocations of `LAZY_BYTES_MIN` or more are anonymous `mmap`s with `MAP_NORESERVE`: the
//! kernel reserves address space only, and pages are backed when first touched. The bogus
//! reservation costs nothing and is unmapped when the decode error drops it. Real large buffers
//! (a 100 MiB produce request) behave as before: the allocator serves such blocks with `mmap`
//! too; the only difference is that memory is committed on touch rather than on reservation
//! (the kernel's default overcommit already works that way). Under strict overcommit
//! (`vm.overcommit_memory = 2`) `MAP_NORESERVE` is ignored and such a request would still abort;
//! the broker logs the mode at start.
//!
//! Request sizes themselves stay bounded by `request_bytes_max` before any decoding.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;

/// Allocations at least this large are lazily reserved mappings.
pub const LAZY_BYTES_MIN: usize = 64 << 20;

const PAGE_BYTES: usize = 4096;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct LazyLargeAlloc;

fn is_lazy(layout: Layout) -> bool {
    layout.size() >= LAZY_BYTES_MIN && layout.align() <= PAGE_BYTES
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: small layouts are forwarded to `MiMalloc` unchanged; large ones are page-aligned
// anonymous mappings (zero-filled, so valid for `alloc_zeroed`), released with `munmap` of the
// same size. Which path a block took is decided by its layout alone, which the caller passes
// unchanged to `dealloc` and `realloc`.
unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_lazy(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(layout) {
            // SAFETY: `ptr` came from `map(layout.size())`.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` rounded to `layout.align()` fits an isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_lazy(layout) && !is_lazy(new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_layout` is valid as argued above.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct and at least `min` bytes long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_reservation_succeeds_and_is_released() {
        let a = LazyLargeAlloc;
        let layout = Layout::from_size_align(100 << 30, 8).expect("layout");
        // SAFETY: a valid non-zero layout; freed below with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(
                !p.is_null(),
                "100 GiB of address space is reserved, not committed"
            );
            p.write(1);
            a.dealloc(p, layout);
        }
    }

    #[test]
    fn realloc_moves_between_paths_and_keeps_bytes() {
        let a = LazyLargeAlloc;
        let small = Layout::from_size_align(1024, 8).expect("layout");
        // SAFETY: valid layouts; each block is used within its size and freed once.
        unsafe {
            let p = a.alloc(small);
            p.write_bytes(7, 1024);
            let q = a.realloc(p, small, LAZY_BYTES_MIN);
            assert_eq!(*q.add(1023), 7);
            let big = Layout::from_size_align(LAZY_BYTES_MIN, 8).expect("layout");
            let r = a.realloc(q, big, 2048);
            assert_eq!(*r.add(1000), 7);
            a.dealloc(r, Layout::from_size_align(2048, 8).expect("layout"));
        }
    }
}
