//! The `glommio` backend: DMA files (O_DIRECT) through glommio's io_uring rings, on the
//! glommio runtime.

use std::{io, path::Path};

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
