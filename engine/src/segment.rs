//! One segment: a log file of record batches and its two sparse indexes.
//!
//! Writes go through O_DIRECT in whole blocks. The last block of the log is usually partial,
//! so the segment keeps its bytes in memory (`tail`) and every write starts at the block
//! boundary below the logical end, rewriting that block with the old bytes followed by the new:
//!
//! ```text
//!   block 0          block 1          block 2
//!  |================|=========-------|                   written = 6000, tail = 1904 bytes
//!  write of a 3000 byte batch:
//!                   |=========+++++++|+++++++---------|  starts at 4096, 2 blocks, zero padded
//!  afterwards written = 9000, tail = bytes 8192..9000
//! ```
//! Bytes past `written` are zero padding that the next write replaces. Readers never look past
//! `written`, which moves only after the write completed, and the rewritten prefix of the block
//! is byte-identical, so a read racing a write sees the same bytes either way.

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
};

use bytes::Bytes;

use crate::{
    batch::{self, BatchInfo},
    error::{EngineError, Result},
    index::{OffsetIndex, TimeIndex, OFFSET_ENTRIES_PER_PAGE, TIME_ENTRIES_PER_PAGE},
    storage::{align_down, align_up, BlockBuf, Storage, StorageFile, BLOCK_BYTES},
    types::Offset,
};

/// The file names of a segment with base offset `base` in `dir`.
#[must_use]
pub fn paths(dir: &Path, base: Offset) -> [PathBuf; 3] {
    [
        dir.join(format!("{:020}.log", base.0)),
        dir.join(format!("{:020}.index", base.0)),
        dir.join(format!("{:020}.timeindex", base.0)),
    ]
}

/// Mutable state of a segment, borrowed briefly and never across an await.
#[derive(Debug, Default)]
pub struct SegState {
    /// Bytes of whole batches in the log file.
    pub written: u64,
    /// The log's bytes from `align_down(written)` to `written`.
    tail: Vec<u8>,
    /// The offset after the last batch.
    pub next_offset: Offset,
    /// The largest batch maxTimestamp seen, or -1.
    pub max_timestamp: i64,
    /// When the first batch was appended (ms), for `segment_ms`; -1 while empty.
    pub first_append_ms: i64,
    /// Sparse offset index.
    pub index: OffsetIndex,
    /// Sparse time index.
    pub time_index: TimeIndex,
    index_pages_written: usize,
    time_pages_written: usize,
    bytes_since_index: u64,
    preallocated: u64,
}

/// A segment of a partition's log.
#[derive(Debug)]
pub struct Segment<F: StorageFile> {
    /// Offset of the first batch this segment may hold.
    pub base: Offset,
    /// The log file's path.
    pub path: PathBuf,
    index_path: PathBuf,
    time_path: PathBuf,
    log: F,
    index_file: F,
    time_file: F,
    /// The mutable state.
    pub st: RefCell<SegState>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EngineError + 'a {
    move |e| EngineError::io(op, path, e)
}

/// A written buffer's share that may be overhead (the old tail block's bytes before the
/// batches, zero padding after them) for the batch cache to keep slices of it: at most 1/16.
/// A cached slice keeps its whole buffer alive while the cache charges only the batch's
/// bytes, so past this share (a small write: one 100-byte batch in an 8 KiB buffer) the
/// batches are copied out instead, and the cache's memory stays within 17/16 of its bound.
pub const SHARED_OVERHEAD_DIVISOR: usize = 16;

/// The written batches as the batch cache keeps them: slices of `shared` (the written
/// buffer, batches from byte `first`) when it came back and carries little overhead, copies
/// of its slices when it carries more, and patched copies of the producer's bytes when the
/// backend gave no buffer back.
fn cacheable(batches: &[(Bytes, BatchInfo)], shared: Option<Bytes>, first: usize) -> Vec<Bytes> {
    let total: usize = batches.iter().map(|(b, _)| b.len()).sum();
    match shared {
        Some(buf) => {
            let slice = buf.len() <= total + total / SHARED_OVERHEAD_DIVISOR;
            let mut at = first;
            batches
                .iter()
                .map(|(b, _)| {
                    let range = at..at + b.len();
                    at += b.len();
                    if slice {
                        buf.slice(range)
                    } else {
                        Bytes::copy_from_slice(&buf[range])
                    }
                })
                .collect()
        }
        None => batches
            .iter()
            .map(|(b, info)| {
                let mut patched = bytes::BytesMut::from(&b[..]);
                batch::set_base_offset(&mut patched, info.base_offset);
                patched.freeze()
            })
            .collect(),
    }
}

impl SegState {
    /// The largest timestamp the time index knows (its entries only ever increase).
    #[must_use]
    pub fn time_index_max(&self) -> i64 {
        self.time_index.last_timestamp().unwrap_or(-1)
    }
}

impl<F: StorageFile> Segment<F> {
    /// Opens (or creates) the three files of the segment at `base`. The state starts empty;
    /// [`crate::recovery`] or the caller fills it in.
    pub async fn open<S: Storage<File = F>>(
        storage: &S,
        dir: &Path,
        base: Offset,
        create: bool,
    ) -> Result<Self> {
        let [path, index_path, time_path] = paths(dir, base);
        let log = storage
            .open(&path, create)
            .await
            .map_err(io_err("open", &path))?;
        let index_file = storage
            .open(&index_path, true)
            .await
            .map_err(io_err("open", &index_path))?;
        let time_file = storage
            .open(&time_path, true)
            .await
            .map_err(io_err("open", &time_path))?;
        let st = SegState {
            next_offset: base,
            max_timestamp: -1,
            first_append_ms: -1,
            ..SegState::default()
        };
        Ok(Segment {
            base,
            path,
            index_path,
            time_path,
            log,
            index_file,
            time_file,
            st: RefCell::new(st),
        })
    }

    /// The log file.
    pub fn log_file(&self) -> &F {
        &self.log
    }

    /// Bytes of whole batches in the log.
    pub fn written(&self) -> u64 {
        self.st.borrow().written
    }

    /// Sets the logical end after recovery and loads the tail block into memory.
    pub async fn set_end(
        &self,
        written: u64,
        next_offset: Offset,
        max_timestamp: i64,
    ) -> Result<()> {
        let start = align_down(written);
        let len = usize::try_from(written - start).unwrap_or(0);
        let tail = if len > 0 {
            let b = self
                .log
                .read_at(start, len)
                .await
                .map_err(io_err("read", &self.path))?;
            if b.len() != len {
                return Err(EngineError::Corrupt {
                    path: self.path.clone(),
                    pos: start,
                    reason: format!("tail block short: {} of {len} bytes", b.len()),
                });
            }
            b.to_vec()
        } else {
            Vec::new()
        };
        let mut st = self.st.borrow_mut();
        st.written = written;
        st.tail = tail;
        st.next_offset = next_offset;
        st.max_timestamp = max_timestamp;
        st.index_pages_written = st.index.len() / OFFSET_ENTRIES_PER_PAGE;
        st.time_pages_written = st.time_index.len() / TIME_ENTRIES_PER_PAGE;
        st.preallocated = align_up(written);
        Ok(())
    }

    /// For a recycled file (a spare renamed to this new segment): its blocks up to its size
    /// are allocated already, so appends inside it need no preallocation. Its old bytes stay
    /// until overwritten; nothing reads past the written end.
    pub async fn adopt_allocated(&self) -> Result<()> {
        let size = self.log.size().await.map_err(io_err("stat", &self.path))?;
        let mut st = self.st.borrow_mut();
        debug_assert_eq!(st.written, 0, "only a new segment adopts a file");
        st.preallocated = align_down(size);
        Ok(())
    }

    /// Writes `batches` after the current end, in one write, and returns each batch's bytes
    /// as written, for the batch cache. The batches are as the producer sent them, their
    /// offsets assigned in their `BatchInfo` only: each is copied once, into the write
    /// buffer, and its baseOffset patched there. Where the backend hands the written buffer
    /// back as `Bytes` ([`StorageFile::write_at_shared`]), the returned batches are slices of
    /// it, with no second copy; see [`cacheable`] for when they are copied anyway. Updates
    /// the indexes every `index_interval_bytes`.
    pub async fn append(
        &self,
        batches: &[(Bytes, BatchInfo)],
        index_interval_bytes: u32,
        now_ms: i64,
        preallocate_bytes: u64,
    ) -> Result<Vec<Bytes>> {
        let (buf, pos, new_written, first, tail) = {
            let st = self.st.borrow();
            let start = align_down(st.written);
            let new_written = st.written + batches.iter().map(|(b, _)| b.len() as u64).sum::<u64>();
            let len = usize::try_from(align_up(new_written) - start)
                .map_err(|_| EngineError::InvalidConfig("write too large".into()))?;
            let mut buf = self.log.alloc_unzeroed(len);
            let bytes = buf.bytes_mut();
            bytes[..st.tail.len()].copy_from_slice(&st.tail);
            let first = st.tail.len();
            let mut at = first;
            for (b, info) in batches {
                let to = &mut bytes[at..at + b.len()];
                to.copy_from_slice(b);
                batch::set_base_offset(to, info.base_offset);
                at += b.len();
            }
            // Zeros after the last batch up to the block end: where recovery looks for the
            // next header.
            bytes[at..].fill(0);
            // The new partial last block, kept in memory for the next write.
            let tail_from = usize::try_from(align_down(new_written) - start).unwrap_or(at);
            let tail = bytes[tail_from..at].to_vec();
            (buf, start, new_written, first, tail)
        };
        self.preallocate(new_written, preallocate_bytes).await?;
        let len = usize::try_from(align_up(new_written) - pos).unwrap_or(usize::MAX);
        let (done, shared) = self
            .log
            .write_at_shared(buf, pos)
            .await
            .map_err(io_err("write", &self.path))?;
        if done != len {
            return Err(EngineError::io(
                "write",
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {done} of {len} bytes at {pos}"),
                ),
            ));
        }
        self.after_write(batches, new_written, tail, index_interval_bytes, now_ms);
        Ok(cacheable(batches, shared, first))
    }

    async fn preallocate(&self, new_written: u64, step: u64) -> Result<()> {
        let target = {
            let st = self.st.borrow();
            if step == 0 || new_written <= st.preallocated {
                return Ok(());
            }
            align_up(new_written + step)
        };
        self.log
            .preallocate(target)
            .await
            .map_err(io_err("fallocate", &self.path))?;
        self.st.borrow_mut().preallocated = target;
        Ok(())
    }

    fn after_write(
        &self,
        batches: &[(Bytes, BatchInfo)],
        new_written: u64,
        tail: Vec<u8>,
        index_interval_bytes: u32,
        now_ms: i64,
    ) {
        let mut st = self.st.borrow_mut();
        let mut pos = st.written;
        for (b, info) in batches {
            self.note_batch(&mut st, info, pos, index_interval_bytes);
            pos += b.len() as u64;
        }
        assert_eq!(pos, new_written, "batch lengths add up to the write");
        assert_eq!(
            tail.len() as u64,
            new_written % BLOCK_BYTES,
            "the tail is the last partial block"
        );
        st.tail = tail;
        st.written = new_written;
        if st.first_append_ms < 0 {
            st.first_append_ms = now_ms;
        }
    }

    /// Updates next offset, max timestamp and the indexes for a batch at `pos`.
    pub fn note_batch(
        &self,
        st: &mut SegState,
        info: &BatchInfo,
        pos: u64,
        index_interval_bytes: u32,
    ) {
        assert!(
            info.base_offset >= st.next_offset.0,
            "offsets increase within a segment"
        );
        let rel = u32::try_from(info.base_offset - self.base.0).unwrap_or(u32::MAX);
        let pos32 = u32::try_from(pos).unwrap_or(u32::MAX);
        if st.index.is_empty() || st.bytes_since_index >= u64::from(index_interval_bytes) {
            if st.index.last().is_none_or(|(r, p)| rel > r && pos32 > p) {
                st.index.push(rel, pos32);
            }
            st.bytes_since_index = 0;
        }
        st.bytes_since_index += info.batch_bytes as u64;
        if info.max_timestamp > st.max_timestamp {
            st.max_timestamp = info.max_timestamp;
            st.time_index.push(info.max_timestamp, rel);
        }
        st.next_offset = Offset(info.last_offset() + 1);
    }

    /// fdatasync of the log; then writes the index pages that became durable-backed. A disk
    /// out of space for an index page is not a failed sync: the index is a lookup aid that
    /// recovery can rebuild, and its pages are written again at the next sync or at close.
    pub async fn sync(&self) -> Result<()> {
        let synced_to = self.written();
        self.log
            .sync()
            .await
            .map_err(io_err("fdatasync", &self.path))?;
        match self.write_index_pages(synced_to, false).await {
            Err(e) if e.is_out_of_space() => {
                tracing::warn!(segment = %self.path.display(), error = %e, "out of space for an index page; written later");
                Ok(())
            }
            other => other,
        }
    }

    /// Writes index pages whose entries all point below `synced_to`: full pages only, unless
    /// `all` (at close), when the last partial page is written too, zero padded.
    async fn write_index_pages(&self, synced_to: u64, all: bool) -> Result<()> {
        let (offset_job, time_job) = {
            let mut st = self.st.borrow_mut();
            let n = st.index.count_below(synced_to);
            // Every batch written so far is below `synced_to` (the flusher, the only writer,
            // calls this), so every time entry is backed by durable data.
            let rel_to = u32::try_from(st.next_offset.0 - self.base.0).unwrap_or(u32::MAX);
            let t = st.time_index.count_below(rel_to);
            let offset_pages = if all {
                n.div_ceil(OFFSET_ENTRIES_PER_PAGE)
            } else {
                n / OFFSET_ENTRIES_PER_PAGE
            };
            let time_pages = if all {
                t.div_ceil(TIME_ENTRIES_PER_PAGE)
            } else {
                t / TIME_ENTRIES_PER_PAGE
            };
            let from_o = st.index_pages_written;
            let from_t = st.time_pages_written;
            let oj = (offset_pages > from_o || (all && offset_pages > 0)).then(|| {
                let first = from_o.min(offset_pages.saturating_sub(1));
                let bytes = st.index.encode(
                    first * OFFSET_ENTRIES_PER_PAGE,
                    n.min(offset_pages * OFFSET_ENTRIES_PER_PAGE),
                );
                (first, bytes)
            });
            let tj = (time_pages > from_t || (all && time_pages > 0)).then(|| {
                let first = from_t.min(time_pages.saturating_sub(1));
                let bytes = st.time_index.encode(
                    first * TIME_ENTRIES_PER_PAGE,
                    t.min(time_pages * TIME_ENTRIES_PER_PAGE),
                );
                (first, bytes)
            });
            st.index_pages_written = n / OFFSET_ENTRIES_PER_PAGE;
            st.time_pages_written = t / TIME_ENTRIES_PER_PAGE;
            (oj, tj)
        };
        let mut result = Ok(());
        if let Some((page, bytes)) = &offset_job {
            result = write_pages(&self.index_file, &self.index_path, *page, bytes).await;
        }
        if let (Ok(()), Some((page, bytes))) = (&result, &time_job) {
            result = write_pages(&self.time_file, &self.time_path, *page, bytes).await;
        }
        if result.is_err() {
            // Write these pages again next time (a page rewritten whole is harmless).
            let mut st = self.st.borrow_mut();
            if let Some((page, _)) = offset_job {
                st.index_pages_written = st.index_pages_written.min(page);
            }
            if let Some((page, _)) = time_job {
                st.time_pages_written = st.time_pages_written.min(page);
            }
        }
        result
    }

    /// Makes the whole segment durable before it stops being the active one (or at
    /// shutdown): log sync, every index entry written, index files synced.
    pub async fn finish(&self) -> Result<()> {
        let written = self.written();
        self.log
            .truncate(written)
            .await
            .map_err(io_err("truncate", &self.path))?;
        self.st.borrow_mut().preallocated = align_up(written);
        self.log
            .sync()
            .await
            .map_err(io_err("fdatasync", &self.path))?;
        self.write_index_pages(written, true).await?;
        self.index_file
            .sync()
            .await
            .map_err(io_err("fdatasync", &self.index_path))?;
        self.time_file
            .sync()
            .await
            .map_err(io_err("fdatasync", &self.time_path))?;
        Ok(())
    }

    /// Reads the index files into memory (they may be stale; recovery checks them).
    pub async fn load_indexes(&self) -> Result<()> {
        let bytes = read_whole(&self.index_file, &self.index_path).await?;
        let tbytes = read_whole(&self.time_file, &self.time_path).await?;
        let mut st = self.st.borrow_mut();
        st.index = OffsetIndex::from_bytes(&bytes);
        st.time_index = TimeIndex::from_bytes(&tbytes);
        Ok(())
    }

    /// Reads whole batches holding offsets from `offset` on, stopping before `hw`, at the end
    /// of the segment, or once `max_bytes` is reached (the first batch is always whole, even
    /// when larger). Every batch's CRC is checked: corrupt data is reported, never served.
    pub async fn read(&self, offset: Offset, max_bytes: usize, hw: Offset) -> Result<Vec<Bytes>> {
        const CHUNK_BYTES: usize = 64 * 1024;
        // `expected`: the offset the next batch must start at. The index entry claims one for
        // its position, and from there offsets run on without a gap; a batch that disagrees
        // means a corrupt index (first batch) or log, reported and never served.
        let (mut pos, end, mut expected) = {
            let st = self.st.borrow();
            let rel = u32::try_from((offset.0 - self.base.0).max(0)).unwrap_or(u32::MAX);
            let (rel, pos) = st.index.lookup(rel).unwrap_or((0, 0));
            (u64::from(pos), st.written, self.base.0 + i64::from(rel))
        };
        let first_pos = pos;
        let mut out = Vec::new();
        let mut total = 0usize;
        let mut chunk = Bytes::new();
        let mut chunk_pos = pos;
        while pos < end {
            let need = batch::HEADER_BYTES as u64;
            if pos + need > end {
                return Err(self.corrupt(pos, "batch header runs past the end of the log"));
            }
            if pos < chunk_pos || pos + need > chunk_pos + chunk.len() as u64 {
                chunk = self
                    .read_chunk(pos, CHUNK_BYTES.max(max_bytes.saturating_sub(total)), end)
                    .await?;
                chunk_pos = pos;
            }
            let at = usize::try_from(pos - chunk_pos).unwrap_or(0);
            let (header, len) =
                batch::peek(&chunk[at..]).map_err(|e| self.corrupt(pos, &e.to_string()))?;
            if pos + len as u64 > end {
                // A damaged length (the header's CRC is only checked once the batch is whole).
                return Err(self.corrupt(
                    pos,
                    &format!("a batch of {len} bytes runs past the end of the log at byte {end}"),
                ));
            }
            let base = header.base_offset.get();
            let last = base + i64::from(header.last_offset_delta.get());
            if base != expected {
                return Err(self.offset_mismatch(pos, first_pos, base, expected));
            }
            expected = last + 1;
            if base >= hw.0 || (!out.is_empty() && total + len > max_bytes) {
                break;
            }
            if last >= offset.0 {
                if pos + len as u64 > chunk_pos + chunk.len() as u64 {
                    chunk = self.read_chunk(pos, len.max(CHUNK_BYTES), end).await?;
                    chunk_pos = pos;
                }
                let at = usize::try_from(pos - chunk_pos).unwrap_or(0);
                let bytes = chunk.slice(at..at + len);
                batch::validate(&bytes, usize::MAX)
                    .map_err(|e| self.corrupt(pos, &e.to_string()))?;
                total += len;
                out.push(bytes);
                if total >= max_bytes {
                    break;
                }
            }
            pos += len as u64;
        }
        Ok(out)
    }

    async fn read_chunk(&self, pos: u64, len: usize, end: u64) -> Result<Bytes> {
        let len = len.min(usize::try_from(end - pos).unwrap_or(usize::MAX));
        let b = self
            .log
            .read_at(pos, len)
            .await
            .map_err(io_err("read", &self.path))?;
        if b.len() < len {
            return Err(self.corrupt(pos, &format!("short read: {} of {len} bytes", b.len())));
        }
        Ok(b)
    }

    /// A batch at `pos` whose offset is not the one due there: the index entry that led to
    /// `first_pos` lies (when `pos` is that entry's position), or the log does.
    fn offset_mismatch(&self, pos: u64, first_pos: u64, base: i64, expected: i64) -> EngineError {
        if pos == first_pos && pos > 0 {
            let entry = self
                .st
                .borrow()
                .index
                .count_below(pos + 1)
                .saturating_sub(1);
            EngineError::Corrupt {
                path: self.index_path.clone(),
                pos: entry as u64 * 8,
                reason: format!(
                    "an entry says offset {expected} is at log position {pos}, the batch there has offset {base}"
                ),
            }
        } else {
            self.corrupt(
                pos,
                &format!("batch has offset {base}, the previous batch ends before {expected}"),
            )
        }
    }

    fn corrupt(&self, pos: u64, reason: &str) -> EngineError {
        EngineError::Corrupt {
            path: self.path.clone(),
            pos,
            reason: reason.to_string(),
        }
    }

    /// The first batch at or after `timestamp` in this segment: (base offset, max timestamp).
    pub async fn offset_for_time(
        &self,
        timestamp: i64,
        hw: Offset,
    ) -> Result<Option<(Offset, i64)>> {
        let (start, mut entry) = {
            let st = self.st.borrow();
            if st.max_timestamp < timestamp {
                return Ok(None);
            }
            let entry = st.time_index.lookup_entry(timestamp);
            let start = entry.map_or(self.base, |(_, rel)| self.base.plus(i64::from(rel)));
            (start, entry)
        };
        let mut at = start;
        loop {
            let batches = self.read(at, 1 << 20, hw).await?;
            if batches.is_empty() {
                return Ok(None);
            }
            for b in &batches {
                let info = batch::info(b).map_err(|e| self.corrupt(0, &e.to_string()))?;
                if let Some((ts, _)) = entry.take() {
                    if info.base_offset != start.0 || info.max_timestamp != ts {
                        let rel = u32::try_from(start.0 - self.base.0).unwrap_or(u32::MAX);
                        let n = self
                            .st
                            .borrow()
                            .time_index
                            .count_below(rel.saturating_add(1));
                        return Err(EngineError::Corrupt {
                            path: self.time_path.clone(),
                            pos: n.saturating_sub(1) as u64 * 16,
                            reason: format!(
                                "an entry says the batch at offset {} raised the max timestamp to {ts}; the batch found has offset {} and max timestamp {}",
                                start.0, info.base_offset, info.max_timestamp
                            ),
                        });
                    }
                }
                if info.max_timestamp >= timestamp {
                    return Ok(Some((Offset(info.base_offset), info.max_timestamp)));
                }
                at = Offset(info.last_offset() + 1);
            }
        }
    }

    /// Closes the files.
    pub async fn close(self) -> Result<()> {
        self.log
            .close()
            .await
            .map_err(io_err("close", &self.path))?;
        self.index_file
            .close()
            .await
            .map_err(io_err("close", &self.index_path))?;
        self.time_file
            .close()
            .await
            .map_err(io_err("close", &self.time_path))?;
        Ok(())
    }

    /// Cuts the log at `written` (recovery found a torn or corrupt batch there).
    pub async fn truncate_log(&self, written: u64) -> Result<()> {
        self.log
            .truncate(align_up(written))
            .await
            .map_err(io_err("truncate", &self.path))?;
        // Zero the rest of the last block so a later scan cannot mistake old bytes for a batch.
        let start = align_down(written);
        if written > start {
            let keep = self
                .log
                .read_at(start, usize::try_from(written - start).unwrap_or(0))
                .await
                .map_err(io_err("read", &self.path))?;
            let mut buf = self.log.alloc(BLOCK_BYTES as usize);
            buf.bytes_mut()[..keep.len()].copy_from_slice(&keep);
            self.log
                .write_at(buf, start)
                .await
                .map_err(io_err("write", &self.path))?;
        }
        self.log
            .sync()
            .await
            .map_err(io_err("fdatasync", &self.path))?;
        Ok(())
    }
}

async fn read_whole<F: StorageFile>(file: &F, path: &Path) -> Result<Bytes> {
    let size = file.size().await.map_err(io_err("stat", path))?;
    file.read_at(0, usize::try_from(size).unwrap_or(0))
        .await
        .map_err(io_err("read", path))
}

async fn write_pages<F: StorageFile>(
    file: &F,
    path: &Path,
    first_page: usize,
    entries: &[u8],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let len = usize::try_from(align_up(entries.len() as u64)).unwrap_or(usize::MAX);
    let mut buf = file.alloc(len);
    buf.bytes_mut()[..entries.len()].copy_from_slice(entries);
    let pos = first_page as u64 * BLOCK_BYTES;
    let done = file
        .write_at(buf, pos)
        .await
        .map_err(io_err("write", path))?;
    if done != len {
        return Err(EngineError::io(
            "write",
            path,
            std::io::Error::new(std::io::ErrorKind::WriteZero, "short index write"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two batches with offsets 100 and 101 assigned, and the write buffer they would be
    /// written in after `first` bytes of an old tail, padded to the block with `pad` more.
    fn written(first: usize, pad: usize) -> (Vec<(Bytes, BatchInfo)>, Bytes) {
        let batches: Vec<(Bytes, BatchInfo)> = [b"one".as_slice(), b"two"]
            .iter()
            .zip([100, 101])
            .map(|(v, base)| {
                let b = batch::build(0, &[v]);
                let mut info = batch::validate(&b, usize::MAX).expect("valid");
                info.base_offset = base;
                (b, info)
            })
            .collect();
        let mut buf = vec![7u8; first];
        for (b, info) in &batches {
            let at = buf.len();
            buf.extend_from_slice(b);
            batch::set_base_offset(&mut buf[at..], info.base_offset);
        }
        buf.resize(buf.len() + pad, 0);
        (batches, Bytes::from(buf))
    }

    fn check_patched(out: &[Bytes], batches: &[(Bytes, BatchInfo)]) {
        assert_eq!(out.len(), batches.len());
        for (o, (b, info)) in out.iter().zip(batches) {
            assert_eq!(
                batch::info(o).expect("header").base_offset,
                info.base_offset
            );
            assert_eq!(
                o[8..],
                b[8..],
                "only baseOffset differs from the producer's bytes"
            );
            batch::validate(o, usize::MAX).expect("the CRC still holds");
        }
    }

    fn inside(piece: &Bytes, buf: &Bytes) -> bool {
        let range = buf.as_ptr_range();
        range.contains(&piece.as_ptr())
    }

    #[test]
    fn little_overhead_shares_the_written_buffer() {
        let (batches, buf) = written(3, 2);
        let out = cacheable(&batches, Some(buf.clone()), 3);
        check_patched(&out, &batches);
        assert!(out.iter().all(|o| inside(o, &buf)), "slices, not copies");
    }

    #[test]
    fn much_overhead_copies_out_of_the_written_buffer() {
        let (batches, buf) = written(4000, 3000);
        let out = cacheable(&batches, Some(buf.clone()), 4000);
        check_patched(&out, &batches);
        assert!(
            out.iter().all(|o| !inside(o, &buf)),
            "copies keep no buffer alive"
        );
    }

    #[test]
    fn no_buffer_back_patches_copies_of_the_producers_bytes() {
        let (batches, _) = written(0, 0);
        let out = cacheable(&batches, None, 0);
        check_patched(&out, &batches);
        assert!(out
            .iter()
            .zip(&batches)
            .all(|(o, (b, _))| o.as_ptr() != b.as_ptr()));
    }
}
