//! The `pwrite` backend: plain positional writes, reads and fdatasync, with O_DIRECT or through
//! the page cache, and no io_uring at all: the fallback where io_uring cannot be set up (Docker's
//! default seccomp profile), and the baseline the io_uring backends are measured against.
//!
//! The system calls block, so each runs on a thread of the `blocking` pool (the smol
//! project's) while the shard's executor goes on serving: a shard thread stalled in a 4 ms
//! fdatasync could neither take new appends nor start the next write of the pipelined group
//! commit. The cost is a thread hand-off per call (tens of microseconds), which the storage
//! report measures as CPU time per MiB.

use std::{
    fs::File,
    io,
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
    sync::Arc,
};

use bytes::{Bytes, BytesMut};

use super::{AlignedBuf, AlignedRead, Storage, StorageFile};

/// Positional system calls on a thread pool.
#[derive(Clone, Copy, Debug)]
pub struct PwriteStorage {
    direct: bool,
}

impl PwriteStorage {
    /// Files opened with O_DIRECT when `direct`, else through the page cache.
    #[must_use]
    pub const fn new(direct: bool) -> PwriteStorage {
        PwriteStorage { direct }
    }
}

/// An open file of the `pwrite` backend.
#[derive(Debug)]
pub struct PwriteFile {
    file: Arc<File>,
    direct: bool,
}

/// Opens `path` read-write (created when asked), with O_DIRECT when `direct`.
pub(super) fn open_std(path: &Path, create: bool, direct: bool) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(create);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    options.open(path)
}

/// Reads up to `len` bytes at `pos` with pread, retrying short reads until the end of the file.
/// With O_DIRECT the read is widened to whole blocks into an aligned buffer, and the asked
/// range is copied out.
pub(super) fn pread_exact_or_eof(
    file: &File,
    pos: u64,
    len: usize,
    direct: bool,
) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    if !direct {
        let mut out = BytesMut::zeroed(len);
        let n = fill(file, &mut out, pos)?;
        out.truncate(n);
        return Ok(out.freeze());
    }
    let read = AlignedRead::new(pos, len)?;
    let mut buf = AlignedBuf::zeroed(read.span);
    let n = fill(file, buf.as_mut_slice(), read.start)?;
    Ok(read.asked(buf.as_slice(), n))
}

/// Reads into `buf` at `pos` until it is full or the file ends; returns the bytes read.
fn fill(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// fallocate(mode 0): reserves blocks up to `len` and grows the file to it.
pub(super) fn fallocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain system call on a file descriptor this `File` owns.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl PwriteFile {
    /// Runs a blocking call on the file on the thread pool.
    async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&File) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let file = Arc::clone(&self.file);
        blocking::unblock(move || call(&file)).await
    }
}

impl Storage for PwriteStorage {
    type File = PwriteFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<PwriteFile> {
        let (path, direct) = (path.to_path_buf(), self.direct);
        let file = blocking::unblock(move || open_std(&path, create, direct)).await?;
        Ok(PwriteFile {
            file: Arc::new(file),
            direct,
        })
    }
}

/// One positional write of the whole buffer, retried when a signal interrupts it.
fn write_retrying(f: &File, buf: &AlignedBuf, pos: u64) -> io::Result<usize> {
    loop {
        match f.write_at(buf.as_slice(), pos) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl StorageFile for PwriteFile {
    type Buf = AlignedBuf;

    fn alloc(&self, len: usize) -> AlignedBuf {
        AlignedBuf::zeroed(len)
    }

    async fn write_at(&self, buf: AlignedBuf, pos: u64) -> io::Result<usize> {
        // The buffer moves into the call, so it outlives the write even if this future is
        // dropped while the thread runs it.
        self.run(move |f| write_retrying(f, &buf, pos)).await
    }

    /// The buffer comes back from the thread and becomes the `Bytes`.
    async fn write_at_shared(
        &self,
        buf: AlignedBuf,
        pos: u64,
    ) -> io::Result<(usize, Option<Bytes>)> {
        self.run(move |f| {
            let n = write_retrying(f, &buf, pos)?;
            Ok((n, Some(Bytes::from_owner(buf))))
        })
        .await
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let direct = self.direct;
        self.run(move |f| pread_exact_or_eof(f, pos, len, direct))
            .await
    }

    async fn sync(&self) -> io::Result<()> {
        self.run(File::sync_data).await
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.run(move |f| f.set_len(len)).await
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.run(move |f| fallocate(f, len)).await
    }

    async fn size(&self) -> io::Result<u64> {
        self.run(|f| f.metadata().map(|m| m.len())).await
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}
