//! Keeping the append path's large buffers in the heap rather than in fresh mappings.
//!
//! Every flush allocates a write buffer as large as the batches it writes (up to
//! `write_bytes_max`, 4 MiB by default) and a patched copy of each batch, which the batch
//! cache keeps. glibc serves an allocation above its mmap threshold with a fresh anonymous
//! mapping and unmaps it on free. The threshold starts at 128 KiB and adapts upwards only to
//! blocks that were freed, so with group commit's 4 MiB writes every flush mapped fresh pages:
//! measured in `keel-bench engine` (1 MiB batches, 4 appenders on one partition), 256 page
//! faults per append and 40% of the shard's time in the kernel, against none with one
//! appender, whose 1 MiB buffers the adaptive threshold had moved into the heap.
//!
//! [`keep_large_buffers`] fixes the threshold at glibc's largest (32 MiB) and raises the trim
//! threshold, so that these buffers come from the heap and their pages are reused from one
//! flush to the next. The memory a process keeps for it is bounded: a freed block is reused by
//! the next allocation of its arena, and at most the trim threshold of free memory per arena
//! stays mapped at the top of its heap. Allocations of 32 MiB and more (large requests) are
//! still separate mappings.
//!
//! It changes the process's allocator settings, so the programs call it (the broker and
//! keel-bench, at start), not the engine. Other C libraries than glibc ignore it.

/// glibc's largest mmap threshold on 64-bit targets (`DEFAULT_MMAP_THRESHOLD_MAX`): allocations
/// below it come from the heap.
pub const MMAP_THRESHOLD_BYTES: usize = 32 << 20;

/// Free memory at the top of an arena's heap past which glibc returns it to the kernel.
pub const TRIM_THRESHOLD_BYTES: usize = 64 << 20;

/// Sets glibc's mmap and trim thresholds (see the module documentation). Returns whether the
/// C library took both; call it once at start, before the shards run.
#[must_use]
pub fn keep_large_buffers() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let to_int = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets the allocator's tuning parameters; no memory is passed.
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, to_int(MMAP_THRESHOLD_BYTES)) };
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, to_int(TRIM_THRESHOLD_BYTES)) };
        mmap == 1 && trim == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_thresholds() {
        assert!(keep_large_buffers());
        // Setting them again is harmless.
        assert!(keep_large_buffers());
    }
}
