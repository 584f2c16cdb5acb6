//! The storage seam: the few file operations the log needs, behind a trait, so that tests can
//! inject faults (short writes, failed fsync, crash-before-sync) and other I/O backends can be
//! measured against the default one. Production uses [`DmaStorage`]: glommio DMA files
//! (O_DIRECT, io_uring). Tests use [`crate::sim::SimStorage`].
//!
//! Writes are whole aligned blocks: the caller allocates an aligned buffer with
//! [`StorageFile::alloc`], fills it and hands it over. Reads may be at any position and length
//! and come back as `Bytes` (one copy out of the DMA buffer, so that the bytes may travel to
//! another shard).

#![allow(async_fn_in_trait)] // Shards are single-threaded: these futures are deliberately !Send.

use std::{io, path::Path};

use bytes::Bytes;

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

const _: () = assert!(BLOCK_BYTES.is_power_of_two());
const _: () = assert!(align_up(1) == BLOCK_BYTES && align_down(BLOCK_BYTES + 1) == BLOCK_BYTES);

/// A file system as the log uses it.
pub trait Storage: Clone + 'static {
    /// An open file.
    type File: StorageFile;

    /// Opens a file for reading and writing, creating it (empty) when `create` is set.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    /// Deletes a file.
    async fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created, renamed, removed files) durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in a directory.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> bool;
    /// Called once per shard before any file is opened, with the data directory.
    async fn prepare(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    /// Replaces a small file atomically: write a temp file, sync it, rename it over `path`,
    /// sync the directory. A crash leaves either the old or the new content.
    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()>;
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

/// glommio DMA files: O_DIRECT reads and writes through io_uring.
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaStorage;

/// A glommio DMA file.
#[derive(Debug)]
pub struct DmaFile(glommio::io::DmaFile);

/// A glommio DMA buffer.
#[derive(Debug)]
pub struct DmaBuf(glommio::io::DmaBuffer);

impl BlockBuf for DmaBuf {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}

fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::other(e.to_string())
}

fn glommio_to_io(e: glommio::GlommioError<()>) -> io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => to_io(other),
    }
}

impl Storage for DmaStorage {
    type File = DmaFile;

    /// glommio decides per block device, once per process, whether reads may use the
    /// IOPOLL ring, by reading the first block of the first DMA file opened on it. When that
    /// file is empty the read "succeeds" without touching the device, and every later read
    /// fails with EOPNOTSUPP on devices without poll queues (virtio). So the first DMA file
    /// opened is a probe file with one written block, which makes the probe test the device.
    async fn prepare(&self, dir: &Path) -> io::Result<()> {
        // One probe file per call: every shard prepares at once, in the same process. (Added
        // by the server session: a shared name let one shard delete another's probe.)
        static PROBE_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = PROBE_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = dir.join(format!(".iopoll-probe-{}-{seq}", std::process::id()));
        std::fs::write(&probe, vec![0u8; BLOCK_BYTES as usize])?;
        let opened = glommio::io::DmaFile::open(&probe)
            .await
            .map_err(glommio_to_io);
        let _ = std::fs::remove_file(&probe);
        opened?.close().await.map_err(glommio_to_io)
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<DmaFile> {
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await
            .map_err(glommio_to_io)?;
        Ok(DmaFile(file))
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        write_atomic_std(path, data)
    }
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

impl StorageFile for DmaFile {
    type Buf = DmaBuf;

    fn alloc(&self, len: usize) -> DmaBuf {
        let mut buf = self.0.alloc_dma_buffer(len);
        buf.as_bytes_mut().fill(0);
        DmaBuf(buf)
    }

    fn alloc_unzeroed(&self, len: usize) -> DmaBuf {
        DmaBuf(self.0.alloc_dma_buffer(len))
    }

    async fn write_at(&self, buf: DmaBuf, pos: u64) -> io::Result<usize> {
        self.0.write_at(buf.0, pos).await.map_err(glommio_to_io)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let result = self.0.read_at(pos, len).await.map_err(glommio_to_io)?;
        Ok(Bytes::copy_from_slice(&result))
    }

    async fn sync(&self) -> io::Result<()> {
        self.0.fdatasync().await.map_err(glommio_to_io)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.truncate(len).await.map_err(glommio_to_io)
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.0.pre_allocate(len, false).await.map_err(glommio_to_io)
    }

    async fn size(&self) -> io::Result<u64> {
        self.0.file_size().await.map_err(glommio_to_io)
    }

    async fn close(self) -> io::Result<()> {
        self.0.close().await.map_err(glommio_to_io)
    }
}
