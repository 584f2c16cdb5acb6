//! A partition: its ordered segments, the append path with group commit, reads, retention.
//!
//! ```text
//! append ─ validate ─ producer check ─ assign offsets (patch baseOffset) ─ pending queue
//!                                                                              │
//!   the first waiter to find no flush running becomes the flusher:           ▼
//!   take every pending batch ─ one write per segment (roll first if full) ─ fdatasync
//!   (fsync=always) ─ move `written`/`synced` ─ wake every waiter
//! ```
//! Appends that arrive while a flush runs queue up and share the next write and fdatasync:
//! that is group commit. Offsets are assigned in queue order, so the log is written in offset
//! order. A failed write or fdatasync puts the partition in a read-only error state: every
//! waiter gets the error and no later append succeeds (what was on disk is unknown).
//!
//! Invariant: `log_start <= synced <= written <= next_offset`, and the high watermark is
//! `synced` with fsync=always (a consumer never sees data a crash could take back), else
//! `written`.

use std::{cell::RefCell, collections::BTreeMap, path::PathBuf, rc::Rc};

use bytes::{Bytes, BytesMut};
use event_listener::{Event, EventListener};
use serde::{Deserialize, Serialize};

use crate::{
    batch::{self, BatchInfo},
    batch_cache::{BatchCache, CachedBatch},
    config::{EngineConfig, FsyncPolicy, TopicConfig},
    error::{EngineError, Result},
    producers::{Producers, SeqCheck},
    recovery,
    segment::Segment,
    storage::Storage,
    types::{Offset, TimestampMs, TopicPartition},
};

/// The answer to an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset given to the first record of the first batch.
    pub base_offset: Offset,
    /// Offset of the last record appended.
    pub last_offset: Offset,
    /// The broker's clock when the batches were accepted.
    pub log_append_time: TimestampMs,
    /// The partition's log start offset.
    pub log_start_offset: Offset,
    /// The batch was a retry of one already written (idempotent producer).
    pub duplicate: bool,
}

/// The answer to a read.
#[derive(Clone, Debug, Default)]
pub struct ReadOutcome {
    /// Whole batches, in offset order.
    pub batches: Vec<Bytes>,
    /// The offset after the last readable record.
    pub high_watermark: Offset,
    /// The first offset still in the log.
    pub log_start_offset: Offset,
    /// Equal to the high watermark (keel has no transactions).
    pub last_stable_offset: Offset,
}

/// A partition's offsets and size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// First offset present.
    pub log_start: Offset,
    /// Offset after the last readable record.
    pub high_watermark: Offset,
    /// Offset after the last record written.
    pub log_end: Offset,
    /// Bytes of log on disk.
    pub size_bytes: u64,
}

/// Settings a partition takes from the engine.
#[derive(Clone, Debug)]
pub struct PartitionLimits {
    /// Durability of appends.
    pub fsync: FsyncPolicy,
    /// Largest batch accepted.
    pub batch_bytes_max: usize,
    /// Queued bytes before appends wait.
    pub append_queue_bytes_max: usize,
    /// Largest single write.
    pub write_bytes_max: usize,
    /// Preallocation step.
    pub preallocate_bytes: u64,
    /// Producer ids remembered.
    pub producers_max: usize,
    /// Batches remembered per producer.
    pub producer_batches_max: usize,
}

impl PartitionLimits {
    /// The limits from an engine config.
    #[must_use]
    pub fn from_config(c: &EngineConfig) -> Self {
        PartitionLimits {
            fsync: c.fsync,
            batch_bytes_max: c.batch_bytes_max,
            append_queue_bytes_max: c.append_queue_bytes_max,
            write_bytes_max: c.write_bytes_max,
            preallocate_bytes: c.preallocate_bytes,
            producers_max: c.producers_per_partition_max,
            producer_batches_max: c.producer_batches_max,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    next_offset: Offset,
    pending: Vec<(Bytes, BatchInfo)>,
    pending_bytes: usize,
    written: Offset,
    synced: Offset,
    log_start: Offset,
    flushing: bool,
    error: Option<String>,
    closed: bool,
    producers: Producers,
}

/// The clean-shutdown marker's content.
#[derive(Debug, Serialize, Deserialize)]
struct CleanMarker {
    version: u32,
    next_offset: i64,
    producers: Producers,
}

const CLEAN_MARKER: &str = "clean_shutdown";
const PRODUCERS_SNAPSHOT: &str = "producers.json";

/// One partition, owned by one shard.
#[derive(Debug)]
pub struct Partition<S: Storage> {
    /// Its name.
    pub tp: TopicPartition,
    uid: u64,
    dir: PathBuf,
    storage: S,
    config: RefCell<TopicConfig>,
    limits: PartitionLimits,
    cache: Rc<RefCell<BatchCache>>,
    segments: RefCell<BTreeMap<i64, Rc<Segment<S::File>>>>,
    st: RefCell<State>,
    event: Event,
}

impl<S: Storage> Partition<S> {
    /// Opens the partition in `dir` (creating it when new), recovering as needed.
    pub async fn open(
        storage: S,
        tp: TopicPartition,
        dir: PathBuf,
        uid: u64,
        config: TopicConfig,
        limits: PartitionLimits,
        cache: Rc<RefCell<BatchCache>>,
    ) -> Result<Self> {
        storage
            .create_dir_all(&dir)
            .map_err(|e| EngineError::io("mkdir", &dir, e))?;
        let marker_path = dir.join(CLEAN_MARKER);
        let marker: Option<CleanMarker> = read_json(&storage, &marker_path).await?;
        if let Some(m) = &marker {
            if m.version != 1 {
                return Err(EngineError::Corrupt {
                    path: marker_path,
                    pos: 0,
                    reason: format!(
                        "clean shutdown marker version {} is not supported",
                        m.version
                    ),
                });
            }
        }
        let mut bases: Vec<i64> = storage
            .list_dir(&dir)
            .map_err(|e| EngineError::io("list", &dir, e))?
            .iter()
            .filter_map(|n| n.strip_suffix(".log").and_then(|b| b.parse().ok()))
            .collect();
        bases.sort_unstable();
        let mut producers = match &marker {
            Some(m) => m.producers.clone(),
            None => read_json(&storage, &dir.join(PRODUCERS_SNAPSHOT))
                .await?
                .unwrap_or_default(),
        };
        let mut segments = BTreeMap::new();
        if bases.is_empty() {
            bases.push(0);
            let seg = Segment::open(&storage, &dir, Offset(0), true).await?;
            storage
                .sync_dir(&dir)
                .await
                .map_err(|e| EngineError::io("fsync dir", &dir, e))?;
            segments.insert(0, Rc::new(seg));
        }
        let last_base = *bases.last().unwrap_or(&0);
        let to_open: Vec<i64> = bases
            .iter()
            .copied()
            .filter(|b| !segments.contains_key(b))
            .collect();
        for base in to_open {
            let seg = Segment::open(&storage, &dir, Offset(base), false).await?;
            let is_last = base == last_base;
            let trusted = !is_last || marker.is_some();
            let prod = (is_last && marker.is_none()).then_some((
                &mut producers,
                limits.producers_max,
                limits.producer_batches_max,
            ));
            let r =
                recovery::recover_segment(&seg, trusted, config.index_interval_bytes, prod).await?;
            if r.bytes_cut > 0 {
                tracing::info!(partition = %tp, base, bytes_cut = r.bytes_cut, batches = r.batches_walked, "recovered segment after an unclean stop");
            }
            segments.insert(base, Rc::new(seg));
        }
        if marker.is_some() {
            storage
                .remove(&marker_path)
                .await
                .map_err(|e| EngineError::io("remove", &marker_path, e))?;
            storage
                .sync_dir(&dir)
                .await
                .map_err(|e| EngineError::io("fsync dir", &dir, e))?;
        }
        let log_start = Offset(*segments.keys().next().unwrap_or(&0));
        let end = segments
            .values()
            .next_back()
            .map_or(log_start, |s| s.st.borrow().next_offset);
        if let Some(m) = &marker {
            if m.next_offset != end.0 {
                tracing::warn!(partition = %tp, marker = m.next_offset, found = end.0, "clean marker disagrees with the log");
            }
        }
        let st = State {
            next_offset: end,
            written: end,
            synced: end,
            log_start,
            producers,
            ..State::default()
        };
        Ok(Partition {
            tp,
            uid,
            dir,
            storage,
            config: RefCell::new(config),
            limits,
            cache,
            segments: RefCell::new(segments),
            st: RefCell::new(st),
            event: Event::new(),
        })
    }

    /// The partition's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Replaces the topic settings (a config change).
    pub fn set_config(&self, config: TopicConfig) {
        *self.config.borrow_mut() = config;
    }

    /// The partition's offsets.
    pub fn offsets(&self) -> PartitionOffsets {
        let st = self.st.borrow();
        PartitionOffsets {
            log_start: st.log_start,
            high_watermark: self.hw(&st),
            log_end: st.written,
            size_bytes: self.segments.borrow().values().map(|s| s.written()).sum(),
        }
    }

    fn hw(&self, st: &State) -> Offset {
        match self.limits.fsync {
            FsyncPolicy::Always => st.synced,
            _ => st.written,
        }
    }

    /// A listener woken whenever the high watermark may have moved (or an error happened).
    pub fn listen(&self) -> EventListener {
        self.event.listen()
    }

    /// Validates, assigns offsets and appends the batches in `records` (one or more), waiting
    /// until they are as durable as the fsync policy asks.
    pub async fn append(&self, records: &Bytes) -> Result<AppendOutcome> {
        let parts = batch::split(records, self.limits.batch_bytes_max).map_err(|source| {
            EngineError::InvalidBatch {
                tp: self.tp.clone(),
                source,
            }
        })?;
        let size: usize = parts.iter().map(|(b, _)| b.len()).sum();
        self.wait_for_queue_room(size).await?;
        let now = TimestampMs::now();
        let (base, last, duplicate) = self.enqueue(parts)?;
        self.wait_durable(last.plus(1)).await?;
        let log_start_offset = self.st.borrow().log_start;
        Ok(AppendOutcome {
            base_offset: base,
            last_offset: last,
            log_append_time: now,
            log_start_offset,
            duplicate,
        })
    }

    /// Back-pressure: waits while the pending queue is over its bound.
    async fn wait_for_queue_room(&self, size: usize) -> Result<()> {
        loop {
            let listener = {
                let st = self.check_writable()?;
                if st.pending_bytes == 0
                    || st.pending_bytes + size <= self.limits.append_queue_bytes_max
                {
                    return Ok(());
                }
                self.event.listen()
            };
            listener.await;
        }
    }

    fn check_writable(&self) -> Result<std::cell::Ref<'_, State>> {
        let st = self.st.borrow();
        if let Some(reason) = &st.error {
            return Err(EngineError::ReadOnly {
                tp: self.tp.clone(),
                reason: reason.clone(),
            });
        }
        if st.closed {
            return Err(EngineError::ShuttingDown);
        }
        Ok(st)
    }

    /// Producer checks and offset assignment, without awaiting: batches enter the queue in
    /// the order offsets are given.
    fn enqueue(&self, parts: Vec<(Bytes, BatchInfo)>) -> Result<(Offset, Offset, bool)> {
        drop(self.check_writable()?);
        let mut st = self.st.borrow_mut();
        for (_, info) in &parts {
            if let SeqCheck::Duplicate(b) = st.producers.check(info)? {
                // Kafka answers a retried batch with its first write's offsets. The
                // request may hold only that batch (one batch per partition per request).
                return Ok((Offset(b.base_offset), Offset(b.last_offset), true));
            }
        }
        let base = st.next_offset;
        for (bytes, mut info) in parts {
            let mut patched = BytesMut::from(&bytes[..]);
            batch::set_base_offset(&mut patched, st.next_offset.0);
            info.base_offset = st.next_offset.0;
            st.next_offset = Offset(info.last_offset() + 1);
            st.producers.record(
                &info,
                self.limits.producers_max,
                self.limits.producer_batches_max,
            );
            st.pending_bytes += patched.len();
            st.pending.push((patched.freeze(), info));
        }
        let last = st.next_offset.plus(-1);
        debug_assert!(
            st.log_start <= st.synced && st.synced <= st.written && st.written <= st.next_offset
        );
        Ok((base, last, false))
    }

    /// Waits until offsets below `target` are durable per the policy, flushing when no one is.
    async fn wait_durable(&self, target: Offset) -> Result<()> {
        loop {
            let listener = {
                let st = self.st.borrow();
                if let Some(reason) = &st.error {
                    return Err(EngineError::ReadOnly {
                        tp: self.tp.clone(),
                        reason: reason.clone(),
                    });
                }
                let done = match self.limits.fsync {
                    FsyncPolicy::Always => st.synced,
                    _ => st.written,
                };
                if done >= target {
                    return Ok(());
                }
                if st.flushing {
                    Some(self.event.listen())
                } else {
                    None
                }
            };
            match listener {
                Some(l) => l.await,
                None => self.flush().await,
            }
        }
    }

    /// Writes every pending batch, then (fsync=always) syncs. One runs at a time.
    async fn flush(&self) {
        let batches = {
            let mut st = self.st.borrow_mut();
            assert!(!st.flushing, "one flusher at a time");
            st.flushing = true;
            st.pending_bytes = 0;
            std::mem::take(&mut st.pending)
        };
        let result = self.write(&batches).await;
        let result = match result {
            Ok(()) if self.limits.fsync == FsyncPolicy::Always && !batches.is_empty() => {
                self.sync_active().await
            }
            other => other,
        };
        {
            let mut st = self.st.borrow_mut();
            st.flushing = false;
            if let Err(e) = result {
                tracing::error!(partition = %self.tp, error = %e, "write failed: partition is now read-only");
                st.error = Some(e.to_string());
            }
        }
        self.event.notify(usize::MAX);
    }

    async fn sync_active(&self) -> Result<()> {
        let (seg, target) = {
            let st = self.st.borrow();
            (self.active(), st.written)
        };
        seg.sync().await?;
        let mut st = self.st.borrow_mut();
        if target > st.synced {
            st.synced = target;
        }
        Ok(())
    }

    fn active(&self) -> Rc<Segment<S::File>> {
        let segs = self.segments.borrow();
        let (_, seg) = segs
            .iter()
            .next_back()
            .expect("a partition always has an active segment");
        Rc::clone(seg)
    }

    /// Writes batches to the active segment, rolling first when a batch would not fit or
    /// the segment is too old; groups consecutive batches into writes of at most
    /// `write_bytes_max`.
    async fn write(&self, batches: &[(Bytes, BatchInfo)]) -> Result<()> {
        let config = self.config.borrow().clone();
        let mut i = 0;
        while i < batches.len() {
            let now = TimestampMs::now().0;
            let seg = self.active();
            let (written, first_ms) = {
                let s = seg.st.borrow();
                (s.written, s.first_append_ms)
            };
            let len0 = batches[i].0.len() as u64;
            let too_old = first_ms >= 0
                && now.saturating_sub(first_ms)
                    >= i64::try_from(config.segment_ms).unwrap_or(i64::MAX);
            if written > 0 && (written + len0 > config.segment_bytes_max || too_old) {
                self.roll(Offset(batches[i].1.base_offset)).await?;
                continue;
            }
            let mut j = i + 1;
            let mut group_bytes = len0;
            while j < batches.len() {
                let l = batches[j].0.len() as u64;
                if written + group_bytes + l > config.segment_bytes_max
                    || group_bytes + l > self.limits.write_bytes_max as u64
                {
                    break;
                }
                group_bytes += l;
                j += 1;
            }
            seg.append(
                &batches[i..j],
                config.index_interval_bytes,
                now,
                self.limits.preallocate_bytes,
            )
            .await?;
            let mut cache = self.cache.borrow_mut();
            for (b, info) in &batches[i..j] {
                cache.insert(
                    self.uid,
                    info.base_offset,
                    CachedBatch {
                        bytes: b.clone(),
                        last_offset: info.last_offset(),
                    },
                );
            }
            drop(cache);
            let end = Offset(batches[j - 1].1.last_offset() + 1);
            self.st.borrow_mut().written = end;
            if self.limits.fsync != FsyncPolicy::Always {
                self.event.notify(usize::MAX);
            }
            i = j;
        }
        Ok(())
    }

    /// Finishes the active segment and starts a new one at `base`.
    async fn roll(&self, base: Offset) -> Result<()> {
        let old = self.active();
        old.finish().await?;
        {
            // Everything written so far is now synced.
            let mut st = self.st.borrow_mut();
            st.synced = st.written;
        }
        let producers = serde_json::to_vec(&self.st.borrow().producers)
            .map_err(|e| EngineError::io("encode", &self.dir, std::io::Error::other(e)))?;
        let snap = self.dir.join(PRODUCERS_SNAPSHOT);
        self.storage
            .write_atomic(&snap, &producers)
            .await
            .map_err(|e| EngineError::io("write", &snap, e))?;
        let seg = Segment::open(&self.storage, &self.dir, base, true).await?;
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|e| EngineError::io("fsync dir", &self.dir, e))?;
        tracing::debug!(partition = %self.tp, base = base.0, "rolled segment");
        self.segments.borrow_mut().insert(base.0, Rc::new(seg));
        Ok(())
    }

    /// Syncs if anything was written since the last sync (the fsync=interval ticker).
    pub async fn sync_if_dirty(&self) -> Result<()> {
        let dirty = {
            let st = self.st.borrow();
            st.synced < st.written && !st.flushing
        };
        if !dirty {
            return Ok(());
        }
        let result = self.sync_active().await;
        if let Err(e) = &result {
            self.st.borrow_mut().error = Some(e.to_string());
            self.event.notify(usize::MAX);
        }
        result
    }

    /// Reads whole batches from `offset` on, up to `max_bytes` (the first batch is always
    /// whole), from the batch cache or the segment holding the offset.
    pub async fn read(&self, offset: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        let (hw, log_start) = {
            let st = self.st.borrow();
            (self.hw(&st), st.log_start)
        };
        let mut out = ReadOutcome {
            batches: Vec::new(),
            high_watermark: hw,
            log_start_offset: log_start,
            last_stable_offset: hw,
        };
        if offset < log_start || offset > hw {
            return Err(EngineError::OffsetOutOfRange {
                tp: self.tp.clone(),
                requested: offset,
                log_start,
                high_watermark: hw,
            });
        }
        if offset == hw {
            return Ok(out);
        }
        out.batches = self
            .cache
            .borrow()
            .read(self.uid, offset.0, max_bytes, hw.0);
        if !out.batches.is_empty() {
            return Ok(out);
        }
        let mut at = offset;
        while out.batches.is_empty() && at < hw {
            let seg = {
                let segs = self.segments.borrow();
                match segs.range(..=at.0).next_back() {
                    Some((_, s)) => Rc::clone(s),
                    None => break,
                }
            };
            out.batches = seg.read(at, max_bytes, hw).await?;
            let seg_end = seg.st.borrow().next_offset;
            if out.batches.is_empty() {
                if seg_end <= at {
                    // The offset lies at the boundary to the next segment.
                    at = Offset(
                        self.segments
                            .borrow()
                            .range(at.0 + 1..)
                            .next()
                            .map_or(hw.0, |(b, _)| *b)
                            .max(at.0 + 1),
                    );
                } else {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The first batch whose max timestamp is at or after `timestamp`: (offset, timestamp).
    pub async fn offset_for_time(&self, timestamp: i64) -> Result<Option<(Offset, i64)>> {
        let hw = self.hw(&self.st.borrow());
        let segs: Vec<_> = self.segments.borrow().values().cloned().collect();
        for seg in segs {
            if let Some(found) = seg.offset_for_time(timestamp, hw).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Deletes closed segments past `retention_ms` or `retention_bytes`; returns how many.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let config = self.config.borrow().clone();
        let mut deleted = 0;
        loop {
            let victim = {
                let segs = self.segments.borrow();
                if segs.len() < 2 {
                    break;
                }
                let total: u64 = segs.values().map(|s| s.written()).sum();
                let (_, oldest) = segs.iter().next().expect("two segments");
                let (max_ts, size) = {
                    let s = oldest.st.borrow();
                    (s.max_timestamp, s.written)
                };
                let by_time =
                    config.retention_ms >= 0 && max_ts < now_ms.saturating_sub(config.retention_ms);
                let by_size = config.retention_bytes >= 0
                    && total - size >= u64::try_from(config.retention_bytes).unwrap_or(0);
                if !(by_time || by_size) {
                    break;
                }
                Rc::clone(oldest)
            };
            self.delete_segment(&victim).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Deletes the closed segments that hold only offsets below `offset` (a compacted
    /// prefix: its records were rewritten later in the log) and moves the log start past
    /// them. The active segment always stays. Returns how many segments were deleted.
    pub async fn delete_before(&self, offset: Offset) -> Result<usize> {
        let mut deleted = 0;
        loop {
            let victim = {
                let segs = self.segments.borrow();
                let mut it = segs.iter();
                match (it.next(), it.next()) {
                    (Some((_, oldest)), Some((next_base, _))) if *next_base <= offset.0 => {
                        Rc::clone(oldest)
                    }
                    _ => break,
                }
            };
            self.delete_segment(&victim).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    async fn delete_segment(&self, seg: &Segment<S::File>) -> Result<()> {
        let next_base = {
            let mut segs = self.segments.borrow_mut();
            segs.remove(&seg.base.0);
            *segs.keys().next().expect("the active segment stays")
        };
        {
            let mut st = self.st.borrow_mut();
            st.log_start = Offset(next_base);
        }
        self.cache.borrow_mut().remove_below(self.uid, next_base);
        for path in crate::segment::paths(&self.dir, seg.base) {
            self.storage
                .remove(&path)
                .await
                .map_err(|e| EngineError::io("remove", &path, e))?;
        }
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|e| EngineError::io("fsync dir", &self.dir, e))?;
        tracing::info!(partition = %self.tp, base = seg.base.0, log_start = next_base, "retention deleted segment");
        Ok(())
    }

    /// Whether the partition went read-only after a storage error.
    pub fn failed(&self) -> Option<String> {
        self.st.borrow().error.clone()
    }

    /// Clean shutdown: waits for in-flight writes, writes what is queued, finishes the active
    /// segment and writes the clean-shutdown marker. Appends fail from now on.
    pub async fn close(&self) -> Result<()> {
        loop {
            let pending = {
                let st = self.st.borrow();
                if st.error.is_some() {
                    break;
                }
                (st.flushing, !st.pending.is_empty(), st.next_offset)
            };
            match pending {
                (true, _, _) => self.event.listen().await,
                (false, true, next) => {
                    let _ = self.wait_durable(next).await;
                }
                (false, false, _) => break,
            }
        }
        self.st.borrow_mut().closed = true;
        self.event.notify(usize::MAX);
        if let Some(reason) = self.failed() {
            return Err(EngineError::ReadOnly {
                tp: self.tp.clone(),
                reason,
            });
        }
        self.active().finish().await?;
        let marker = {
            let st = self.st.borrow();
            CleanMarker {
                version: 1,
                next_offset: st.written.0,
                producers: st.producers.clone(),
            }
        };
        let bytes = serde_json::to_vec(&marker)
            .map_err(|e| EngineError::io("encode", &self.dir, std::io::Error::other(e)))?;
        let path = self.dir.join(CLEAN_MARKER);
        self.storage
            .write_atomic(&path, &bytes)
            .await
            .map_err(|e| EngineError::io("write", &path, e))?;
        let segs: Vec<_> = std::mem::take(&mut *self.segments.borrow_mut())
            .into_values()
            .collect();
        for seg in segs {
            if let Ok(seg) = Rc::try_unwrap(seg) {
                seg.close().await?;
            }
        }
        self.cache.borrow_mut().remove_partition(self.uid);
        Ok(())
    }

    /// Drops the partition's cached batches (it is being deleted).
    pub fn forget_cache(&self) {
        self.cache.borrow_mut().remove_partition(self.uid);
    }
}

async fn read_json<S: Storage, T: for<'de> Deserialize<'de>>(
    storage: &S,
    path: &std::path::Path,
) -> Result<Option<T>> {
    if !storage.exists(path) {
        return Ok(None);
    }
    let file = storage
        .open(path, false)
        .await
        .map_err(|e| EngineError::io("open", path, e))?;
    let size = file
        .size()
        .await
        .map_err(|e| EngineError::io("stat", path, e))?;
    let bytes = file
        .read_at(0, usize::try_from(size).unwrap_or(0))
        .await
        .map_err(|e| EngineError::io("read", path, e))?;
    let _ = file.close().await;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Ok(Some(v)),
        Err(e) => Err(EngineError::Corrupt {
            path: path.to_path_buf(),
            pos: 0,
            reason: e.to_string(),
        }),
    }
}

use crate::storage::StorageFile as _;
