//! A partition: its ordered segments, the append path with group commit, reads, retention.
//!
//! ```text
//! append ─ validate ─ producer check ─ assign offsets ─ pending queue (producer's bytes)
//!                                                                              │
//!   the first waiter to find no flush running becomes the flusher:           ▼
//!   take every pending batch ─ one write per segment (roll first if full; each batch
//!   copied once, into the write buffer, baseOffset patched there) ─ batch cache (slices of
//!   the written buffer) ─ fdatasync (fsync=always) ─ move `written`/`synced` ─ wake every
//!   waiter
//! ```
//! Appends that arrive while a flush runs queue up and share the next write and fdatasync:
//! that is group commit. Offsets are assigned in queue order, so the log is written in offset
//! order. A failed write or fdatasync puts the partition in a read-only error state: every
//! waiter gets the error and no later append succeeds (what was on disk is unknown). The one
//! exception is a disk out of space (ENOSPC, EDQUOT) at fallocate, write or roll time: then no
//! byte of the failed write reached the file's logical end (a block write only rewrites the
//! tail block with identical bytes before `written`), so the unwritten batches are dropped,
//! their offsets given back, their appends fail with a storage error, and the partition stays
//! writable for when space returns (see `drop_unwritten`).
//!
//! Invariant: `log_start <= synced <= written <= next_offset`, and the high watermark is
//! `synced` with fsync=always (a consumer never sees data a crash could take back), else
//! `written`.

use std::{
    cell::RefCell,
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    rc::Rc,
};

use bytes::Bytes;
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
    storage::{Storage, StorageFile},
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
    /// Deleted segments' log files kept to be recycled as new segments.
    pub segment_spares_max: usize,
    /// Producer ids remembered.
    pub producers_max: usize,
    /// Batches remembered per producer.
    pub producer_batches_max: usize,
    /// Whether a flush takes every queued batch (group commit) or only the oldest one, so
    /// that each append gets a write and an fdatasync of its own (the baseline group commit
    /// is measured against).
    pub group_commit: bool,
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
            segment_spares_max: c.segment_spares_max,
            producers_max: c.producers_per_partition_max,
            producer_batches_max: c.producer_batches_max,
            group_commit: c.group_commit,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    next_offset: Offset,
    /// Batches waiting for a write: their offsets assigned in the `BatchInfo`, their bytes
    /// as the producer sent them (slices of the request, not yet patched).
    pending: Vec<(Bytes, BatchInfo)>,
    pending_bytes: usize,
    written: Offset,
    synced: Offset,
    /// The highest offset a started fdatasync covers (`synced <= sync_target <= written`).
    sync_target: Offset,
    log_start: Offset,
    flushing: bool,
    error: Option<String>,
    closed: bool,
    producers: Producers,
    /// Bumped each time a flush out of space dropped the unwritten batches.
    generation: u64,
    /// Recent drops, oldest first: (the generation whose appends it dropped, offsets kept).
    drops: VecDeque<(u64, Offset)>,
    /// Why the last drop happened.
    drop_reason: String,
}

/// Drops remembered for waiters that have not looked yet; an older waiter is failed.
const DROPS_KEPT: usize = 16;

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
    /// The segment rolled away from whose finish (exact length, sync, indexes) has not run
    /// yet. At most one: a roll finishes the previous one first.
    unfinished: RefCell<Option<Rc<Segment<S::File>>>>,
    /// Serializes finishing `unfinished` between the background task and a roll.
    finish_lock: futures::lock::Mutex<()>,
    /// Notified when a segment waits to be finished in the background.
    housekeeping: Event,
    /// Log files of deleted segments kept to become the next segments (at most
    /// `segment_spares_max`; FORMAT.md, "Spare files").
    spares: RefCell<Vec<PathBuf>>,
}

/// Deletes those of `paths` that exist, then syncs `dir`.
async fn remove_and_sync<S: Storage>(
    storage: &S,
    dir: &Path,
    paths: impl IntoIterator<Item = PathBuf>,
) -> Result<()> {
    for path in paths {
        if storage.exists(&path) {
            storage
                .remove(&path)
                .await
                .map_err(|e| EngineError::io("remove", &path, e))?;
        }
    }
    storage
        .sync_dir(dir)
        .await
        .map_err(|e| EngineError::io("fsync dir", dir, e))
}

/// A spare's name: the deleted segment's base offset, `.spare` (not `.log`, so recovery never
/// takes it for a segment).
fn spare_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{:020}.spare", base.0))
}

/// The spare files in `dir`, oldest first, keeping at most `max`: the rest are deleted (the
/// setting went down, or a crash came between a rename and the next step).
async fn open_spares<S: Storage>(storage: &S, dir: &Path, max: usize) -> Result<Vec<PathBuf>> {
    let mut names: Vec<String> = storage
        .list_dir(dir)
        .map_err(|e| EngineError::io("list", dir, e))?
        .into_iter()
        .filter(|n| n.ends_with(".spare"))
        .collect();
    names.sort_unstable();
    let mut spares: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    if spares.len() > max {
        remove_and_sync(storage, dir, spares.drain(max..)).await?;
    }
    Ok(spares)
}

/// The segments of the partition in `dir`, each recovered (FORMAT.md, "Recovery"), and the
/// producer state: from `marker` when given (a clean close: the last two segments are trusted),
/// else from the snapshot and the active segment's batches.
async fn open_segments<S: Storage>(
    storage: &S,
    tp: &TopicPartition,
    dir: &Path,
    config: &TopicConfig,
    limits: &PartitionLimits,
    marker: Option<&CleanMarker>,
) -> Result<(Segments<S>, Producers)> {
    let mut bases: Vec<i64> = storage
        .list_dir(dir)
        .map_err(|e| EngineError::io("list", dir, e))?
        .iter()
        .filter_map(|n| n.strip_suffix(".log").and_then(|b| b.parse().ok()))
        .collect();
    bases.sort_unstable();
    let mut producers = match &marker {
        Some(m) => m.producers.clone(),
        None => read_json(storage, &dir.join(PRODUCERS_SNAPSHOT))
            .await?
            .unwrap_or_default(),
    };
    let mut segments = BTreeMap::new();
    if bases.is_empty() {
        bases.push(0);
        let seg = Segment::open(storage, dir, Offset(0), true).await?;
        storage
            .sync_dir(dir)
            .await
            .map_err(|e| EngineError::io("fsync dir", dir, e))?;
        segments.insert(0, Rc::new(seg));
    }
    let last_base = *bases.last().unwrap_or(&0);
    let to_open: Vec<i64> = bases
        .iter()
        .copied()
        .filter(|b| !segments.contains_key(b))
        .collect();
    // The segment before the active one may not have been finished (rolls finish it in
    // the background): after an unclean stop it is checked like the active one.
    let prev_base = bases.len().checked_sub(2).map(|i| bases[i]);
    for base in to_open {
        let seg = Segment::open(storage, dir, Offset(base), false).await?;
        let is_last = base == last_base;
        let is_prev = Some(base) == prev_base;
        let trusted = !(is_last || is_prev) || marker.is_some();
        let prod = (is_last && marker.is_none()).then_some((
            &mut producers,
            limits.producers_max,
            limits.producer_batches_max,
        ));
        let r = recovery::recover_segment(&seg, trusted, config.index_interval_bytes, prod).await?;
        if r.bytes_cut > 0 {
            tracing::info!(partition = %tp, base, bytes_cut = r.bytes_cut, batches = r.batches_walked, "recovered segment after an unclean stop");
        }
        if is_prev && !trusted {
            let end = seg.st.borrow().next_offset;
            if end.0 < last_base {
                // It lost its tail (never synced, or torn): the log is a prefix, so the
                // segment after it goes too, and this one is the active segment again.
                tracing::warn!(partition = %tp, base, end = end.0, dropped_from = last_base, "the segment before the active one lost its tail: dropping the segment after it");
                remove_and_sync(storage, dir, crate::segment::paths(dir, Offset(last_base)))
                    .await?;
                segments.insert(base, Rc::new(seg));
                break;
            }
            // Finish it now, so that it can be trusted from here on.
            seg.finish().await?;
        }
        segments.insert(base, Rc::new(seg));
    }
    Ok((segments, producers))
}

/// The segments of a partition, by base offset.
type Segments<S> = BTreeMap<i64, Rc<Segment<<S as Storage>::File>>>;

/// The offset after the last batch of the log (its start when empty).
fn log_end<F: StorageFile>(segments: &BTreeMap<i64, Rc<Segment<F>>>) -> Offset {
    let start = Offset(*segments.keys().next().unwrap_or(&0));
    segments
        .values()
        .next_back()
        .map_or(start, |s| s.st.borrow().next_offset)
}

/// Closes the files of segments no longer used (a partition's at close, or those opened and
/// given up); a segment a reader still holds closes when it drops.
async fn close_all<F: StorageFile>(segments: BTreeMap<i64, Rc<Segment<F>>>) -> Result<()> {
    for seg in segments.into_values() {
        if let Ok(seg) = Rc::try_unwrap(seg) {
            seg.close().await?;
        }
    }
    Ok(())
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
        let opened = open_segments(&storage, &tp, &dir, &config, &limits, marker.as_ref()).await;
        let (segments, producers) = match (opened, &marker) {
            (Ok((segments, _)), Some(m)) if log_end(&segments).0 != m.next_offset => {
                // A clean close leaves the log ending where its marker says. It does not: the
                // files changed after that close (restored, copied, damaged), so nothing the
                // marker vouches for is trusted and the partition recovers as after a crash.
                // (A trusted walk that finds a damaged header reports it instead, with its
                // file and position: that is durable data, which recovery must not cut.)
                tracing::warn!(partition = %tp, marker = m.next_offset, found = log_end(&segments).0, "clean-shutdown marker disagrees with the log: recovering as after a crash");
                close_all(segments).await?;
                open_segments(&storage, &tp, &dir, &config, &limits, None).await?
            }
            (opened, _) => opened?,
        };
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
        let spares = open_spares(&storage, &dir, limits.segment_spares_max).await?;
        let log_start = Offset(*segments.keys().next().unwrap_or(&0));
        let end = log_end(&segments);
        let st = State {
            next_offset: end,
            written: end,
            synced: end,
            sync_target: end,
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
            unfinished: RefCell::new(None),
            finish_lock: futures::lock::Mutex::new(()),
            housekeeping: Event::new(),
            spares: RefCell::new(spares),
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

    /// The offset below which every batch is synced: what a power loss cannot take back.
    pub fn synced_end(&self) -> Offset {
        self.st.borrow().synced
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
        self.append_notify(records, None).await
    }

    /// [`Partition::append`], telling `enqueued` once the batches have their offsets and
    /// their place in the write queue (before they are durable). An append started after
    /// that signal is ordered after this one; a failure before it drops the sender.
    pub async fn append_notify(
        &self,
        records: &Bytes,
        enqueued: Option<futures::channel::oneshot::Sender<()>>,
    ) -> Result<AppendOutcome> {
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
        if let Some(enqueued) = enqueued {
            let _ = enqueued.send(());
        }
        let generation = self.st.borrow().generation;
        self.wait_durable(last.plus(1), generation).await?;
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
            // The offset is assigned here; the bytes keep the producer's baseOffset until the
            // write copies them into its buffer and patches it there (`Segment::append`).
            info.base_offset = st.next_offset.0;
            st.next_offset = Offset(info.last_offset() + 1);
            st.producers.record(
                &info,
                self.limits.producers_max,
                self.limits.producer_batches_max,
            );
            st.pending_bytes += bytes.len();
            st.pending.push((bytes, info));
        }
        let last = st.next_offset.plus(-1);
        debug_assert!(
            st.log_start <= st.synced && st.synced <= st.written && st.written <= st.next_offset
        );
        Ok((base, last, false))
    }

    /// Waits until offsets below `target` are durable per the policy, flushing when no one is.
    async fn wait_durable(&self, target: Offset, generation: u64) -> Result<()> {
        loop {
            let listener = {
                let st = self.st.borrow();
                if let Some(reason) = &st.error {
                    return Err(EngineError::ReadOnly {
                        tp: self.tp.clone(),
                        reason: reason.clone(),
                    });
                }
                if st.generation != generation {
                    self.check_not_dropped(&st, target, generation)?;
                }
                let done = match self.limits.fsync {
                    FsyncPolicy::Always => st.synced,
                    _ => st.written,
                };
                if done >= target {
                    return Ok(());
                }
                // Wait while a write runs (its flusher syncs after it, or we flush next) or
                // while an fdatasync that covers us runs; otherwise flush.
                let covered = self.limits.fsync == FsyncPolicy::Always && st.sync_target >= target;
                if st.flushing || covered {
                    Some(self.event.listen())
                } else {
                    None
                }
            };
            match listener {
                Some(l) => l.await,
                None => {
                    // Claim the flush, then let the appenders woken by the previous flush
                    // queue their batches first: without this the task that ran the last
                    // flush, which returns first, would start the next one with only its own
                    // next batch, and every other write would carry a single batch.
                    let guard = FlushClaim::new(self);
                    yield_once().await;
                    self.flush(guard).await;
                }
            }
        }
    }

    /// Writes every pending batch, then (fsync=always) syncs. One write runs at a time: the
    /// caller holds the claim, and gives it up as soon as its write is done, so that the next
    /// flusher's write overlaps this flusher's fdatasync (pipelined group commit: a cycle costs
    /// the longer of the two, not their sum). An fdatasync covers every write completed before
    /// it starts, so overlapping ones finishing out of order only move `synced` forward.
    ///
    /// Cancel-safe: batches leave the queue only once written (a flush dropped halfway leaves
    /// them for the next flusher, which skips what already reached the segment), dropping the
    /// claim lets another waiter flush, and a dropped fdatasync gives its target back.
    async fn flush(&self, claim: FlushClaim<'_, S>) {
        let batches: Vec<(Bytes, BatchInfo)> = {
            let st = self.st.borrow();
            assert!(st.flushing, "the flusher holds the claim");
            let take = if self.limits.group_commit {
                st.pending.len()
            } else {
                st.pending.len().min(1)
            };
            st.pending[..take].to_vec()
        };
        let result = match self.write(&batches).await {
            Err(e) if e.is_out_of_space() => {
                // Gives back every unwritten batch and empties the queue (these included).
                self.drop_unwritten(&e);
                None
            }
            other => Some(other),
        };
        let sync_job = {
            let mut st = self.st.borrow_mut();
            if result.is_some() {
                let taken: usize = batches.iter().map(|(b, _)| b.len()).sum();
                st.pending.drain(..batches.len());
                st.pending_bytes -= taken;
            }
            match result {
                Some(Err(e)) => {
                    tracing::error!(partition = %self.tp, error = %e, "write failed: partition is now read-only");
                    st.error = Some(e.to_string());
                    None
                }
                // What was written before a disk-full error is synced like any write.
                None | Some(Ok(()))
                    if self.limits.fsync == FsyncPolicy::Always && st.written > st.sync_target =>
                {
                    st.sync_target = st.written;
                    Some((self.active(), st.written))
                }
                None | Some(Ok(())) => None,
            }
        };
        drop(claim);
        if let Some((seg, target)) = sync_job {
            let mut pending_sync = SyncInFlight {
                partition: self,
                target,
                done: false,
            };
            let result = seg.sync().await;
            pending_sync.done = true;
            let mut st = self.st.borrow_mut();
            match result {
                Ok(()) => st.synced = st.synced.max(target),
                Err(e) => {
                    tracing::error!(partition = %self.tp, error = %e, "fdatasync failed: partition is now read-only");
                    st.error = Some(e.to_string());
                }
            }
            debug_assert!(st.synced <= st.sync_target && st.sync_target <= st.written);
        }
    }

    /// Out of space: gives back the offsets of every batch not yet written (this flush's
    /// rest and everything queued since), forgets them in the producer state, and lets their
    /// appends fail. What was written stays; the flusher still syncs it.
    fn drop_unwritten(&self, e: &EngineError) {
        let mut st = self.st.borrow_mut();
        let kept = st.written;
        let dropped = st.next_offset.0 - kept.0;
        st.pending.clear();
        st.pending_bytes = 0;
        st.next_offset = kept;
        st.producers.forget_from(kept.0);
        let generation = st.generation;
        st.drops.push_back((generation, kept));
        if st.drops.len() > DROPS_KEPT {
            st.drops.pop_front();
        }
        st.generation += 1;
        st.drop_reason = e.to_string();
        tracing::warn!(partition = %self.tp, error = %e, dropped_records = dropped, "out of space: appends failed before any byte was written; the partition stays writable");
    }

    /// For an append queued in `generation` that is still waiting after a drop: an error if
    /// its batches were among the dropped ones (or the drop is too old to tell).
    fn check_not_dropped(&self, st: &State, target: Offset, generation: u64) -> Result<()> {
        let kept = st
            .drops
            .iter()
            .find(|(g, _)| *g >= generation)
            .map(|(_, k)| *k);
        if kept.is_some_and(|k| target <= k) {
            return Ok(());
        }
        Err(EngineError::io(
            "append",
            &self.dir,
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("not written, retry when space returns: {}", st.drop_reason),
            ),
        ))
    }

    /// fdatasync for everything written so far: the active segment, and first the segment a
    /// roll left, if it is still waiting to be finished (it may hold unsynced writes).
    async fn sync_active(&self) -> Result<()> {
        self.finish_rolled().await?;
        let (seg, target) = {
            let mut st = self.st.borrow_mut();
            st.sync_target = st.sync_target.max(st.written);
            (self.active(), st.written)
        };
        seg.sync().await?;
        let mut st = self.st.borrow_mut();
        st.synced = st.synced.max(target);
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
        // A flush cancelled after its write landed leaves those batches queued: skip them.
        let already = self.active().st.borrow().next_offset.0;
        let mut i = batches.partition_point(|(_, info)| info.base_offset < already);
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
            let written = seg
                .append(
                    &batches[i..j],
                    config.index_interval_bytes,
                    now,
                    // At most one segment ahead: a 32 MiB step on 1 MiB segments would keep 32x
                    // the data on disk in preallocated active segments.
                    self.limits.preallocate_bytes.min(config.segment_bytes_max),
                )
                .await?;
            let mut cache = self.cache.borrow_mut();
            for ((_, info), bytes) in batches[i..j].iter().zip(written) {
                cache.insert(
                    self.uid,
                    info.base_offset,
                    CachedBatch {
                        bytes,
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

    /// Starts a new active segment at `base`. The old one is finished (cut to its exact
    /// length, synced, its indexes written) later, off the append path, by
    /// [`Partition::finish_rolled`]; with fsync=always its data is synced here, since the
    /// flush that rolls may acknowledge batches written to it.
    async fn roll(&self, base: Offset) -> Result<()> {
        let started = std::time::Instant::now();
        // A previous roll's segment not finished yet (rolls in quick succession, or nothing
        // drives the background work): finish it now, so at most one waits.
        self.finish_rolled().await?;
        let old = self.active();
        if self.limits.fsync == FsyncPolicy::Always {
            old.sync().await?;
            let mut st = self.st.borrow_mut();
            st.synced = st.written;
            st.sync_target = st.sync_target.max(st.written);
        }
        let producers = serde_json::to_vec(&self.st.borrow().producers)
            .map_err(|e| EngineError::io("encode", &self.dir, std::io::Error::other(e)))?;
        let snap = self.dir.join(PRODUCERS_SNAPSHOT);
        self.storage
            .write_atomic(&snap, &producers)
            .await
            .map_err(|e| EngineError::io("write", &snap, e))?;
        let seg = self.open_next_segment(base).await?;
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|e| EngineError::io("fsync dir", &self.dir, e))?;
        tracing::debug!(
            partition = %self.tp,
            base = base.0,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "rolled segment"
        );
        self.segments.borrow_mut().insert(base.0, Rc::new(seg));
        *self.unfinished.borrow_mut() = Some(old);
        self.housekeeping.notify(usize::MAX);
        Ok(())
    }

    /// The new active segment at `base`: a spare renamed to its name when there is one (its
    /// old batches past the new end are never read: reads stop at the written end, and
    /// recovery at the first batch whose offset does not follow), else a new file. The caller
    /// syncs the directory before anything written to it is acknowledged.
    async fn open_next_segment(&self, base: Offset) -> Result<Segment<S::File>> {
        let spare = self.spares.borrow_mut().pop();
        if let Some(spare) = spare {
            let [log_path, ..] = crate::segment::paths(&self.dir, base);
            self.storage
                .rename(&spare, &log_path)
                .await
                .map_err(|e| EngineError::io("rename", &spare, e))?;
            let seg = Segment::open(&self.storage, &self.dir, base, false).await?;
            seg.adopt_allocated().await?;
            tracing::debug!(partition = %self.tp, base = base.0, spare = %spare.display(), "recycled a spare as the next segment");
            return Ok(seg);
        }
        Segment::open(&self.storage, &self.dir, base, true).await
    }

    /// Whether `seg` is the rolled segment waiting to be finished: it is not deleted yet (the
    /// background task finishes it first, and the next check deletes it).
    fn is_unfinished(&self, seg: &Segment<S::File>) -> bool {
        self.unfinished
            .borrow()
            .as_ref()
            .is_some_and(|u| u.base == seg.base)
    }

    /// Whether a rolled segment waits to be finished.
    pub fn has_unfinished(&self) -> bool {
        self.unfinished.borrow().is_some()
    }

    /// A listener woken when a rolled segment waits to be finished.
    pub fn listen_housekeeping(&self) -> EventListener {
        self.housekeeping.listen()
    }

    /// Whether the partition was closed.
    pub fn is_closed(&self) -> bool {
        self.st.borrow().closed
    }

    /// Finishes the segment the last roll left (exact length, fdatasync, every index entry
    /// written and synced), if any. The shard runs this in a background task after each roll;
    /// a roll and `close` run it too. A failure makes the partition read-only.
    pub async fn finish_rolled(&self) -> Result<()> {
        let _serial = self.finish_lock.lock().await;
        let Some(seg) = self.unfinished.borrow().clone() else {
            return Ok(());
        };
        if let Err(e) = seg.finish().await {
            tracing::error!(partition = %self.tp, segment = seg.base.0, error = %e, "finishing a rolled segment failed: partition is now read-only");
            self.st.borrow_mut().error = Some(e.to_string());
            self.event.notify(usize::MAX);
            return Err(e);
        }
        self.unfinished.borrow_mut().take();
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
                if self.is_unfinished(oldest) {
                    // Finished in the background first; the next check deletes it.
                    break;
                }
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
            self.delete_segment(victim).await?;
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
                    (Some((_, oldest)), Some((next_base, _)))
                        if *next_base <= offset.0 && !self.is_unfinished(oldest) =>
                    {
                        Rc::clone(oldest)
                    }
                    _ => break,
                }
            };
            self.delete_segment(victim).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Deletes a closed segment. Its files are closed first, while their names still exist,
    /// so that closing is cheap; the unlink that then frees a large file's extents (100 to
    /// 560 ms for a 256 MiB preallocated segment, measured by the storage report) and the
    /// directory sync run off the shard's thread (`Storage::remove`, `Storage::sync_dir`).
    async fn delete_segment(&self, seg: Rc<Segment<S::File>>) -> Result<()> {
        let next_base = {
            let mut segs = self.segments.borrow_mut();
            segs.remove(&seg.base.0);
            *segs.keys().next().expect("the active segment stays")
        };
        {
            let mut st = self.st.borrow_mut();
            st.log_start = Offset(next_base);
            // Offsets below the log start no longer exist, so none waits for a sync: with
            // fsync=never (or a slow interval) `synced` would otherwise trail the log start.
            st.synced = st.synced.max(st.log_start);
            st.sync_target = st.sync_target.max(st.log_start);
        }
        self.cache.borrow_mut().remove_below(self.uid, next_base);
        let base = seg.base;
        // A reader still holding the segment keeps its files open until it is done; such a
        // file is unlinked, never kept as a spare, since the next roll would write over what
        // the reader is reading.
        let sole = match Rc::try_unwrap(seg) {
            Ok(seg) => {
                if let Err(e) = seg.close().await {
                    tracing::warn!(partition = %self.tp, error = %e, "closing a deleted segment");
                }
                true
            }
            Err(_) => false,
        };
        let [log_path, index_path, time_path] = crate::segment::paths(&self.dir, base);
        let keep = sole && self.spares.borrow().len() < self.limits.segment_spares_max;
        if keep {
            // Kept as a spare: the rename takes the segment away as the unlink would (its
            // name no longer ends in `.log`), and the blocks stay allocated for the next roll.
            let spare = spare_path(&self.dir, base);
            self.storage
                .rename(&log_path, &spare)
                .await
                .map_err(|e| EngineError::io("rename", &log_path, e))?;
            self.spares.borrow_mut().push(spare);
        } else {
            self.storage
                .remove(&log_path)
                .await
                .map_err(|e| EngineError::io("remove", &log_path, e))?;
        }
        for path in [index_path, time_path] {
            self.storage
                .remove(&path)
                .await
                .map_err(|e| EngineError::io("remove", &path, e))?;
        }
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|e| EngineError::io("fsync dir", &self.dir, e))?;
        tracing::info!(partition = %self.tp, base = base.0, log_start = next_base, kept_as_spare = keep, "retention deleted segment");
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
                    let generation = self.st.borrow().generation;
                    let _ = self.wait_durable(next, generation).await;
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
        self.finish_rolled().await?;
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
        let segs = std::mem::take(&mut *self.segments.borrow_mut());
        close_all(segs).await?;
        self.cache.borrow_mut().remove_partition(self.uid);
        Ok(())
    }

    /// Drops the partition's cached batches (it is being deleted).
    pub fn forget_cache(&self) {
        self.cache.borrow_mut().remove_partition(self.uid);
    }
}

/// The right to flush, held by one task at a time. Dropping it (at the end of a flush, or
/// when the flushing task is cancelled) frees the flush and wakes every waiter.
struct FlushClaim<'a, S: Storage> {
    partition: &'a Partition<S>,
}

impl<'a, S: Storage> FlushClaim<'a, S> {
    fn new(partition: &'a Partition<S>) -> Self {
        let mut st = partition.st.borrow_mut();
        assert!(!st.flushing, "one flusher at a time");
        st.flushing = true;
        drop(st);
        FlushClaim { partition }
    }
}

impl<S: Storage> Drop for FlushClaim<'_, S> {
    fn drop(&mut self) {
        self.partition.st.borrow_mut().flushing = false;
        self.partition.event.notify(usize::MAX);
    }
}

/// An fdatasync in flight for offsets below `target`. Dropped before it is done (the task was
/// cancelled), it gives the target back, so that a waiter starts another, and wakes them.
struct SyncInFlight<'a, S: Storage> {
    partition: &'a Partition<S>,
    target: Offset,
    done: bool,
}

impl<S: Storage> Drop for SyncInFlight<'_, S> {
    fn drop(&mut self) {
        {
            let mut st = self.partition.st.borrow_mut();
            if !self.done && st.sync_target == self.target {
                st.sync_target = st.synced;
            }
        }
        self.partition.event.notify(usize::MAX);
    }
}

/// Returns `Pending` once, so that every other ready task runs before the caller goes on.
pub async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
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
