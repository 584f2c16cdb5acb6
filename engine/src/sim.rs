//! A simulated, fault-injecting [`Storage`] for tests: files live in memory, each with what
//! was written and what was made durable by the last `sync`. Faults:
//! - a failed fsync ([`SimStorage::fail_syncs`]),
//! - a short write ([`SimStorage::short_write_next`]),
//! - a full disk ([`SimStorage::no_space`]): writes, preallocation and atomic file writes fail
//!   with ENOSPC before changing anything,
//! - a crash ([`SimStorage::crash`]): every file keeps what was synced, plus any prefix
//!   (chosen by the seed) of what was written after it, as a disk with a write-back cache may.
//!
//! Directory operations (create, rename, remove) are durable at once: the engine syncs the
//! directory after each, so modelling their loss adds nothing the log tests need.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    rc::Rc,
};

use bytes::Bytes;

use crate::storage::{BlockBuf, Storage, StorageFile};

#[derive(Debug, Default)]
struct FileState {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct Faults {
    fail_syncs: bool,
    short_write_next: Option<usize>,
    no_space: bool,
    sync_count: u64,
}

#[derive(Debug, Default)]
struct Fs {
    files: BTreeMap<PathBuf, Rc<RefCell<FileState>>>,
    dirs: std::collections::BTreeSet<PathBuf>,
    faults: Faults,
}

/// In-memory storage with fault injection. Clones share one file system.
#[derive(Clone, Debug, Default)]
pub struct SimStorage(Rc<RefCell<Fs>>);

impl SimStorage {
    /// An empty file system.
    #[must_use]
    pub fn new() -> Self {
        SimStorage::default()
    }

    /// From now on every sync fails (`fail = true`) or succeeds again.
    pub fn fail_syncs(&self, fail: bool) {
        self.0.borrow_mut().faults.fail_syncs = fail;
    }

    /// The next write stores only its first `bytes` bytes and reports that count.
    pub fn short_write_next(&self, bytes: usize) {
        self.0.borrow_mut().faults.short_write_next = Some(bytes);
    }

    /// From now on the disk is full (`full = true`): writes, preallocation and atomic file
    /// writes fail with ENOSPC and change nothing; or it has room again.
    pub fn no_space(&self, full: bool) {
        self.0.borrow_mut().faults.no_space = full;
    }

    fn check_space(&self) -> io::Result<()> {
        if self.0.borrow().faults.no_space {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }

    /// How many syncs succeeded so far.
    #[must_use]
    pub fn sync_count(&self) -> u64 {
        self.0.borrow().faults.sync_count
    }

    /// Simulates power loss: each file keeps its synced bytes, then the unsynced writes up to
    /// a cut chosen from `seed` (the same seed gives the same cut). Faults are cleared.
    pub fn crash(&self, seed: u64) {
        let mut fs = self.0.borrow_mut();
        fs.faults = Faults::default();
        let mut rng = seed ^ 0x9e37_79b9_7f4a_7c15;
        for file in fs.files.values() {
            let mut f = file.borrow_mut();
            rng = splitmix(rng);
            let cut = usize::try_from(rng % (f.data.len() as u64 + 1)).unwrap_or(0);
            let mut kept = f.synced.clone();
            if kept.len() < cut {
                kept.resize(cut, 0);
            }
            kept[..cut].copy_from_slice(&f.data[..cut]);
            f.data.clone_from(&kept);
            f.synced = kept;
        }
    }

    /// The current (written) content of a file, for assertions.
    #[must_use]
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.0
            .borrow()
            .files
            .get(path)
            .map(|f| f.borrow().data.clone())
    }

    /// Replaces a file's content (written and synced), to plant corruption.
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) {
        let fs = self.0.borrow();
        if let Some(f) = fs.files.get(path) {
            let mut f = f.borrow_mut();
            f.synced.clone_from(&data);
            f.data = data;
        }
    }
}

/// Yields once to the executor. The simulated disk does at every I/O, so that concurrent
/// tasks interleave as they do on a real disk (an always-ready future would let one task run
/// every append to the end); tests use it to space their own tasks.
pub use crate::partition::yield_once as yield_now;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl Storage for SimStorage {
    type File = SimFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<SimFile> {
        let mut fs = self.0.borrow_mut();
        let state = match fs.files.get(path) {
            Some(f) => Rc::clone(f),
            None if create => {
                let f = Rc::new(RefCell::new(FileState::default()));
                fs.files.insert(path.to_path_buf(), Rc::clone(&f));
                f
            }
            None => return Err(not_found(path)),
        };
        Ok(SimFile {
            state,
            fs: self.clone(),
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.0
            .borrow_mut()
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        yield_now().await;
        let mut fs = self.0.borrow_mut();
        let file = fs.files.remove(from).ok_or_else(|| not_found(from))?;
        // An open handle keeps the same state under the new name, as an inode does.
        fs.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    async fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.0.borrow_mut().dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut fs = self.0.borrow_mut();
        fs.files.retain(|p, _| !p.starts_with(dir));
        fs.dirs.retain(|p| !p.starts_with(dir));
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let fs = self.0.borrow();
        let names = fs
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        let fs = self.0.borrow();
        fs.files.contains_key(path) || fs.dirs.contains(path)
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.check_space()?;
        let file = Rc::new(RefCell::new(FileState {
            data: data.to_vec(),
            synced: data.to_vec(),
        }));
        self.0.borrow_mut().files.insert(path.to_path_buf(), file);
        Ok(())
    }
}

/// A simulated file.
#[derive(Debug)]
pub struct SimFile {
    state: Rc<RefCell<FileState>>,
    fs: SimStorage,
}

/// A plain buffer standing in for an aligned DMA buffer.
#[derive(Debug)]
pub struct SimBuf(Vec<u8>);

impl BlockBuf for SimBuf {
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl SimFile {
    /// A write of `data` at `pos`, with the faults the disk is set to inject.
    async fn write_slice(&self, data: &[u8], pos: u64) -> io::Result<usize> {
        yield_now().await;
        assert_eq!(
            pos % crate::storage::BLOCK_BYTES,
            0,
            "unaligned write position"
        );
        assert_eq!(
            data.len() as u64 % crate::storage::BLOCK_BYTES,
            0,
            "unaligned write length"
        );
        self.fs.check_space()?;
        let short = self.fs.0.borrow_mut().faults.short_write_next.take();
        let len = short.map_or(data.len(), |n| n.min(data.len()));
        let pos = usize::try_from(pos).map_err(io::Error::other)?;
        let mut f = self.state.borrow_mut();
        if f.data.len() < pos + len {
            f.data.resize(pos + len, 0);
        }
        f.data[pos..pos + len].copy_from_slice(&data[..len]);
        Ok(len)
    }
}

impl StorageFile for SimFile {
    type Buf = SimBuf;

    fn alloc(&self, len: usize) -> SimBuf {
        SimBuf(vec![0; len])
    }

    /// The simulated disk shares its buffers, as the real backends do, so that the
    /// property test's reads come from written buffers.
    async fn write_at_shared(&self, buf: SimBuf, pos: u64) -> io::Result<(usize, Option<Bytes>)> {
        let n = self.write_slice(&buf.0, pos).await?;
        Ok((n, Some(Bytes::from(buf.0))))
    }

    async fn write_at(&self, buf: SimBuf, pos: u64) -> io::Result<usize> {
        self.write_slice(&buf.0, pos).await
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        yield_now().await;
        let f = self.state.borrow();
        let start = usize::try_from(pos)
            .map_err(io::Error::other)?
            .min(f.data.len());
        let end = start.saturating_add(len).min(f.data.len());
        Ok(Bytes::copy_from_slice(&f.data[start..end]))
    }

    async fn sync(&self) -> io::Result<()> {
        yield_now().await;
        let mut fs = self.fs.0.borrow_mut();
        if fs.faults.fail_syncs {
            return Err(io::Error::other("injected fsync failure"));
        }
        fs.faults.sync_count += 1;
        let mut f = self.state.borrow_mut();
        f.synced = f.data.clone();
        Ok(())
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let mut f = self.state.borrow_mut();
        f.data.resize(len, 0);
        // A truncate is a metadata change made durable by the next sync; model it as
        // immediately durable for the part it cuts, which is what recovery relies on.
        if f.synced.len() > len {
            f.synced.truncate(len);
        }
        Ok(())
    }

    async fn preallocate(&self, _len: u64) -> io::Result<()> {
        self.fs.check_space()
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.state.borrow().data.len() as u64)
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}
