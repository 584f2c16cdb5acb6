//! A heap buffer aligned to the block, as O_DIRECT requires of user memory, for the backends
//! that do not get their buffers from glommio.

use std::{alloc::Layout, ptr::NonNull};

use super::{BlockBuf, BLOCK_BYTES};

/// An owned, block-aligned byte buffer whose length is a multiple of the block.
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its allocation exclusively (like a `Box<[u8]>`); moving it to the
// thread that performs a pwrite is safe.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads the bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn layout(len: usize) -> Layout {
        assert!(
            len > 0 && (len as u64).is_multiple_of(BLOCK_BYTES),
            "aligned buffers are whole blocks, not {len} bytes"
        );
        Layout::from_size_align(len, BLOCK_BYTES as usize).expect("block layout")
    }

    /// A zero-filled buffer of `len` bytes (a positive multiple of the block).
    ///
    /// # Panics
    /// A length that is not a positive multiple of the block, or an allocation failure.
    #[must_use]
    pub fn zeroed(len: usize) -> AlignedBuf {
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len }
    }

    /// The bytes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` initialised (zeroed at allocation) bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The start of the buffer, for a kernel that writes into it (a read).
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The buffer's length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty (never: buffers are whole blocks).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl BlockBuf for AlignedBuf {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this same layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_whole_blocks() {
        let mut b = AlignedBuf::zeroed(3 * BLOCK_BYTES as usize);
        assert_eq!(b.as_slice().as_ptr() as usize % BLOCK_BYTES as usize, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.bytes_mut()[5] = 7;
        assert_eq!(b.as_slice()[5], 7);
        assert_eq!(b.len(), 3 * BLOCK_BYTES as usize);
    }

    #[test]
    #[should_panic(expected = "whole blocks")]
    fn a_partial_block_is_refused() {
        let _ = AlignedBuf::zeroed(100);
    }
}
