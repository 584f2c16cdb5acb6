//! The `uring` backend: the io-uring crate driven directly, one ring per shard, on the poll
//! runtime. It exists to measure what glommio's rings leave on the table, so each option worth
//! measuring is a setting ([`UringOptions`]):
//!
//! - `depth`: the ring's size, which is also the most operations in flight per shard (more
//!   wait for a free slot).
//! - `sqpoll`: a kernel thread polls the submission queue, so a submission costs no system
//!   call while that thread is awake.
//! - `fixed_buffers`: a pool of write buffers registered with the ring once (`WriteFixed`:
//!   the kernel does not pin and unpin the pages per write). A write larger than a pool
//!   buffer, or made while the pool is empty, uses a plain buffer.
//! - `fixed_files`: descriptors registered in the ring's file table (no file lookup per
//!   operation); past the table's size files use plain descriptors.
//! - `linked_sync`: every write is submitted with an fdatasync linked after it (`IO_LINK`),
//!   and a later `sync` that the linked one covers waits for it instead of issuing its own,
//!   saving the round trip between the write's completion and the fdatasync's submission.
//!   Only worth it (and only turned on by the engine) with fsync=always.
//!
//! How completions reach tasks:
//! ```text
//!   task: push SQE (user_data = slot) → submit → await slot ─┐
//!   kernel: CQE → eventfd counter += 1                        │
//!   reaper task: eventfd readable (epoll, async-io) → read it │
//!                → drain CQ: slot.result = res, wake ─────────┘
//! ```
//! A slot owns what the kernel reads or writes (the buffer) until its completion arrives, so
//! a future dropped mid-operation never frees memory the kernel still uses; the reaper frees
//! such an abandoned slot when its completion comes.
//!
//! Opening, sizing and truncating files are rare metadata calls and run as plain system
//! calls (truncate on the blocking pool: it may wait for the journal).

use std::{
    cell::{Cell, RefCell},
    fs::File,
    future::Future,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::Path,
    pin::Pin,
    rc::{Rc, Weak},
    sync::Arc,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::{align_up, pwrite::open_std, AlignedBuf, AlignedRead, BlockBuf, Storage, StorageFile};
use crate::rt;

/// The `uring` backend's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UringOptions {
    /// Ring entries, and the most operations in flight per shard.
    pub depth: u32,
    /// A kernel thread polls the submission queue.
    pub sqpoll: bool,
    /// How long the SQPOLL thread spins without work before it sleeps.
    pub sqpoll_idle_ms: u32,
    /// Write buffers registered with the ring.
    pub fixed_buffers: bool,
    /// How many registered write buffers each shard has.
    pub fixed_buffer_count: u16,
    /// The size of each registered write buffer (a multiple of the block).
    pub fixed_buffer_bytes: usize,
    /// Descriptors registered in the ring's file table.
    pub fixed_files: bool,
    /// The size of that table per shard.
    pub fixed_files_max: u32,
    /// An fdatasync linked after every write (see the module docs).
    pub linked_sync: bool,
}

impl Default for UringOptions {
    fn default() -> Self {
        UringOptions {
            depth: 128,
            sqpoll: false,
            sqpoll_idle_ms: 10,
            fixed_buffers: false,
            fixed_buffer_count: 8,
            fixed_buffer_bytes: 1 << 20,
            fixed_files: false,
            fixed_files_max: 1024,
            linked_sync: false,
        }
    }
}

/// What a finished operation's result goes to.
enum Completion {
    /// A task awaits it (the waker is set once it has polled).
    Task {
        result: Option<i32>,
        waker: Option<Waker>,
    },
    /// The task gave up: free the slot when the completion comes.
    Abandoned,
    /// A linked fdatasync: its result is kept for the syncs it covers.
    Linked(Rc<LinkedSync>),
}

struct Slot {
    completion: Completion,
    /// Memory the kernel uses until the completion arrives.
    keep: Option<UringBuf>,
}

/// An fdatasync linked after a write: covers every write that completed before it started.
struct LinkedSync {
    /// The file's count of completed writes once the write it follows completed.
    covers: Cell<u64>,
    result: Cell<Option<i32>>,
    done: event_listener::Event,
}

/// One ring of a shard, with its slots and buffer pool.
struct Ring {
    ring: IoUring,
    options: UringOptions,
    slots: RefCell<Vec<Option<Slot>>>,
    free_slots: RefCell<Vec<u32>>,
    slot_freed: event_listener::Event,
    /// Registered buffers: the memory, and the indexes not in use.
    pool: Vec<Cell<Option<AlignedBuf>>>,
    pool_registered: bool,
    /// Registered file table: the indexes not in use (empty when fixed files are off).
    free_files: RefCell<Vec<u32>>,
    reaper: RefCell<Option<rt::Detached<()>>>,
}

/// The io-uring backend of one shard (clones share the ring).
#[derive(Clone)]
pub struct UringStorage(Rc<Ring>);

impl std::fmt::Debug for UringStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringStorage")
            .field("options", &self.0.options)
            .field("fixed_buffers", &self.0.pool_registered)
            .finish_non_exhaustive()
    }
}

impl UringStorage {
    /// Sets up the shard's ring with `options`; must run on a poll-runtime executor thread.
    /// Registration that the kernel refuses (locked-memory limit for buffers, say) is logged
    /// and that option turned off; a ring that cannot be made at all is an error.
    ///
    /// # Errors
    /// io_uring_setup or the eventfd failed.
    pub fn new(options: UringOptions) -> io::Result<UringStorage> {
        assert!(options.depth > 0, "uring depth must be positive");
        let mut builder = IoUring::builder();
        if options.sqpoll {
            builder.setup_sqpoll(options.sqpoll_idle_ms);
        }
        let ring = builder.build(options.depth)?;
        // SAFETY: a plain system call; the descriptor it returns is owned below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor nothing else owns.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        let (pool, pool_registered) = register_pool(&ring, &options);
        let free_files = if options.fixed_files {
            match ring
                .submitter()
                .register_files_sparse(options.fixed_files_max)
            {
                Ok(()) => (0..options.fixed_files_max).rev().collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "uring: cannot register a file table; plain descriptors");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let ring = Rc::new(Ring {
            ring,
            options,
            slots: RefCell::new((0..options.depth).map(|_| None).collect()),
            free_slots: RefCell::new((0..options.depth).rev().collect()),
            slot_freed: event_listener::Event::new(),
            pool,
            pool_registered,
            free_files: RefCell::new(free_files),
            reaper: RefCell::new(None),
        });
        let eventfd = async_io::Async::new(efd)?;
        let reaper = rt::spawn_local(reap(Rc::downgrade(&ring), eventfd)).detach();
        *ring.reaper.borrow_mut() = Some(reaper);
        Ok(UringStorage(ring))
    }
}

/// Allocates and registers the fixed buffer pool; on refusal, logs and returns no pool.
fn register_pool(ring: &IoUring, options: &UringOptions) -> (Vec<Cell<Option<AlignedBuf>>>, bool) {
    if !options.fixed_buffers || options.fixed_buffer_count == 0 {
        return (Vec::new(), false);
    }
    let bytes = align_up(options.fixed_buffer_bytes.max(1) as u64) as usize;
    let mut bufs: Vec<AlignedBuf> = (0..options.fixed_buffer_count)
        .map(|_| AlignedBuf::zeroed(bytes))
        .collect();
    let iovecs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: the buffers stay allocated (owned by the ring's pool) for the ring's life, and
    // the kernel writes into them only for operations this module submits.
    match unsafe { ring.submitter().register_buffers(&iovecs) } {
        Ok(()) => (bufs.into_iter().map(|b| Cell::new(Some(b))).collect(), true),
        Err(e) => {
            tracing::warn!(error = %e, bytes = bytes * usize::from(options.fixed_buffer_count), "uring: cannot register fixed buffers (locked-memory limit?); plain buffers");
            (Vec::new(), false)
        }
    }
}

/// Reaps completions until the ring is gone.
async fn reap(ring: Weak<Ring>, eventfd: async_io::Async<OwnedFd>) {
    loop {
        let Some(r) = ring.upgrade() else { return };
        r.drain_completions();
        drop(r);
        if eventfd.readable().await.is_err() {
            return;
        }
        let mut counter = [0u8; 8];
        // SAFETY: reads 8 bytes into `counter` from an eventfd this task owns; a non-blocking
        // eventfd with a zero counter fails with EAGAIN, which is fine.
        let _ = unsafe { libc::read(eventfd.as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
    }
}

impl Ring {
    fn drain_completions(&self) {
        // SAFETY: only this thread uses the ring, and no completion queue borrow is held.
        let cq: Vec<cqueue::Entry> = unsafe { self.ring.completion_shared() }.collect();
        for cqe in cq {
            let idx = cqe.user_data() as usize;
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(idx).and_then(Option::as_mut) else {
                debug_assert!(false, "completion for a free slot {idx}");
                continue;
            };
            match &mut slot.completion {
                Completion::Task { result, waker } => {
                    *result = Some(cqe.result());
                    if let Some(w) = waker.take() {
                        w.wake();
                    }
                }
                Completion::Abandoned => {
                    slots[idx] = None;
                    drop(slots);
                    self.release_slot(idx as u32);
                }
                Completion::Linked(sync) => {
                    sync.result.set(Some(cqe.result()));
                    sync.done.notify(usize::MAX);
                    slots[idx] = None;
                    drop(slots);
                    self.release_slot(idx as u32);
                }
            }
        }
    }

    fn release_slot(&self, idx: u32) {
        self.free_slots.borrow_mut().push(idx);
        self.slot_freed.notify(1);
    }

    /// Waits for `n` free slots and takes them.
    async fn take_slots(&self, n: usize) -> Vec<u32> {
        loop {
            let listener = self.slot_freed.listen();
            {
                let mut free = self.free_slots.borrow_mut();
                if free.len() >= n {
                    let at = free.len() - n;
                    return free.split_off(at);
                }
            }
            listener.await;
        }
    }

    /// Pushes entries (already given their slots' user data) and submits them. On an error,
    /// also says how many entries reached the submission queue: those belong to the kernel
    /// now (the next submission sends whatever a failed one did not), so their slots must
    /// keep their memory until their completions come.
    fn push(&self, entries: &[squeue::Entry]) -> Result<(), (usize, io::Error)> {
        for (pushed, e) in entries.iter().enumerate() {
            let mut tries = 0;
            // SAFETY: single-threaded use of the ring; each entry's memory is owned by its
            // slot until its completion is reaped.
            while unsafe { self.ring.submission_shared().push(e) }.is_err() {
                tries += 1;
                if tries > 2 {
                    return Err((pushed, io::Error::other("io_uring submission queue full")));
                }
                // Full: hand the queue to the kernel; an SQPOLL thread takes entries on its
                // own time, so wait until it has made room.
                self.submit().map_err(|err| (pushed, err))?;
                if self.options.sqpoll {
                    self.ring
                        .submitter()
                        .squeue_wait()
                        .map_err(|err| (pushed, err))?;
                }
            }
        }
        self.submit().map_err(|err| (entries.len(), err))
    }

    /// io_uring_enter for what is queued, again when a signal interrupted it.
    fn submit(&self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other.map(drop),
            }
        }
    }

    /// Runs one operation; `keep` (the memory it uses) lives until it completes and is
    /// handed back with the result.
    async fn run(
        &self,
        entry: squeue::Entry,
        keep: Option<UringBuf>,
    ) -> (io::Result<i32>, Option<UringBuf>) {
        let idx = self.take_slots(1).await[0];
        self.run_in(idx, entry, keep, &[]).await
    }

    /// Runs `entry` in slot `idx`, first pushing `linked` entries after it (their slots set
    /// up by the caller) in the same submission.
    async fn run_in(
        &self,
        idx: u32,
        entry: squeue::Entry,
        keep: Option<UringBuf>,
        linked: &[squeue::Entry],
    ) -> (io::Result<i32>, Option<UringBuf>) {
        self.slots.borrow_mut()[idx as usize] = Some(Slot {
            completion: Completion::Task {
                result: None,
                waker: None,
            },
            keep,
        });
        let mut entries = vec![entry.user_data(u64::from(idx))];
        entries.extend_from_slice(linked);
        if let Err((pushed, e)) = self.push(&entries) {
            // Entries the queue took complete some day: their slots wait for that, abandoned
            // (keeping the buffer); the slots of the others are free at once.
            let mut keep = None;
            for (n, entry) in entries.iter().enumerate() {
                let i = entry.get_user_data() as u32;
                let mut slots = self.slots.borrow_mut();
                if n < pushed {
                    if let Some(slot) = slots[i as usize].as_mut() {
                        slot.completion = Completion::Abandoned;
                    }
                } else {
                    let slot = slots[i as usize].take();
                    drop(slots);
                    if i == idx {
                        keep = slot.and_then(|s| s.keep);
                    }
                    self.release_slot(i);
                }
            }
            return (Err(e), keep);
        }
        let (res, keep) = OpFuture {
            ring: self,
            idx,
            done: false,
        }
        .await;
        if res < 0 {
            (Err(io::Error::from_raw_os_error(-res)), keep)
        } else {
            (Ok(res), keep)
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if let Some(r) = self.reaper.get_mut().take() {
            r.cancel();
        }
        // The kernel may still use slot memory: wait for every operation in flight.
        let in_flight = self.slots.get_mut().iter().filter(|s| s.is_some()).count();
        if in_flight > 0 {
            let _ = self.ring.submit_and_wait(in_flight);
        }
    }
}

struct OpFuture<'a> {
    ring: &'a Ring,
    idx: u32,
    done: bool,
}

impl Future for OpFuture<'_> {
    type Output = (i32, Option<UringBuf>);
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut slots = this.ring.slots.borrow_mut();
        let slot = slots[this.idx as usize]
            .as_mut()
            .expect("an operation's slot is taken until it completes");
        let Completion::Task { result, waker } = &mut slot.completion else {
            unreachable!("a task's slot")
        };
        if let Some(res) = *result {
            let keep = slots[this.idx as usize].take().and_then(|s| s.keep);
            drop(slots);
            this.ring.release_slot(this.idx);
            this.done = true;
            return Poll::Ready((res, keep));
        }
        *waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for OpFuture<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Some(slot) = self.ring.slots.borrow_mut()[self.idx as usize].as_mut() {
                slot.completion = Completion::Abandoned;
            }
        }
    }
}

/// A write buffer of the `uring` backend: one of the ring's registered buffers, or plain.
#[derive(Debug)]
pub struct UringBuf(BufInner);

#[derive(Debug)]
enum BufInner {
    /// Registered buffer `index` of the pool (`len` bytes of it used), given back on drop.
    Fixed {
        buf: Option<AlignedBuf>,
        index: u16,
        len: usize,
        ring: Weak<Ring>,
    },
    Plain(AlignedBuf),
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl UringBuf {
    fn ptr_len(&mut self) -> (*mut u8, usize) {
        match &mut self.0 {
            BufInner::Fixed { buf, len, .. } => {
                (buf.as_mut().expect("held until dropped").as_mut_ptr(), *len)
            }
            BufInner::Plain(b) => (b.as_mut_ptr(), b.len()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match &self.0 {
            BufInner::Fixed { buf, len, .. } => {
                &buf.as_ref().expect("held until dropped").as_slice()[..*len]
            }
            BufInner::Plain(b) => b.as_slice(),
        }
    }
}

impl BlockBuf for UringBuf {
    fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            BufInner::Fixed { buf, len, .. } => {
                &mut buf.as_mut().expect("held until dropped").as_mut_slice()[..*len]
            }
            BufInner::Plain(b) => b.as_mut_slice(),
        }
    }
}

impl UringBuf {
    /// The buffer, if it is a plain one (a registered one goes back to the pool on drop).
    fn into_plain(mut self) -> Option<AlignedBuf> {
        if !matches!(self.0, BufInner::Plain(_)) {
            return None;
        }
        let empty = BufInner::Fixed {
            buf: None,
            index: 0,
            len: 0,
            ring: Weak::new(),
        };
        match std::mem::replace(&mut self.0, empty) {
            BufInner::Plain(b) => Some(b),
            BufInner::Fixed { .. } => None,
        }
    }
}

impl Drop for UringBuf {
    fn drop(&mut self) {
        if let BufInner::Fixed {
            buf, index, ring, ..
        } = &mut self.0
        {
            if let (Some(r), Some(b)) = (ring.upgrade(), buf.take()) {
                r.pool[usize::from(*index)].set(Some(b));
            }
        }
    }
}

/// The file as a target of an operation: a registered index or a plain descriptor.
#[derive(Clone, Copy, Debug)]
enum Target {
    Fd(RawFd),
    Fixed(u32),
}

/// Builds an opcode on either kind of target.
macro_rules! on_target {
    ($target:expr, |$t:ident| $build:expr) => {
        match $target {
            Target::Fd(fd) => {
                let $t = types::Fd(fd);
                $build
            }
            Target::Fixed(i) => {
                let $t = types::Fixed(i);
                $build
            }
        }
    };
}

/// An open file of the `uring` backend.
#[derive(Debug)]
pub struct UringFile {
    ring: Rc<Ring>,
    file: Arc<File>,
    target: Target,
    /// Writes completed on this file so far.
    writes_done: Cell<u64>,
    writes_in_flight: Cell<u32>,
    /// The newest linked fdatasync, and the write count it covers.
    linked: RefCell<Option<Rc<LinkedSync>>>,
}

impl std::fmt::Debug for LinkedSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedSync")
            .field("covers", &self.covers.get())
            .finish_non_exhaustive()
    }
}

/// A linked fdatasync not yet known to follow a completed write covers nothing.
const COVERS_NOTHING: u64 = u64::MAX;

impl Storage for UringStorage {
    type File = UringFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<UringFile> {
        let file = open_std(path, create, true)?;
        let fd = file.as_raw_fd();
        let target = match self.0.free_files.borrow_mut().pop() {
            Some(i) => match self.0.ring.submitter().register_files_update(i, &[fd]) {
                Ok(_) => Target::Fixed(i),
                Err(e) => {
                    tracing::warn!(error = %e, "uring: cannot register a file; plain descriptor");
                    self.0.free_files.borrow_mut().push(i);
                    Target::Fd(fd)
                }
            },
            None => Target::Fd(fd),
        };
        Ok(UringFile {
            ring: Rc::clone(&self.0),
            file: Arc::new(file),
            target,
            writes_done: Cell::new(0),
            writes_in_flight: Cell::new(0),
            linked: RefCell::new(None),
        })
    }
}

impl UringFile {
    fn fsync_entry(&self) -> squeue::Entry {
        on_target!(self.target, |t| opcode::Fsync::new(t)
            .flags(types::FsyncFlags::DATASYNC)
            .build())
    }

    /// Reads `[pos, pos + len)` (block aligned) into an aligned buffer until it is full or
    /// the file ends; returns the buffer and the bytes read.
    async fn read_aligned(&self, pos: u64, len: usize) -> io::Result<(UringBuf, usize)> {
        let mut keep = Some(UringBuf(BufInner::Plain(AlignedBuf::zeroed(len))));
        let mut done = 0usize;
        while done < len {
            let mut buf = keep.take().expect("the read buffer comes back");
            let (ptr, _) = buf.ptr_len();
            // SAFETY of the pointer: it stays valid while the slot keeps `buf`.
            let entry = on_target!(self.target, |t| opcode::Read::new(
                t,
                ptr.wrapping_add(done),
                u32::try_from(len - done).unwrap_or(u32::MAX)
            )
            .offset(pos + done as u64)
            .build());
            let (res, back) = self.ring.run(entry, Some(buf)).await;
            keep = back;
            let n = match res {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other? as usize,
            };
            done += n;
            if n == 0 || !(n as u64).is_multiple_of(super::BLOCK_BYTES) {
                break; // the end of the file
            }
        }
        keep.map(|b| (b, done))
            .ok_or_else(|| io::Error::other("uring: read buffer lost"))
    }

    /// Writes `buf` at `pos`; gives the buffer back once the write completed.
    async fn write_keep(
        &self,
        mut buf: UringBuf,
        pos: u64,
    ) -> io::Result<(usize, Option<UringBuf>)> {
        let (ptr, len) = buf.ptr_len();
        let len32 = u32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut entry = match &buf.0 {
            BufInner::Fixed { index, .. } => on_target!(self.target, |t| opcode::WriteFixed::new(
                t, ptr, len32, *index
            )
            .offset(pos)
            .build()),
            BufInner::Plain(_) => on_target!(self.target, |t| opcode::Write::new(t, ptr, len32)
                .offset(pos)
                .build()),
        };
        debug_assert_eq!(buf.as_slice().len(), len);
        // Link an fdatasync only when no other write of this file is in flight, so that the
        // write it follows is this file's newest completed one when it runs.
        let link = self.ring.options.linked_sync && self.writes_in_flight.get() == 0;
        self.writes_in_flight.set(self.writes_in_flight.get() + 1);
        let (res, back) = if link {
            let slots = self.ring.take_slots(2).await;
            let sync = Rc::new(LinkedSync {
                covers: Cell::new(COVERS_NOTHING),
                result: Cell::new(None),
                done: event_listener::Event::new(),
            });
            self.ring.slots.borrow_mut()[slots[1] as usize] = Some(Slot {
                completion: Completion::Linked(Rc::clone(&sync)),
                keep: None,
            });
            entry = entry.flags(squeue::Flags::IO_LINK);
            let fsync = self.fsync_entry().user_data(u64::from(slots[1]));
            let out = self.ring.run_in(slots[0], entry, Some(buf), &[fsync]).await;
            if out.0.is_ok() {
                sync.covers.set(self.writes_done.get() + 1);
                *self.linked.borrow_mut() = Some(sync);
            }
            out
        } else {
            let idx = self.ring.take_slots(1).await[0];
            self.ring.run_in(idx, entry, Some(buf), &[]).await
        };
        self.writes_in_flight.set(self.writes_in_flight.get() - 1);
        let n = res? as usize;
        self.writes_done.set(self.writes_done.get() + 1);
        Ok((n, back))
    }
}

impl StorageFile for UringFile {
    type Buf = UringBuf;

    fn alloc(&self, len: usize) -> UringBuf {
        let mut b = self.alloc_unzeroed(len);
        b.bytes_mut().fill(0);
        b
    }

    fn alloc_unzeroed(&self, len: usize) -> UringBuf {
        if self.ring.pool_registered && len <= self.ring.options.fixed_buffer_bytes {
            for (index, cell) in self.ring.pool.iter().enumerate() {
                if let Some(buf) = cell.take() {
                    return UringBuf(BufInner::Fixed {
                        buf: Some(buf),
                        index: index as u16,
                        len,
                        ring: Rc::downgrade(&self.ring),
                    });
                }
            }
        }
        UringBuf(BufInner::Plain(AlignedBuf::zeroed(len)))
    }

    async fn write_at(&self, buf: UringBuf, pos: u64) -> io::Result<usize> {
        self.write_keep(buf, pos).await.map(|(n, _)| n)
    }

    /// A plain buffer becomes the `Bytes`; a registered one goes back to the pool instead
    /// (it is the ring's, and a cached batch could keep it for minutes).
    async fn write_at_shared(&self, buf: UringBuf, pos: u64) -> io::Result<(usize, Option<Bytes>)> {
        let (n, back) = self.write_keep(buf, pos).await?;
        let shared = back.and_then(UringBuf::into_plain).map(Bytes::from_owner);
        Ok((n, shared))
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let read = AlignedRead::new(pos, len)?;
        let (buf, n) = self.read_aligned(read.start, read.span).await?;
        Ok(read.asked(buf.as_slice(), n))
    }

    async fn sync(&self) -> io::Result<()> {
        // A linked fdatasync that followed the newest completed write covers this sync.
        let linked = self.linked.borrow().clone();
        if let Some(l) = linked.filter(|l| l.covers.get() == self.writes_done.get()) {
            loop {
                let listener = l.done.listen();
                match l.result.get() {
                    Some(r) if r >= 0 => return Ok(()),
                    // Cancelled (its write was short) or failed: sync for real below, so
                    // that an error is the fdatasync's own.
                    Some(_) => break,
                    None => listener.await,
                }
            }
        }
        let (res, _) = self.ring.run(self.fsync_entry(), None).await;
        res.map(drop)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        blocking::unblock(move || file.set_len(len)).await
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        let entry = on_target!(self.target, |t| opcode::Fallocate::new(t, len)
            .offset(0)
            .build());
        let (res, _) = self.ring.run(entry, None).await;
        res.map(drop)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.metadata().map(|m| m.len())
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for UringFile {
    fn drop(&mut self) {
        if let Target::Fixed(i) = self.target {
            // Unregister before the descriptor closes; -1 clears the table entry.
            match self.ring.ring.submitter().register_files_update(i, &[-1]) {
                Ok(_) => self.ring.free_files.borrow_mut().push(i),
                Err(e) => tracing::warn!(error = %e, "uring: cannot unregister a file"),
            }
        }
    }
}
