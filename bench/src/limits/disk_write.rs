//! Raw sequential write throughput: io_uring, O_DIRECT, a preallocated file, `queue_depth`
//! writes in flight. This is the ceiling for keel's segment appends, measured with the same
//! kernel interface the engine uses and without any runtime (glommio) in between.
//!
//! Each of the `queue_depth` slots owns one aligned buffer. A slot is submitted, and as soon as
//! its completion arrives it is submitted again at the next sequential position, until the
//! duration is over; then the slots in flight are drained, and the elapsed time runs to the
//! last completion. With `fsync_each`, a slot is a linked pair, so the fdatasync starts only
//! after its write completed:
//!
//! ```text
//!   fsync_each = false:  [write pos]                          -> slot free
//!   fsync_each = true:   [write pos] --IO_LINK--> [fdatasync]  -> slot free
//! ```
//!
//! At queue depth 1 the second form is exactly "write a block, fdatasync, repeat", the fair
//! ceiling for an fsync-always append path without group commit.
//!
//! The file is preallocated with `fallocate`, so the first pass writes into unwritten extents
//! and every later pass (the positions wrap) overwrites blocks already written. A log never
//! overwrites: each append lands on fresh blocks, whose extents the file system must convert
//! to written (on ext4, through the journal, which fdatasync then commits). With
//! [`Blocks::Unwritten`], the probe keeps that true on every pass: on entering chunk k of the file it
//! turns chunk k+2 back into unwritten extents (`FALLOC_FL_ZERO_RANGE`), well ahead of the
//! writes in flight, as a log preallocates ahead of its end:
//!
//! ```text
//!   chunks:  | k-1 | k  | k+1 | k+2 | ...     writes in flight: end of k-1 and k
//!                   ^ cursor enters k      -> zero-range k+2 (mod chunk count)
//! ```
//!
//! Zero-ranged blocks stay allocated to the probe's file. A log's segments are new files whose
//! blocks come from the file system's free space, which retention refills by deleting old
//! segments; on a mount with `discard` (the development VM's) the device was told those blocks
//! are free, and writing them again costs the host an allocation: about half the speed of the
//! zero-ranged blocks there (`docs/engine-x1-investigation.md`). With [`Blocks::NewFiles`] the probe
//! does what a log does: a new file per pass, grown by `fallocate` 32 MiB ahead of the writes,
//! the file before the previous one deleted (see [`Blocks::NewFiles`]).
//!
//! By default every write of a slot sends the same buffer, which on a virtual machine the host
//! may still hold in its caches: a writer of new data cannot count on that. With
//! [`Data::Fresh`] each write first copies its block into the next buffer of a pool of
//! [`FRESH_DATA_POOL_BYTES`] (the engine's default batch cache, which keeps that many bytes of
//! written buffers alive), as a log copies each batch into its write buffer, and stamps its
//! write number into it so that no two writes send the same bytes. At queue depth 1 that is
//! the floor of a log that copies once per write (`docs/engine-x1-investigation.md`, section 9).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use io_uring::{opcode, squeue, types, IoUring};
use serde::{Deserialize, Serialize};

use super::probe_file::{AlignedBuf, ProbeFile, WrappingCursor};

/// The probe file size used by [`disk_write`]: large enough that the writes stream through the
/// device, small enough to fit any scratch disk. Positions wrap to 0 at the end of the file.
pub const DEFAULT_PROBE_FILE_BYTES: u64 = 1 << 30;

/// The most writes a probe keeps in flight.
pub const QUEUE_DEPTH_MAX: usize = 1024;

/// Everything one sequential write probe needs.
#[derive(Debug, Clone)]
pub struct DiskWriteParams {
    /// Bytes per write; a multiple of 4096.
    pub block_bytes: usize,
    /// Writes (or write+fdatasync pairs) in flight at once, 1..=QUEUE_DEPTH_MAX.
    pub queue_depth: usize,
    /// How long to keep submitting.
    pub duration: Duration,
    /// Follow every write with a linked fdatasync.
    pub fsync_each: bool,
    /// Size of the preallocated probe file.
    pub file_bytes: u64,
    /// Where the blocks written come from.
    pub blocks: Blocks,
    /// What each write sends.
    pub data: Data,
}

/// What a write probe's writes send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Data {
    /// Each slot sends its one buffer, written once before the run.
    #[default]
    Same,
    /// Each write first copies its block into the next buffer of a pool of
    /// [`FRESH_DATA_POOL_BYTES`] and stamps its number into it (see the module documentation).
    Fresh,
}

impl Data {
    /// The data a probe's result records.
    pub const fn of(result: &DiskWriteResult) -> Self {
        if result.fresh_data {
            Data::Fresh
        } else {
            Data::Same
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Data::Same => "same buffer",
            Data::Fresh => "new each write",
        }
    }
}

/// The bytes of buffers a [`Data::Fresh`] probe cycles through: the engine's default
/// `batch_cache_bytes_max`, the written buffers a log keeps alive. At least one buffer per
/// slot is used whatever the block size.
pub const FRESH_DATA_POOL_BYTES: usize = 256 << 20;

/// Where a write probe's blocks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Blocks {
    /// One preallocated file; after the first pass the writes overwrite written blocks.
    #[default]
    Reused,
    /// One preallocated file whose chunk after next is turned back into unwritten extents
    /// (`FALLOC_FL_ZERO_RANGE`): every write converts an extent, but the blocks stay the file's.
    Unwritten,
    /// A new file per `file_bytes`, grown by `fallocate` [`NEW_FILE_GROW_BYTES`] ahead of the
    /// writes as a segment grows, and the file before the previous one deleted as retention
    /// deletes segments. Every write lands on blocks newly taken from the file system's free
    /// space; on a mount with `discard` those are blocks the device was told are free.
    NewFiles,
}

impl Blocks {
    /// The block source a probe's result records.
    pub const fn of(result: &DiskWriteResult) -> Self {
        match (result.fresh_blocks, result.new_files) {
            (_, true) => Blocks::NewFiles,
            (true, false) => Blocks::Unwritten,
            (false, false) => Blocks::Reused,
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Blocks::Reused => "reused",
            Blocks::Unwritten => "unwritten (zero-range)",
            Blocks::NewFiles => "new files",
        }
    }
}

/// How far ahead of the writes [`Blocks::NewFiles`] grows its file: the engine's default
/// segment preallocation step.
pub const NEW_FILE_GROW_BYTES: u64 = 32 << 20;

/// What one sequential write probe measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskWriteResult {
    pub block_bytes: usize,
    pub queue_depth: usize,
    pub fsync_each: bool,
    /// Every write landed on unwritten blocks (see the module documentation).
    #[serde(default)]
    pub fresh_blocks: bool,
    /// Every write landed in a new file (see [`Blocks::NewFiles`]).
    #[serde(default)]
    pub new_files: bool,
    /// Every write copied new data into a buffer first (see [`Data::Fresh`]).
    #[serde(default)]
    pub fresh_data: bool,
    pub file_bytes: u64,
    pub write_count: u64,
    pub bytes_written: u64,
    pub elapsed_s: f64,
    /// Decimal megabytes (10^6 bytes) per second, as fio's "MB/s".
    pub mb_per_s: f64,
    /// Binary mebibytes (2^20 bytes) per second, as fio's "MiB/s".
    pub mib_per_s: f64,
    /// Writes completed per second.
    pub iops: f64,
}

/// Measures O_DIRECT sequential write throughput in `dir` on a [`DEFAULT_PROBE_FILE_BYTES`]
/// file. The probe file is removed before returning, also on error.
pub fn disk_write(
    dir: &Path,
    block_bytes: usize,
    queue_depth: usize,
    duration: Duration,
    fsync_each: bool,
) -> anyhow::Result<DiskWriteResult> {
    disk_write_with(
        dir,
        &DiskWriteParams {
            block_bytes,
            queue_depth,
            duration,
            fsync_each,
            file_bytes: DEFAULT_PROBE_FILE_BYTES,
            blocks: Blocks::Reused,
            data: Data::Same,
        },
    )
}

/// [`disk_write`] with every parameter, including the probe file size.
pub fn disk_write_with(dir: &Path, params: &DiskWriteParams) -> anyhow::Result<DiskWriteResult> {
    ensure!(
        (1..=QUEUE_DEPTH_MAX).contains(&params.queue_depth),
        "queue depth {} is outside 1..={QUEUE_DEPTH_MAX}",
        params.queue_depth
    );
    ensure!(
        u32::try_from(params.block_bytes).is_ok(),
        "block size {} does not fit one io_uring write",
        params.block_bytes
    );
    let file = if params.blocks == Blocks::NewFiles {
        ProbeFile::create_empty(dir, "write", params.file_bytes)?
    } else {
        ProbeFile::create(dir, "write", params.file_bytes)?
    };
    file.check_block(params.block_bytes, params.queue_depth)?;
    let per_slot = match params.data {
        Data::Same => 1,
        Data::Fresh => (FRESH_DATA_POOL_BYTES / (params.block_bytes * params.queue_depth)).max(1),
    };
    let mut bufs = (0..params.queue_depth * per_slot)
        .map(|_| AlignedBuf::new(params.block_bytes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fresh_data = match params.data {
        Data::Same => None,
        Data::Fresh => Some(FreshData::new(
            params.block_bytes,
            params.queue_depth,
            per_slot,
            &mut bufs,
        )?),
    };
    // Two entries per slot (write + fdatasync), rounded as the kernel would round them anyway.
    let ring_entries =
        u32::try_from((2 * params.queue_depth).next_power_of_two()).context("io_uring size")?;
    let ring = IoUring::new(ring_entries)
        .with_context(|| format!("creating an io_uring with {ring_entries} entries"))?;
    let fresh = if params.blocks == Blocks::Unwritten {
        Some(FreshAhead::new(
            params.block_bytes,
            params.queue_depth,
            file.len_bytes(),
        )?)
    } else {
        None
    };
    let fd = types::Fd(file.fd());
    let file_bytes = file.len_bytes();
    let probe_path = file.path().to_path_buf();
    let (new_files, _file) = if params.blocks == Blocks::NewFiles {
        (Some(NewFiles::new(dir, file)), None)
    } else {
        (None, Some(file))
    };
    let mut writer = RingWriter {
        ring,
        bufs,
        fd,
        cursor: WrappingCursor::new(params.block_bytes, file_bytes),
        fsync_each: params.fsync_each,
        fresh,
        new_files,
        fresh_data,
    };
    let run = writer.run(params.duration);
    let deleted = writer.new_files.take().map(NewFiles::finish);
    let tally =
        run.with_context(|| format!("sequential write probe on {}", probe_path.display()))?;
    if let Some(deleted) = deleted {
        deleted.context("deleting the new-files probe's files")?;
    }
    let elapsed_s = tally.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let bytes_written = tally.write_count * params.block_bytes as u64;
    Ok(DiskWriteResult {
        block_bytes: params.block_bytes,
        queue_depth: params.queue_depth,
        fsync_each: params.fsync_each,
        fresh_blocks: params.blocks == Blocks::Unwritten,
        new_files: params.blocks == Blocks::NewFiles,
        fresh_data: params.data == Data::Fresh,
        file_bytes,
        write_count: tally.write_count,
        bytes_written,
        elapsed_s,
        mb_per_s: bytes_written as f64 / 1e6 / elapsed_s,
        mib_per_s: bytes_written as f64 / (1u64 << 20) as f64 / elapsed_s,
        iops: tally.write_count as f64 / elapsed_s,
    })
}

/// The source block and the turn of each slot of a [`Data::Fresh`] probe. Slot `s` owns the
/// buffers `s * per_slot .. (s + 1) * per_slot` and takes them in turn; a slot is pushed again
/// only once its previous write (and fdatasync) completed, so the buffer it overwrites is never
/// one the kernel may still read.
struct FreshData {
    source: AlignedBuf,
    per_slot: usize,
    turns: Vec<usize>,
    written: u64,
}

impl FreshData {
    /// Also writes the source into every buffer of the pool, so that no page of it is first
    /// touched (faulted in) inside the measured window: a log's write buffers are reused memory.
    fn new(
        block_bytes: usize,
        queue_depth: usize,
        per_slot: usize,
        bufs: &mut [AlignedBuf],
    ) -> anyhow::Result<Self> {
        let mut source = AlignedBuf::new(block_bytes)?;
        for (i, byte) in source.as_mut_slice().iter_mut().enumerate() {
            // Not a constant, so that no layer below can tell the blocks apart from real data.
            *byte = (i.wrapping_mul(131) >> 3) as u8;
        }
        for buf in bufs.iter_mut() {
            buf.as_mut_slice().copy_from_slice(source.as_slice());
        }
        Ok(Self {
            source,
            per_slot,
            turns: vec![0; queue_depth],
            written: 0,
        })
    }

    /// The index in `bufs` of the slot's next buffer, filled with this write's data.
    fn fill(&mut self, slot: usize, bufs: &mut [AlignedBuf]) -> usize {
        let turn = self.turns[slot];
        self.turns[slot] = (turn + 1) % self.per_slot;
        let index = slot * self.per_slot + turn;
        let buf = bufs[index].as_mut_slice();
        buf.copy_from_slice(self.source.as_slice());
        self.written += 1;
        let stamp = self.written.to_le_bytes();
        let n = stamp.len().min(buf.len());
        buf[..n].copy_from_slice(&stamp[..n]);
        index
    }
}

/// Chunks of the file turned back into unwritten extents ahead of the writes.
#[derive(Debug)]
struct FreshAhead {
    chunk_bytes: u64,
    chunk_count: u64,
}

impl FreshAhead {
    /// The file's whole blocks in 8 chunks; the writes in flight must fit in one chunk.
    fn new(block_bytes: usize, queue_depth: usize, file_bytes: u64) -> anyhow::Result<Self> {
        const CHUNK_COUNT: u64 = 8;
        let block = block_bytes as u64;
        let chunk_bytes = file_bytes / CHUNK_COUNT / block * block;
        ensure!(
            chunk_bytes >= block * queue_depth as u64,
            "fresh-block probe: a file of {file_bytes} bytes is too small for {queue_depth} \
             writes of {block_bytes} bytes in flight in each of its {CHUNK_COUNT} chunks"
        );
        Ok(Self {
            chunk_bytes,
            chunk_count: CHUNK_COUNT,
        })
    }

    /// Called with each write position: on a chunk boundary, makes the chunk after next fresh.
    fn before_write(&self, fd: types::Fd, pos: u64) -> anyhow::Result<()> {
        if !pos.is_multiple_of(self.chunk_bytes) {
            return Ok(());
        }
        let ahead = (pos / self.chunk_bytes + 2) % self.chunk_count;
        let start = libc::off_t::try_from(ahead * self.chunk_bytes).context("chunk offset")?;
        let len = libc::off_t::try_from(self.chunk_bytes).context("chunk length")?;
        let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: plain syscall on an fd the probe owns; no memory is passed.
        let rc = unsafe { libc::fallocate(fd.0, mode, start, len) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .context("fallocate(FALLOC_FL_ZERO_RANGE) ahead of the writes");
        }
        Ok(())
    }
}

/// The files of a [`Blocks::NewFiles`] probe. The previous file stays open after a roll: writes
/// and linked fdatasyncs submitted to it may still be in flight (a linked fdatasync resolves its
/// fd only when it starts), and the slots in flight never span more than one file because a
/// file holds at least `queue_depth` blocks. The file before it is closed and deleted on a
/// thread of its own, as the engine's retention deletes on its blocking pool, so the unlink
/// (and the discard it causes) does not stall the probe.
struct NewFiles {
    dir: std::path::PathBuf,
    current: ProbeFile,
    previous: Option<ProbeFile>,
    grown_to: u64,
    deleters: Vec<std::thread::JoinHandle<()>>,
}

impl NewFiles {
    fn new(dir: &Path, first: ProbeFile) -> Self {
        Self {
            dir: dir.to_path_buf(),
            current: first,
            previous: None,
            grown_to: 0,
            deleters: Vec::new(),
        }
    }

    /// Starts the next file; returns its fd.
    fn roll(&mut self) -> anyhow::Result<types::Fd> {
        let next = ProbeFile::create_empty(&self.dir, "write", self.current.len_bytes())?;
        let previous = std::mem::replace(&mut self.current, next);
        if let Some(old) = self.previous.replace(previous) {
            self.deleters.push(std::thread::spawn(move || drop(old)));
        }
        self.grown_to = 0;
        Ok(types::Fd(self.current.fd()))
    }

    /// Grows the current file (fallocate mode 0, so its size grows too, as a segment's does)
    /// to cover `end` and [`NEW_FILE_GROW_BYTES`] more, within the file's length.
    fn grow_for(&mut self, end: u64) -> anyhow::Result<()> {
        if end <= self.grown_to {
            return Ok(());
        }
        let target = end
            .saturating_add(NEW_FILE_GROW_BYTES)
            .min(self.current.len_bytes())
            .max(end);
        let len = libc::off_t::try_from(target).context("new file length")?;
        // SAFETY: plain syscall on an fd the probe owns; no memory is passed.
        let rc = unsafe { libc::fallocate(self.current.fd(), 0, 0, len) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("fallocate {target} bytes of a new probe file"));
        }
        self.grown_to = target;
        Ok(())
    }

    /// Removes every file, waiting for the deleting threads.
    fn finish(self) -> anyhow::Result<()> {
        drop(self.current);
        drop(self.previous);
        for deleter in self.deleters {
            deleter
                .join()
                .map_err(|_| anyhow!("a probe file's deleting thread panicked"))?;
        }
        Ok(())
    }
}

/// Which operation of a slot a completion belongs to; stored in the low bit of `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Write = 0,
    Sync = 1,
}

fn user_data(slot: usize, kind: OpKind) -> u64 {
    ((slot as u64) << 1) | kind as u64
}

fn slot_and_kind(user_data: u64) -> (usize, OpKind) {
    let kind = if user_data & 1 == 0 {
        OpKind::Write
    } else {
        OpKind::Sync
    };
    ((user_data >> 1) as usize, kind)
}

#[derive(Debug)]
struct Tally {
    write_count: u64,
    elapsed: Duration,
}

/// The ring and the buffers it writes from. Owning both keeps the rule in one place: a buffer
/// is never freed while the kernel may still read it (see `run`).
struct RingWriter {
    ring: IoUring,
    bufs: Vec<AlignedBuf>,
    fd: types::Fd,
    cursor: WrappingCursor,
    fsync_each: bool,
    fresh: Option<FreshAhead>,
    new_files: Option<NewFiles>,
    fresh_data: Option<FreshData>,
}

impl RingWriter {
    /// Keeps every slot busy until `duration` has passed, then drains. On an I/O error it stops
    /// submitting, drains what is in flight, and returns the first error.
    fn run(&mut self, duration: Duration) -> anyhow::Result<Tally> {
        let start = Instant::now();
        let deadline = start + duration;
        let mut first_error: Option<anyhow::Error> = None;
        let mut in_flight_count = 0usize;
        let slots = self.bufs.len() / self.fresh_data.as_ref().map_or(1, |f| f.per_slot);
        for slot in 0..slots {
            match self.push_slot(slot) {
                Ok(()) => in_flight_count += 1,
                Err(error) => {
                    first_error = Some(error);
                    break;
                }
            }
        }
        let mut tally = Tally {
            write_count: 0,
            elapsed: Duration::ZERO,
        };
        let mut completions: Vec<(u64, i32)> = Vec::with_capacity(2 * slots);
        while in_flight_count > 0 {
            if let Err(error) = self.submit_and_wait() {
                // The kernel may still own buffers we cannot account for: leak them rather
                // than free memory that a write might still read.
                std::mem::forget(std::mem::take(&mut self.bufs));
                return Err(error);
            }
            completions.clear();
            completions.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            let now = Instant::now();
            for &(data, result) in &completions {
                let (slot, kind) = slot_and_kind(data);
                match self.check_result(kind, result) {
                    Ok(()) if kind == OpKind::Write => tally.write_count += 1,
                    Ok(()) => {}
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
                let slot_done = kind == OpKind::Sync || !self.fsync_each;
                if !slot_done {
                    continue;
                }
                in_flight_count -= 1;
                tally.elapsed = now - start;
                if first_error.is_none() && now < deadline {
                    match self.push_slot(slot) {
                        Ok(()) => in_flight_count += 1,
                        Err(error) => first_error = Some(error),
                    }
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(tally),
        }
    }

    /// Queues the slot's write (and linked fdatasync) at the next sequential position.
    fn push_slot(&mut self, slot: usize) -> anyhow::Result<()> {
        let index = match &mut self.fresh_data {
            Some(data) => data.fill(slot, &mut self.bufs),
            None => slot,
        };
        let buf = &self.bufs[index];
        let pos = self.cursor.next_pos();
        if let Some(fresh) = &self.fresh {
            fresh.before_write(self.fd, pos)?;
        }
        // The length was checked to fit u32 in disk_write_with.
        let len = buf.len() as u32;
        if let Some(files) = &mut self.new_files {
            // Back at 0 in a file already written: the cursor wrapped, so the next file starts.
            if pos == 0 && files.grown_to > 0 {
                self.fd = files.roll()?;
            }
            files.grow_for(pos + u64::from(len))?;
        }
        let write = opcode::Write::new(self.fd, buf.as_ptr(), len)
            .offset(pos)
            .build()
            .user_data(user_data(slot, OpKind::Write));
        let mut queue = self.ring.submission();
        // SAFETY: the buffer is owned by self.bufs, which stays alive (or is leaked) until
        // every operation pushed here has completed: run() drains before returning.
        let pushed = if self.fsync_each {
            let sync = opcode::Fsync::new(self.fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(user_data(slot, OpKind::Sync));
            unsafe { queue.push_multiple(&[write.flags(squeue::Flags::IO_LINK), sync]) }
        } else {
            unsafe { queue.push(&write) }
        };
        pushed.map_err(|_| anyhow!("io_uring submission queue full (slot {slot})"))
    }

    fn submit_and_wait(&mut self) -> anyhow::Result<()> {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error).context("io_uring_enter"),
            }
        }
    }

    /// A write must complete in full; a negative result is an errno.
    fn check_result(&self, kind: OpKind, result: i32) -> anyhow::Result<()> {
        if result < 0 {
            let cause = std::io::Error::from_raw_os_error(-result);
            let what = match kind {
                OpKind::Write => "O_DIRECT write",
                OpKind::Sync => "fdatasync",
            };
            return Err(cause).context(what);
        }
        if kind == OpKind::Write {
            let len = self.bufs.first().map_or(0, AlignedBuf::len);
            ensure!(
                result as usize == len,
                "short O_DIRECT write: {result} of {len} bytes"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        for slot in [0, 1, 31, 1023] {
            for kind in [OpKind::Write, OpKind::Sync] {
                assert_eq!(slot_and_kind(user_data(slot, kind)), (slot, kind));
            }
        }
    }

    #[test]
    fn rejects_bad_parameters() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let params = DiskWriteParams {
            block_bytes: 4096,
            queue_depth: 0,
            duration: Duration::from_millis(10),
            fsync_each: false,
            file_bytes: 1 << 20,
            blocks: Blocks::Reused,
            data: Data::Same,
        };
        assert!(disk_write_with(dir.path(), &params).is_err());
        let unaligned = DiskWriteParams {
            block_bytes: 1000,
            queue_depth: 1,
            ..params
        };
        assert!(disk_write_with(dir.path(), &unaligned).is_err());
        // A failed probe still removes its file.
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        Ok(())
    }

    #[test]
    fn fresh_data_takes_each_slots_buffers_in_turn() -> anyhow::Result<()> {
        let (queue_depth, per_slot) = (2, 3);
        let mut bufs = (0..queue_depth * per_slot)
            .map(|_| AlignedBuf::new(4096))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut data = FreshData::new(4096, queue_depth, per_slot, &mut bufs)?;
        let order: Vec<usize> = [0, 1, 0, 0, 0, 1]
            .iter()
            .map(|&slot| data.fill(slot, &mut bufs))
            .collect();
        assert_eq!(order, vec![0, 3, 1, 2, 0, 4]);
        // Each fill stamped its write number: buffer 0 was filled last by the fifth write.
        assert_eq!(bufs[0].as_slice()[..8], 5u64.to_le_bytes());
        assert_eq!(bufs[4].as_slice()[..8], 6u64.to_le_bytes());
        assert_eq!(bufs[0].as_slice()[8..], data.source.as_slice()[8..]);
        Ok(())
    }
}
