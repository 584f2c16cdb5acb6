//! The `glommio` backend: DMA files (O_DIRECT) through glommio's io_uring rings, on the
//! glommio runtime.

use std::{
    io,
    mem::ManuallyDrop,
    path::Path,
    rc::Rc,
    sync::{Arc, Mutex},
};

use bytes::Bytes;

use super::{AlignedRead, BlockBuf, Storage, StorageFile, BLOCK_BYTES};

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

/// A written DMA buffer shared as `Bytes` with other shards.
///
/// glommio's buffers are not `Send`: one from the shard's registered pool holds an `Rc` of
/// the pool's allocator and gives its memory back to it when dropped. Reading the bytes from
/// another thread is safe, as nothing writes them once the write completed; dropping the
/// buffer there is not. So when the last `Bytes` of a buffer goes away on another thread, the
/// buffer is queued for its home thread ([`Returned`]), which frees it the next time it
/// allocates a write buffer, or when it ends. The `Rc` inside moves between threads but is
/// only ever touched (cloned, dropped) on the home thread.
struct SharedDma {
    buf: ManuallyDrop<glommio::io::DmaBuffer>,
    home: Arc<Returned>,
}

// SAFETY: off its home thread the buffer is only read (`as_ref`) or queued for the home
// thread to drop (see `Drop`); everything that touches its `Rc` runs on the home thread.
unsafe impl Send for SharedDma {}

impl AsRef<[u8]> for SharedDma {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_bytes()
    }
}

impl Drop for SharedDma {
    fn drop(&mut self) {
        // SAFETY: `buf` is taken once, here, and never used again.
        let buf = unsafe { ManuallyDrop::take(&mut self.buf) };
        let at_home = HOME
            .try_with(|home| Arc::ptr_eq(&home.0, &self.home))
            .unwrap_or(false);
        if at_home {
            drop(buf);
        } else {
            self.home.give_back(buf);
        }
    }
}

/// Buffers dropped away from their home thread, waiting for it to free them.
#[derive(Default)]
struct Returned {
    /// The buffers, and whether the home thread has ended (then they are leaked: nothing may
    /// drop them elsewhere).
    queue: Mutex<(Vec<ForeignDma>, bool)>,
}

/// A DMA buffer in transit to its home thread.
struct ForeignDma(#[allow(dead_code)] glommio::io::DmaBuffer);

// SAFETY: it is only moved between threads; it is dropped on its home thread (`Home::free`,
// `Home::drop`) or leaked.
unsafe impl Send for ForeignDma {}

impl Returned {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<ForeignDma>, bool)> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn give_back(&self, buf: glommio::io::DmaBuffer) {
        let mut queue = self.lock();
        if queue.1 {
            // The home thread has ended: its allocator lives on in the buffer's `Rc`, which no
            // thread may drop now. A leak, at shutdown only.
            std::mem::forget(buf);
        } else {
            queue.0.push(ForeignDma(buf));
        }
    }

    /// The queued buffers, for the home thread to drop outside the lock; `close` marks the
    /// home thread as ended, so that later ones are leaked instead of queued.
    fn take(&self, close: bool) -> Vec<ForeignDma> {
        let mut queue = self.lock();
        queue.1 |= close;
        std::mem::take(&mut queue.0)
    }
}

/// The calling thread's queue of returned buffers.
struct Home(Arc<Returned>);

impl Home {
    /// Frees the buffers other threads gave back (on the home thread: the only place that may).
    fn free(&self) {
        drop(self.0.take(false));
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        drop(self.0.take(true));
    }
}

thread_local! {
    static HOME: Home = Home(Arc::new(Returned::default()));
}

/// Frees the DMA buffers that other shards' readers let go of since the last call. The
/// glommio backend calls it whenever it allocates a write buffer; a shard may also call it
/// from a timer, so that an idle partition does not keep them.
pub fn free_returned_buffers() {
    let _ = HOME.try_with(Home::free);
}

/// The smallest write buffer the glommio backend shares with the batch cache. Smaller ones
/// usually come from glommio's registered pool (`io_memory`, 1 MiB per shard): a cache holding
/// them would keep the pool taken and send every later write to heap buffers, and copying
/// their batches out costs little (0.2 µs per 16 KiB batch, hot). The copy a share saves
/// matters for large writes (71 µs per 1 MiB on a slow-memory day). In 16 KiB x64 A/B runs
/// with every buffer shared the figures were inconclusive either way (the machine's noise
/// was larger than any difference), so the pool is kept for writes, as uring keeps its
/// registered buffers.
pub const SHARE_BYTES_MIN: usize = 256 << 10;

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
}

impl StorageFile for DmaFile {
    type Buf = DmaBuf;

    fn alloc(&self, len: usize) -> DmaBuf {
        let mut buf = self.alloc_unzeroed(len);
        buf.0.as_bytes_mut().fill(0);
        buf
    }

    fn alloc_unzeroed(&self, len: usize) -> DmaBuf {
        free_returned_buffers();
        DmaBuf(self.0.alloc_dma_buffer(len))
    }

    async fn write_at(&self, buf: DmaBuf, pos: u64) -> io::Result<usize> {
        self.0.write_at(buf.0, pos).await.map_err(glommio_to_io)
    }

    /// Writes through `write_rc_at`, which gives the buffer back once the write completed.
    /// Buffers under [`SHARE_BYTES_MIN`] are not shared.
    async fn write_at_shared(&self, buf: DmaBuf, pos: u64) -> io::Result<(usize, Option<Bytes>)> {
        if buf.0.len() < SHARE_BYTES_MIN {
            return Ok((self.write_at(buf, pos).await?, None));
        }
        let buf = Rc::new(buf.0);
        let n = self
            .0
            .write_rc_at(Rc::clone(&buf), pos)
            .await
            .map_err(glommio_to_io)?;
        // glommio keeps no reference once the write returned; if it ever does, copy instead.
        let shared = Rc::try_unwrap(buf).ok().map(|buf| {
            Bytes::from_owner(SharedDma {
                buf: ManuallyDrop::new(buf),
                home: HOME.with(|home| Arc::clone(&home.0)),
            })
        });
        Ok((n, shared))
    }

    /// Aligns the read itself rather than use glommio's unaligned `read_at`: that one clamps
    /// the bytes it returns to `min(read, len)` where `read` counts from the aligned start, so
    /// near the end of a file it returns up to a block of bytes past the end (found by the
    /// storage contract test, `engine/tests/backends_share_one_format.rs`).
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let read = AlignedRead::new(pos, len)?;
        let result = self
            .0
            .read_at_aligned(read.start, read.span)
            .await
            .map_err(glommio_to_io)?;
        Ok(read.asked(&result, result.len()))
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
