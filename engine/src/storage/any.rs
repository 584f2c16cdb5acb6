//! [`AnyStorage`]: the backend chosen at start, as one type, so that the engine and the
//! broker are not generic over it. Each call is one `match`; a buffer belongs to the backend
//! of the file that allocated it.

use std::{io, path::Path};

use bytes::Bytes;

use super::{
    dma::{DmaBuf, DmaFile},
    pwrite::PwriteFile,
    uring::{UringBuf, UringFile},
    AlignedBuf, BackendOptions, BlockBuf, DmaStorage, IoBackend, PwriteStorage, Storage,
    StorageFile, UringStorage,
};

/// The storage of one shard, of the backend chosen at start.
#[derive(Clone, Debug)]
pub enum AnyStorage {
    /// glommio DMA files.
    Glommio(DmaStorage),
    /// The shard's own io_uring ring.
    Uring(UringStorage),
    /// pwrite on a thread pool.
    Pwrite(PwriteStorage),
}

/// An open file of [`AnyStorage`].
#[derive(Debug)]
pub enum AnyFile {
    /// glommio's.
    Glommio(DmaFile),
    /// uring's.
    Uring(UringFile),
    /// pwrite's.
    Pwrite(PwriteFile),
}

/// A write buffer of [`AnyFile`].
#[derive(Debug)]
pub enum AnyBuf {
    /// glommio's.
    Glommio(DmaBuf),
    /// uring's.
    Uring(UringBuf),
    /// pwrite's.
    Pwrite(AlignedBuf),
}

impl AnyStorage {
    /// The storage of `backend` for the calling shard (its thread must run the backend's
    /// runtime: see [`IoBackend::runtime`]).
    ///
    /// # Errors
    /// The backend cannot be set up (an io_uring ring refused, say).
    pub fn new(backend: IoBackend, options: &BackendOptions) -> io::Result<AnyStorage> {
        Ok(match backend {
            IoBackend::Glommio => AnyStorage::Glommio(DmaStorage),
            IoBackend::Uring => AnyStorage::Uring(UringStorage::new(options.uring)?),
            IoBackend::Pwrite => AnyStorage::Pwrite(PwriteStorage::new(options.pwrite_direct)),
        })
    }
}

impl Storage for AnyStorage {
    type File = AnyFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<AnyFile> {
        Ok(match self {
            AnyStorage::Glommio(s) => AnyFile::Glommio(s.open(path, create).await?),
            AnyStorage::Uring(s) => AnyFile::Uring(s.open(path, create).await?),
            AnyStorage::Pwrite(s) => AnyFile::Pwrite(s.open(path, create).await?),
        })
    }

    async fn prepare(&self, dir: &Path) -> io::Result<()> {
        match self {
            AnyStorage::Glommio(s) => s.prepare(dir).await,
            AnyStorage::Uring(s) => s.prepare(dir).await,
            AnyStorage::Pwrite(s) => s.prepare(dir).await,
        }
    }
}

impl BlockBuf for AnyBuf {
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            AnyBuf::Glommio(b) => b.bytes_mut(),
            AnyBuf::Uring(b) => b.bytes_mut(),
            AnyBuf::Pwrite(b) => b.bytes_mut(),
        }
    }
}

fn foreign_buffer() -> io::Error {
    io::Error::other("a write buffer allocated by another backend's file")
}

impl StorageFile for AnyFile {
    type Buf = AnyBuf;

    fn alloc(&self, len: usize) -> AnyBuf {
        match self {
            AnyFile::Glommio(f) => AnyBuf::Glommio(f.alloc(len)),
            AnyFile::Uring(f) => AnyBuf::Uring(f.alloc(len)),
            AnyFile::Pwrite(f) => AnyBuf::Pwrite(f.alloc(len)),
        }
    }

    fn alloc_unzeroed(&self, len: usize) -> AnyBuf {
        match self {
            AnyFile::Glommio(f) => AnyBuf::Glommio(f.alloc_unzeroed(len)),
            AnyFile::Uring(f) => AnyBuf::Uring(f.alloc_unzeroed(len)),
            AnyFile::Pwrite(f) => AnyBuf::Pwrite(f.alloc_unzeroed(len)),
        }
    }

    async fn write_at(&self, buf: AnyBuf, pos: u64) -> io::Result<usize> {
        match (self, buf) {
            (AnyFile::Glommio(f), AnyBuf::Glommio(b)) => f.write_at(b, pos).await,
            (AnyFile::Uring(f), AnyBuf::Uring(b)) => f.write_at(b, pos).await,
            (AnyFile::Pwrite(f), AnyBuf::Pwrite(b)) => f.write_at(b, pos).await,
            _ => Err(foreign_buffer()),
        }
    }

    async fn write_at_shared(&self, buf: AnyBuf, pos: u64) -> io::Result<(usize, Option<Bytes>)> {
        match (self, buf) {
            (AnyFile::Glommio(f), AnyBuf::Glommio(b)) => f.write_at_shared(b, pos).await,
            (AnyFile::Uring(f), AnyBuf::Uring(b)) => f.write_at_shared(b, pos).await,
            (AnyFile::Pwrite(f), AnyBuf::Pwrite(b)) => f.write_at_shared(b, pos).await,
            _ => Err(foreign_buffer()),
        }
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        match self {
            AnyFile::Glommio(f) => f.read_at(pos, len).await,
            AnyFile::Uring(f) => f.read_at(pos, len).await,
            AnyFile::Pwrite(f) => f.read_at(pos, len).await,
        }
    }

    async fn sync(&self) -> io::Result<()> {
        match self {
            AnyFile::Glommio(f) => f.sync().await,
            AnyFile::Uring(f) => f.sync().await,
            AnyFile::Pwrite(f) => f.sync().await,
        }
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            AnyFile::Glommio(f) => f.truncate(len).await,
            AnyFile::Uring(f) => f.truncate(len).await,
            AnyFile::Pwrite(f) => f.truncate(len).await,
        }
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        match self {
            AnyFile::Glommio(f) => f.preallocate(len).await,
            AnyFile::Uring(f) => f.preallocate(len).await,
            AnyFile::Pwrite(f) => f.preallocate(len).await,
        }
    }

    async fn size(&self) -> io::Result<u64> {
        match self {
            AnyFile::Glommio(f) => f.size().await,
            AnyFile::Uring(f) => f.size().await,
            AnyFile::Pwrite(f) => f.size().await,
        }
    }

    async fn close(self) -> io::Result<()> {
        match self {
            AnyFile::Glommio(f) => f.close().await,
            AnyFile::Uring(f) => f.close().await,
            AnyFile::Pwrite(f) => f.close().await,
        }
    }
}
