//! A [`Storage`] wrapper that times every file operation the engine makes, so the breakdown
//! can say how much of an append is the O_DIRECT write, the fdatasync and the preallocation,
//! how large the writes are (group commit merges batches into one), and how much is left for
//! the CPU. It adds two clock reads and a `Vec` push per operation, nothing else.
//!
//! The events are kept raw, each with its start time, so the caller can cut them to the
//! measured window afterwards and compute the time some log I/O was in flight.

#![allow(async_fn_in_trait)] // Mirrors the engine's single-threaded, !Send storage trait.

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_engine::storage::{Storage, StorageFile};

/// Which file an operation touched: a segment's log, one of its indexes, or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Log,
    Index,
    Other,
}

impl FileKind {
    fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("log") => FileKind::Log,
            Some("index" | "timeindex") => FileKind::Index,
            _ => FileKind::Other,
        }
    }
}

/// The operation timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Write,
    Sync,
    Preallocate,
    Truncate,
    Read,
    Open,
    Close,
    /// Directory fsync, atomic small-file writes, removals.
    Meta,
}

/// One timed operation.
#[derive(Debug, Clone, Copy)]
pub struct IoEvent {
    pub file: FileKind,
    pub op: OpKind,
    pub start: Instant,
    pub duration: Duration,
    pub bytes: u64,
}

/// The events of one storage, shared by every file it opened (single-threaded).
pub type IoLog = Rc<RefCell<Vec<IoEvent>>>;

/// Times `f` and records it in `log`.
async fn timed<T>(
    log: &IoLog,
    file: FileKind,
    op: OpKind,
    bytes: u64,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let start = Instant::now();
    let result = f.await;
    log.borrow_mut().push(IoEvent {
        file,
        op,
        start,
        duration: start.elapsed(),
        bytes,
    });
    result
}

/// `S` with every operation timed into [`Timed::events`].
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    events: IoLog,
}

impl<S> Timed<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            events: IoLog::default(),
        }
    }

    /// The events recorded so far, shared with every file this storage opened.
    pub fn events(&self) -> IoLog {
        Rc::clone(&self.events)
    }
}

impl<S: Storage> Storage for Timed<S> {
    type File = TimedFile<S::File>;

    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File> {
        let kind = FileKind::of(path);
        let file = timed(
            &self.events,
            kind,
            OpKind::Open,
            0,
            self.inner.open(path, create),
        )
        .await?;
        Ok(TimedFile {
            inner: file,
            kind,
            events: Rc::clone(&self.events),
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let kind = FileKind::of(path);
        timed(&self.events, kind, OpKind::Meta, 0, self.inner.remove(path)).await
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let f = self.inner.sync_dir(dir);
        timed(&self.events, FileKind::Other, OpKind::Meta, 0, f).await
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    async fn prepare(&self, dir: &Path) -> io::Result<()> {
        self.inner.prepare(dir).await
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let f = self.inner.write_atomic(path, data);
        timed(
            &self.events,
            FileKind::Other,
            OpKind::Meta,
            data.len() as u64,
            f,
        )
        .await
    }
}

/// A file of a [`Timed`] storage.
#[derive(Debug)]
pub struct TimedFile<F> {
    inner: F,
    kind: FileKind,
    events: IoLog,
}

impl<F> TimedFile<F> {
    /// Records a write that started at `start`. The buffer's length is not visible through
    /// the trait; the result says what was written, so the event is recorded by hand.
    fn log_write(&self, start: Instant, written: usize) {
        self.events.borrow_mut().push(IoEvent {
            file: self.kind,
            op: OpKind::Write,
            start,
            duration: start.elapsed(),
            bytes: written as u64,
        });
    }
}

impl<F: StorageFile> StorageFile for TimedFile<F> {
    type Buf = F::Buf;

    fn alloc(&self, len: usize) -> Self::Buf {
        self.inner.alloc(len)
    }

    fn alloc_unzeroed(&self, len: usize) -> Self::Buf {
        self.inner.alloc_unzeroed(len)
    }

    async fn write_at(&self, buf: Self::Buf, pos: u64) -> io::Result<usize> {
        let start = Instant::now();
        let result = self.inner.write_at(buf, pos).await;
        self.log_write(start, result.as_ref().map_or(0, |n| *n));
        result
    }

    async fn write_at_shared(
        &self,
        buf: Self::Buf,
        pos: u64,
    ) -> io::Result<(usize, Option<Bytes>)> {
        let start = Instant::now();
        let result = self.inner.write_at_shared(buf, pos).await;
        self.log_write(start, result.as_ref().map_or(0, |(n, _)| *n));
        result
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let f = self.inner.read_at(pos, len);
        timed(&self.events, self.kind, OpKind::Read, len as u64, f).await
    }

    async fn sync(&self) -> io::Result<()> {
        timed(&self.events, self.kind, OpKind::Sync, 0, self.inner.sync()).await
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let f = self.inner.truncate(len);
        timed(&self.events, self.kind, OpKind::Truncate, 0, f).await
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        let f = self.inner.preallocate(len);
        timed(&self.events, self.kind, OpKind::Preallocate, 0, f).await
    }

    async fn size(&self) -> io::Result<u64> {
        self.inner.size().await
    }

    async fn close(self) -> io::Result<()> {
        let events = Rc::clone(&self.events);
        timed(&events, self.kind, OpKind::Close, 0, self.inner.close()).await
    }
}

/// The time, within `[from, to)`, during which at least one of `events` was in flight.
pub fn busy_time<'a>(
    events: impl IntoIterator<Item = &'a IoEvent>,
    from: Instant,
    to: Instant,
) -> Duration {
    let mut spans: Vec<(Instant, Instant)> = events
        .into_iter()
        .map(|e| (e.start.max(from), (e.start + e.duration).min(to)))
        .filter(|(s, e)| s < e)
        .collect();
    spans.sort_unstable();
    let mut busy = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (s, e) in spans {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                busy += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        busy += ce - cs;
    }
    busy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(start: Instant, from_ms: u64, len_ms: u64) -> IoEvent {
        IoEvent {
            file: FileKind::Log,
            op: OpKind::Write,
            start: start + Duration::from_millis(from_ms),
            duration: Duration::from_millis(len_ms),
            bytes: 0,
        }
    }

    #[test]
    fn busy_time_merges_overlaps_and_clips() {
        let t0 = Instant::now();
        let events = [
            event(t0, 0, 10),
            event(t0, 5, 10),
            event(t0, 30, 10),
            event(t0, 95, 10),
        ];
        let busy = busy_time(
            &events,
            t0 + Duration::from_millis(2),
            t0 + Duration::from_millis(100),
        );
        // 2..15, 30..40, 95..100.
        assert_eq!(busy, Duration::from_millis(13 + 10 + 5));
    }

    #[test]
    fn kinds_by_extension() {
        assert_eq!(
            FileKind::of(Path::new("a/00000000000000000000.log")),
            FileKind::Log
        );
        assert_eq!(FileKind::of(Path::new("a/0.timeindex")), FileKind::Index);
        assert_eq!(FileKind::of(Path::new("a/producers.json")), FileKind::Other);
    }
}
