//! The storage seam: the few file operations the log needs, behind a trait, so that tests can
//! inject faults (short writes, failed fsync, crash-before-sync) and other I/O backends can be
//! measured against the default one. Tests use [`crate::sim::SimStorage`].
//!
//! Three backends, chosen at start ([`IoBackend`], `--io-backend`), all writing the same bytes
//! (the on-disk format does not depend on the backend):
//!
//! | backend | file I/O | runtime ([`crate::rt`]) | module |
//! |---|---|---|---|
//! | `glommio` (default) | glommio DMA files: O_DIRECT through glommio's io_uring rings | glommio | [`dma`] |
//! | `uring` | the io-uring crate on a ring of the shard's own: fixed buffers and files, SQPOLL, queue depth | poll | [`uring`] |
//! | `pwrite` | `pwrite`/`pread`/`fdatasync` (O_DIRECT or buffered) on a thread pool | poll | [`pwrite`] |
//!
//! `pwrite` is the fallback where io_uring cannot be set up at all. [`AnyStorage`] is the one
//! type the engine runs on in production: an enum over the three, so that the broker is not
//! generic over its backend and a branch per I/O is the whole cost of the choice.
//!
//! Writes are whole aligned blocks: the caller allocates an aligned buffer with
//! [`StorageFile::alloc`], fills it and hands it over. Reads may be at any position and length
//! and come back as `Bytes` (one copy out of the I/O buffer, so that the bytes may travel to
//! another shard).

#![allow(async_fn_in_trait)] // Shards are single-threaded: these futures are deliberately !Send.

use std::{io, path::Path};

use bytes::Bytes;

mod aligned;
mod any;
pub mod dma;
pub mod pwrite;
pub mod uring;

pub use aligned::AlignedBuf;
pub use any::{AnyBuf, AnyFile, AnyStorage};
pub use dma::{DmaBuf, DmaFile, DmaStorage};
pub use pwrite::PwriteStorage;
pub use uring::{UringOptions, UringStorage};

use crate::rt::Runtime;

/// The file I/O path a broker runs on (`--io-backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// glommio DMA files (io_uring, O_DIRECT).
    #[default]
    Glommio,
    /// The io-uring crate on the shard's own ring.
    Uring,
    /// Positional writes and fdatasync without io_uring.
    Pwrite,
}

impl IoBackend {
    /// Every backend, in the order reports list them.
    pub const ALL: [IoBackend; 3] = [IoBackend::Glommio, IoBackend::Uring, IoBackend::Pwrite];

    /// The runtime a shard of this backend runs on: glommio's files need glommio's executor;
    /// the others run on the poll runtime (epoll sockets), which needs no io_uring.
    #[must_use]
    pub const fn runtime(self) -> Runtime {
        match self {
            IoBackend::Glommio => Runtime::Glommio,
            IoBackend::Uring | IoBackend::Pwrite => Runtime::Poll,
        }
    }

    /// Whether the backend needs io_uring.
    #[must_use]
    pub const fn needs_io_uring(self) -> bool {
        !matches!(self, IoBackend::Pwrite)
    }

    /// The name `--io-backend` takes.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            IoBackend::Glommio => "glommio",
            IoBackend::Uring => "uring",
            IoBackend::Pwrite => "pwrite",
        }
    }
}

impl std::fmt::Display for IoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IoBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        IoBackend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown io backend '{s}' (have: glommio, uring, pwrite)"))
    }
}

/// The settings of the backends that have any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackendOptions {
    /// `pwrite`: open files with O_DIRECT (true) or go through the page cache (false).
    pub pwrite_direct: bool,
    /// `uring`: the ring's settings.
    pub uring: UringOptions,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            pwrite_direct: true,
            uring: UringOptions::default(),
        }
    }
}

/// Block size every write position and length is a multiple of.
pub const BLOCK_BYTES: u64 = 4096;

/// Rounds `v` down to a block boundary.
#[must_use]
pub const fn align_down(v: u64) -> u64 {
    v & !(BLOCK_BYTES - 1)
}

/// Rounds `v` up to a block boundary.
#[must_use]
pub const fn align_up(v: u64) -> u64 {
    (v + BLOCK_BYTES - 1) & !(BLOCK_BYTES - 1)
}

/// A read of `len` bytes at `pos` widened to whole blocks, as O_DIRECT reads must be, and
/// how to cut the asked bytes back out of it (every backend's `read_at` on O_DIRECT files):
/// ```text
///   start            pos             pos + len        end      (start, end: block aligned)
///   |<---- skip ---->|<----- len ----->|               |
///   |<--------------------- span --------------------->|
/// ```
#[derive(Clone, Copy, Debug)]
pub(crate) struct AlignedRead {
    /// Where the aligned read starts.
    pub start: u64,
    /// How many bytes it reads.
    pub span: usize,
    skip: usize,
    len: usize,
}

impl AlignedRead {
    pub(crate) fn new(pos: u64, len: usize) -> io::Result<AlignedRead> {
        let start = align_down(pos);
        let span = usize::try_from(align_up(pos + len as u64) - start)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(AlignedRead {
            start,
            span,
            skip: (pos - start) as usize,
            len,
        })
    }

    /// The asked bytes, out of an aligned read that put `read` bytes in `buf`: fewer at the
    /// end of the file, none past it.
    pub(crate) fn asked(&self, buf: &[u8], read: usize) -> Bytes {
        let have = read.min(buf.len()).saturating_sub(self.skip).min(self.len);
        Bytes::copy_from_slice(&buf[self.skip..self.skip + have])
    }
}

const _: () = assert!(BLOCK_BYTES.is_power_of_two());
const _: () = assert!(align_up(1) == BLOCK_BYTES && align_down(BLOCK_BYTES + 1) == BLOCK_BYTES);

/// A file system as the log uses it. The directory operations default to the standard
/// library (the real backends share them; the simulated disk overrides every one).
pub trait Storage: Clone + 'static {
    /// An open file.
    type File: StorageFile;

    /// Opens a file for reading and writing, creating it (empty) when `create` is set.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    /// Deletes a file. On the `blocking` thread pool, whatever the runtime: unlinking a
    /// large file frees its extents inside the call (hundreds of ms for a preallocated
    /// segment), which must not stall the shard.
    async fn remove(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking::unblock(move || std::fs::remove_file(path)).await
    }
    /// Renames a file, replacing `to` if it exists. On the `blocking` pool, as the other
    /// directory operations; durable once the directory is synced.
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        blocking::unblock(move || std::fs::rename(from, to)).await
    }
    /// Makes the directory's entries (created, renamed, removed files) durable. On the
    /// `blocking` pool too: it waits for a journal commit.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = dir.to_path_buf();
        blocking::unblock(move || std::fs::File::open(dir)?.sync_all()).await
    }
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }
    /// The names of the files in a directory.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    /// Called once per shard before any file is opened, with the data directory.
    async fn prepare(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    /// Replaces a small file atomically: write a temp file, sync it, rename it over `path`,
    /// sync the directory. A crash leaves either the old or the new content. On the
    /// `blocking` pool: its two syncs wait for journal commits (milliseconds, and hundreds of
    /// them behind a busy journal), which must not stall the shard's other partitions while a
    /// roll writes its producer snapshot.
    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let (path, data) = (path.to_path_buf(), data.to_vec());
        blocking::unblock(move || write_atomic_std(&path, &data)).await
    }
}

/// An aligned buffer handed to [`StorageFile::write_at`].
pub trait BlockBuf {
    /// The bytes, to fill.
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// One open file.
pub trait StorageFile: 'static {
    /// An aligned buffer for writes.
    type Buf: BlockBuf;

    /// Allocates an aligned, zeroed write buffer of `len` bytes (a multiple of the block).
    fn alloc(&self, len: usize) -> Self::Buf;
    /// Like [`StorageFile::alloc`], but the contents are unspecified: the caller writes every
    /// byte before the buffer is written (the append path, which fills the whole buffer,
    /// saves a pass over it).
    fn alloc_unzeroed(&self, len: usize) -> Self::Buf {
        self.alloc(len)
    }
    /// Writes the whole buffer at `pos` (block aligned). Returns the bytes written, which a
    /// faulty disk may make fewer than asked.
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> io::Result<usize>;
    /// [`StorageFile::write_at`], then the written buffer itself handed back as `Bytes`
    /// where the backend can make one that may travel to other shards, so that the batch
    /// cache keeps the bytes it wrote without a second copy; `None` where it cannot (the
    /// caller copies instead). The default cannot.
    async fn write_at_shared(
        &self,
        buf: Self::Buf,
        pos: u64,
    ) -> io::Result<(usize, Option<Bytes>)> {
        Ok((self.write_at(buf, pos).await?, None))
    }
    /// Reads up to `len` bytes at `pos`; fewer at the end of the file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// fdatasync: everything written before it is durable once it returns Ok.
    async fn sync(&self) -> io::Result<()>;
    /// Sets the file length.
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// Reserves blocks up to `len`; the file size grows to `len` (writes inside the size
    /// avoid an inode size update per write; recovery finds the logical end by scanning).
    async fn preallocate(&self, len: u64) -> io::Result<()>;
    /// The file's size in bytes.
    async fn size(&self) -> io::Result<u64>;
    /// Closes the file.
    async fn close(self) -> io::Result<()>;
}

/// [`Storage::write_atomic`] with the standard library, for small files written rarely
/// (the catalog, shutdown markers): temp file, fsync, rename, fsync the directory.
///
/// # Errors
/// Any step's I/O error.
pub fn write_atomic_std(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
