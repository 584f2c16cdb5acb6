//! The per-shard cache of recent batches, as `Bytes`, so that consumers reading near the tail
//! are served from memory without a disk read or a copy. Bounded by `batch_cache_bytes_max`:
//! when full, the oldest inserted batches are evicted first (a FIFO suits a log, where readers
//! trail the writer); an evicted batch is read from disk instead.
//!
//! A cached batch is usually a slice of the buffer the log was written from
//! (`Segment::append`), which it keeps alive whole: the few bytes of the previous tail block
//! before the batches and the zero padding after them. The cache charges batch bytes only, so
//! a write buffer is shared this way only when that overhead is at most 1/16 of its batches
//! (`segment::SHARED_OVERHEAD_DIVISOR`), else its batches are copied out; eviction is in
//! insertion order, which keeps one write's batches together. So the memory the cache keeps
//! alive stays within 17/16 of `batch_cache_bytes_max`, plus one write buffer
//! (`write_bytes_max`) that eviction has only partly released.
//!
//! The eviction queue `order` names batches by (partition, base offset, insertion number).
//! Retention and topic deletion remove batches from the maps without searching the queue, so
//! it may hold stale names: eviction skips a name whose batch is gone or was replaced, and the
//! queue is compacted whenever stale names outnumber live batches. That keeps the queue within
//! `2 x live + ORDER_SLACK` names at all times: its memory is bounded by the cache's, not by
//! the number of batches ever appended. (The first soak run found the queue growing by 24 bytes
//! per append when retention, not eviction, was what removed batches.)

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

/// Stale names the eviction queue may hold beyond twice the live batches before compaction.
const ORDER_SLACK: usize = 64;

/// A cached batch: its bytes and the offset of its last record.
#[derive(Clone, Debug)]
pub struct CachedBatch {
    /// The batch, offsets assigned.
    pub bytes: Bytes,
    /// Offset of its last record.
    pub last_offset: i64,
}

/// The cache of one shard. Partitions are told apart by a shard-unique id.
#[derive(Debug)]
pub struct BatchCache {
    /// Per partition: base offset -> (insertion number, batch).
    partitions: HashMap<u64, BTreeMap<i64, (u64, CachedBatch)>>,
    /// Eviction order, oldest first: (partition, base offset, insertion number).
    order: VecDeque<(u64, i64, u64)>,
    /// Batches in the maps.
    live: usize,
    next_seq: u64,
    bytes: usize,
    bytes_max: usize,
}

impl BatchCache {
    /// An empty cache holding at most `bytes_max` bytes of batches.
    #[must_use]
    pub fn new(bytes_max: usize) -> Self {
        BatchCache {
            partitions: HashMap::new(),
            order: VecDeque::new(),
            live: 0,
            next_seq: 0,
            bytes: 0,
            bytes_max,
        }
    }

    /// Bytes held.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds a batch at `base_offset`, evicting the oldest while over the limit.
    pub fn insert(&mut self, partition: u64, base_offset: i64, batch: CachedBatch) {
        let len = batch.bytes.len();
        if len > self.bytes_max {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        match self
            .partitions
            .entry(partition)
            .or_default()
            .insert(base_offset, (seq, batch))
        {
            Some((_, old)) => self.bytes -= old.bytes.len(),
            None => self.live += 1,
        }
        self.bytes += len;
        self.order.push_back((partition, base_offset, seq));
        while self.bytes > self.bytes_max {
            let Some((p, base, seq)) = self.order.pop_front() else {
                break;
            };
            let Some(map) = self.partitions.get_mut(&p) else {
                continue;
            };
            // A stale name (the batch was removed, or replaced by a later insert) is skipped.
            if map.get(&base).is_some_and(|(s, _)| *s == seq) {
                if let Some((_, b)) = map.remove(&base) {
                    self.bytes -= b.bytes.len();
                    self.live -= 1;
                }
            }
        }
        self.compact_if_stale();
        debug_assert!(self.bytes <= self.bytes_max);
    }

    /// Drops the queue's stale names once they outnumber the live batches.
    fn compact_if_stale(&mut self) {
        if self.order.len() > 2 * self.live + ORDER_SLACK {
            let partitions = &self.partitions;
            self.order.retain(|(p, base, seq)| {
                partitions
                    .get(p)
                    .and_then(|m| m.get(base))
                    .is_some_and(|(s, _)| s == seq)
            });
            debug_assert_eq!(self.order.len(), self.live, "one name per live batch");
        }
        debug_assert!(self.order.len() <= 2 * self.live + ORDER_SLACK + 1);
    }

    /// Names in the eviction queue (for tests of its bound).
    #[must_use]
    pub fn queued_names(&self) -> usize {
        self.order.len()
    }

    /// Batches holding offsets from `offset` on, contiguous, below `hw`, up to `max_bytes`
    /// (the first always whole). Empty when the batch holding `offset` is not cached.
    #[must_use]
    pub fn read(&self, partition: u64, offset: i64, max_bytes: usize, hw: i64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let Some(map) = self.partitions.get(&partition) else {
            return out;
        };
        let Some((&start, (_, first))) = map.range(..=offset).next_back() else {
            return out;
        };
        if first.last_offset < offset {
            return out;
        }
        let mut expect = start;
        let mut total = 0usize;
        for (&base, (_, b)) in map.range(start..) {
            if base != expect
                || base >= hw
                || (!out.is_empty() && total + b.bytes.len() > max_bytes)
            {
                break;
            }
            total += b.bytes.len();
            out.push(b.bytes.clone());
            expect = b.last_offset + 1;
            if total >= max_bytes {
                break;
            }
        }
        out
    }

    /// Drops every batch of a partition (deleted, or its log was cut).
    pub fn remove_partition(&mut self, partition: u64) {
        if let Some(map) = self.partitions.remove(&partition) {
            self.bytes -= map.values().map(|(_, b)| b.bytes.len()).sum::<usize>();
            self.live -= map.len();
        }
        self.compact_if_stale();
    }

    /// Drops a partition's batches that end below `offset` (retention moved the log start).
    pub fn remove_below(&mut self, partition: u64, offset: i64) {
        if let Some(map) = self.partitions.get_mut(&partition) {
            let keep = map.split_off(&offset);
            let gone = std::mem::replace(map, keep);
            for (base, (seq, b)) in gone {
                if b.last_offset >= offset {
                    map.insert(base, (seq, b));
                } else {
                    self.bytes -= b.bytes.len();
                    self.live -= 1;
                }
            }
        }
        self.compact_if_stale();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cb(n: usize, last: i64) -> CachedBatch {
        CachedBatch {
            bytes: Bytes::from(vec![0u8; n]),
            last_offset: last,
        }
    }

    #[test]
    fn reads_contiguous_batches_from_inside_one() {
        let mut c = BatchCache::new(1 << 20);
        c.insert(1, 0, cb(100, 9));
        c.insert(1, 10, cb(100, 19));
        c.insert(1, 20, cb(100, 29));
        assert_eq!(c.read(1, 15, 1 << 20, 30).len(), 2);
        assert_eq!(c.read(1, 15, 150, 30).len(), 1);
        assert_eq!(c.read(1, 0, 1 << 20, 20).len(), 2);
        assert!(c.read(1, 30, 1 << 20, 40).is_empty());
        assert!(c.read(2, 0, 1 << 20, 40).is_empty());
    }

    #[test]
    fn evicts_oldest_past_the_bound() {
        let mut c = BatchCache::new(250);
        c.insert(1, 0, cb(100, 0));
        c.insert(1, 1, cb(100, 1));
        c.insert(1, 2, cb(100, 2));
        assert!(c.bytes() <= 250);
        assert!(c.read(1, 0, 1000, 3).is_empty());
        assert_eq!(c.read(1, 1, 1000, 3).len(), 2);
    }

    #[test]
    fn remove_below_and_partition() {
        let mut c = BatchCache::new(1000);
        c.insert(1, 0, cb(100, 4));
        c.insert(1, 5, cb(100, 9));
        c.remove_below(1, 5);
        assert_eq!(c.bytes(), 100);
        c.remove_partition(1);
        assert_eq!(c.bytes(), 0);
    }

    /// Retention removing batches forever (the cache never full, so never evicting) keeps
    /// the eviction queue bounded by the live batches, not by every batch ever inserted.
    #[test]
    fn retention_keeps_the_eviction_queue_bounded() {
        let mut c = BatchCache::new(1 << 30);
        for i in 0..100_000i64 {
            c.insert(1, i, cb(10, i));
            c.insert(2, i, cb(10, i));
            if i % 100 == 99 {
                c.remove_below(1, i - 10);
                c.remove_below(2, i - 10);
            }
            // At most 2 x 110 batches are live between two retention passes.
            assert!(
                c.queued_names() <= 2 * 220 + ORDER_SLACK + 1,
                "{}",
                c.queued_names()
            );
        }
        // Replacing a batch leaves one live name; eviction skips the stale one.
        let mut c = BatchCache::new(250);
        c.insert(1, 0, cb(100, 0));
        c.insert(1, 0, cb(100, 0));
        c.insert(1, 1, cb(100, 1));
        c.insert(1, 2, cb(100, 2));
        assert_eq!(c.bytes(), 200);
        assert_eq!(c.read(1, 1, 1000, 3).len(), 2);
    }
}
