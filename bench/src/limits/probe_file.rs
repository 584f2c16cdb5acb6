//! The two things every disk probe needs: a preallocated O_DIRECT file that removes itself, and
//! 4 KiB-aligned buffers to write from.
//!
//! O_DIRECT bypasses the page cache, so the kernel DMAs straight from our memory. That is only
//! allowed when the buffer address, the length and the file position are all multiples of the
//! device's logical block size. 4096 covers every device we expect (512 and 4096 byte sectors):
//!
//! ```text
//!   buffer address  % 4096 == 0   (Layout align 4096)
//!   block_bytes     % 4096 == 0   (checked by ProbeFile::check_block)
//!   file position   % 4096 == 0   (positions advance by whole blocks from 0)
//! ```

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, ensure, Context};

/// The alignment of every O_DIRECT buffer, length and position.
pub const DIRECT_IO_ALIGN_BYTES: usize = 4096;

/// A zero-initialised heap buffer aligned to [`DIRECT_IO_ALIGN_BYTES`], filled with a
/// non-repeating byte pattern so a compressing or deduplicating layer below cannot shortcut it.
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len_bytes` (a non-zero multiple of 4096) aligned to 4096.
    pub fn new(len_bytes: usize) -> anyhow::Result<Self> {
        ensure!(
            len_bytes > 0 && len_bytes.is_multiple_of(DIRECT_IO_ALIGN_BYTES),
            "buffer length {len_bytes} is not a positive multiple of {DIRECT_IO_ALIGN_BYTES}"
        );
        let layout = Layout::from_size_align(len_bytes, DIRECT_IO_ALIGN_BYTES)
            .with_context(|| format!("layout for a {len_bytes} byte aligned buffer"))?;
        // SAFETY: the layout has a non-zero size (checked above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        let mut buf = Self { ptr, layout };
        buf.fill_pattern(len_bytes as u64);
        Ok(buf)
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr points to layout.size() initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }

    /// Fills the buffer with xorshift64 output seeded by `seed`.
    fn fill_pattern(&mut self, seed: u64) {
        let mut state = seed | 1;
        for chunk in self.as_mut_slice().chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was returned by alloc_zeroed with this exact layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A file opened write-only with O_DIRECT in the probe directory, preallocated with fallocate,
/// and removed when dropped (also on error paths).
#[derive(Debug)]
pub struct ProbeFile {
    file: File,
    path: PathBuf,
    len_bytes: u64,
}

impl ProbeFile {
    /// Creates `keel-probe-<tag>-<pid>-<n>.dat` in `dir` and preallocates `len_bytes`.
    pub fn create(dir: &Path, tag: &str, len_bytes: u64) -> anyhow::Result<Self> {
        let probe = Self::create_empty(dir, tag, len_bytes)?;
        let len_off = libc::off_t::try_from(len_bytes)
            .with_context(|| format!("probe file length {len_bytes} exceeds off_t"))?;
        // SAFETY: plain syscall on an fd we own; no memory is passed.
        let rc = unsafe { libc::fallocate(probe.fd(), 0, 0, len_off) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| {
                format!("fallocate {len_bytes} bytes for {}", probe.path.display())
            });
        }
        Ok(probe)
    }

    /// As [`ProbeFile::create`], without preallocating: the file starts empty, and `len_bytes`
    /// is how far the probe may write into it.
    pub fn create_empty(dir: &Path, tag: &str, len_bytes: u64) -> anyhow::Result<Self> {
        static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(0);
        let file_id = NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("keel-probe-{tag}-{}-{file_id}.dat", std::process::id());
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("creating O_DIRECT probe file {}", path.display()))?;
        // From here on, Drop removes the file whatever happens next.
        let probe = Self {
            file,
            path,
            len_bytes,
        };
        Ok(probe)
    }

    /// Checks that `block_bytes` suits O_DIRECT and that `slot_count` blocks fit in the file.
    pub fn check_block(&self, block_bytes: usize, slot_count: usize) -> anyhow::Result<()> {
        if block_bytes == 0 || !block_bytes.is_multiple_of(DIRECT_IO_ALIGN_BYTES) {
            bail!("block size {block_bytes} is not a positive multiple of {DIRECT_IO_ALIGN_BYTES} (O_DIRECT)");
        }
        let needed_bytes = (block_bytes as u64).saturating_mul(slot_count as u64);
        ensure!(
            needed_bytes <= self.len_bytes,
            "probe file of {} bytes cannot hold {slot_count} blocks of {block_bytes} bytes",
            self.len_bytes
        );
        Ok(())
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }
}

impl Drop for ProbeFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove probe file");
        }
    }
}

/// Sequential block positions that wrap to 0 before running past the end of the file, so a
/// probe can run for any duration on a file of bounded size.
///
/// ```text
///   file of 4 blocks:  |0|1|2|3|   positions 0,1,2,3,0,1,2,3,... (times block_bytes)
/// ```
#[derive(Debug)]
pub struct WrappingCursor {
    next_pos: u64,
    block_bytes: u64,
    end_pos: u64,
}

impl WrappingCursor {
    pub fn new(block_bytes: usize, file_bytes: u64) -> Self {
        let block_bytes = block_bytes as u64;
        // The last whole block ends here; anything after it is never written.
        let end_pos = file_bytes - file_bytes % block_bytes.max(1);
        Self {
            next_pos: 0,
            block_bytes,
            end_pos,
        }
    }

    /// The position of the next block, advancing the cursor.
    pub fn next_pos(&mut self) -> u64 {
        if self.next_pos + self.block_bytes > self.end_pos {
            self.next_pos = 0;
        }
        let pos = self.next_pos;
        self.next_pos += self.block_bytes;
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_aligned_and_patterned() -> anyhow::Result<()> {
        let buf = AlignedBuf::new(8192)?;
        assert_eq!(buf.as_ptr() as usize % DIRECT_IO_ALIGN_BYTES, 0);
        assert_eq!(buf.len(), 8192);
        assert!(buf.as_slice().iter().any(|&b| b != 0));
        assert!(AlignedBuf::new(100).is_err());
        assert!(AlignedBuf::new(0).is_err());
        Ok(())
    }

    #[test]
    fn cursor_wraps_before_the_end() {
        let mut cursor = WrappingCursor::new(4096, 3 * 4096 + 100);
        let positions: Vec<u64> = (0..5).map(|_| cursor.next_pos()).collect();
        assert_eq!(positions, [0, 4096, 8192, 0, 4096]);
    }
}
