//! Engine settings. Every queue, cache and buffer has a `_max` here, with a default that fits
//! the CI machine (2 cores, an 8 MiB locked-memory limit) and a defined behaviour past it.

use std::{fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Serialize};

pub use crate::storage::{BackendOptions, IoBackend};

/// When appended data is made durable with `fdatasync`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsyncPolicy {
    /// An append completes only after an fdatasync that covers it. Appends that arrive while
    /// one fdatasync runs share the next one (group commit).
    Always,
    /// A background task syncs every partition with unsynced data this often; an append
    /// completes once written. A crash may lose up to this window of acknowledged writes.
    IntervalMs(u64),
    /// Never sync explicitly; the kernel writes back when it likes.
    Never,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => write!(f, "always"),
            FsyncPolicy::IntervalMs(ms) => write!(f, "interval_ms:{ms}"),
            FsyncPolicy::Never => write!(f, "never"),
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => {
                let ms = other
                    .strip_prefix("interval_ms:")
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        format!("fsync must be always, never or interval_ms:<n> with n > 0, not {other:?}")
                    })?;
                Ok(FsyncPolicy::IntervalMs(ms))
            }
        }
    }
}

/// Per-topic log settings. Defaults come from [`EngineConfig::topic_defaults`]; a topic may
/// override any of them (see [`TopicOverrides`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// A segment rolls when the next batch would take it past this size.
    pub segment_bytes_max: u64,
    /// A segment rolls when its first batch is older than this (by append time).
    pub segment_ms: u64,
    /// Closed segments whose newest batch is older than this are deleted. -1: keep forever.
    pub retention_ms: i64,
    /// Closed segments are deleted, oldest first, while the partition is larger than this.
    /// -1: no size limit.
    pub retention_bytes: i64,
    /// One sparse index entry per this many bytes of log.
    pub index_interval_bytes: u32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            segment_bytes_max: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
        }
    }
}

/// A topic's own settings, each `None` where the broker default applies. Kept in the catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicOverrides {
    /// `segment.bytes`.
    pub segment_bytes_max: Option<u64>,
    /// `segment.ms`.
    pub segment_ms: Option<u64>,
    /// `retention.ms`.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`.
    pub retention_bytes: Option<i64>,
    /// `index.interval.bytes`.
    pub index_interval_bytes: Option<u32>,
}

impl TopicOverrides {
    /// The effective settings: each override where set, else the default.
    #[must_use]
    pub fn apply(&self, defaults: &TopicConfig) -> TopicConfig {
        TopicConfig {
            segment_bytes_max: self.segment_bytes_max.unwrap_or(defaults.segment_bytes_max),
            segment_ms: self.segment_ms.unwrap_or(defaults.segment_ms),
            retention_ms: self.retention_ms.unwrap_or(defaults.retention_ms),
            retention_bytes: self.retention_bytes.unwrap_or(defaults.retention_bytes),
            index_interval_bytes: self
                .index_interval_bytes
                .unwrap_or(defaults.index_interval_bytes),
        }
    }
}

/// The smallest segment size accepted, so that a segment always holds a page and a header.
pub const SEGMENT_BYTES_MIN: u64 = 14 * 1024;

/// Everything the engine needs to start.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where the catalog and partition directories live.
    pub data_dir: PathBuf,
    /// Number of shards (one pinned executor thread each).
    pub shards: usize,
    /// Durability of appends.
    pub fsync: FsyncPolicy,
    /// Topic settings used where a topic sets none.
    pub topic_defaults: TopicConfig,
    /// Bytes of recent batches each shard keeps in memory for reads. Past it the oldest
    /// batches are evicted (reads then go to disk). Cached batches share their write buffers,
    /// so the memory kept is at most 17/16 of this plus one `write_bytes_max` (see
    /// `batch_cache`).
    pub batch_cache_bytes_max: usize,
    /// Bytes of appended data a partition may hold queued before they are written. Past it,
    /// appends wait (back-pressure) rather than grow memory.
    pub append_queue_bytes_max: usize,
    /// Largest single write handed to the disk at once; larger flushes are split.
    pub write_bytes_max: usize,
    /// Largest read answer, in bytes, one read request may return (clients ask for less).
    pub read_bytes_max: usize,
    /// Largest record batch accepted (Kafka's `message.max.bytes`).
    pub batch_bytes_max: usize,
    /// How many topics the catalog may hold.
    pub topics_max: usize,
    /// How many partitions one topic may have.
    pub partitions_per_topic_max: usize,
    /// How many partitions the whole broker may hold.
    pub partitions_max: usize,
    /// Cross-shard request queue depth per shard; a sender past it waits.
    pub shard_queue_max: usize,
    /// How often each shard checks retention and segment age.
    pub retention_check_ms: u64,
    /// Memory glommio registers for io_uring per executor. Each executor's three rings charge
    /// it against RLIMIT_MEMLOCK (8 MiB without CAP_IPC_LOCK), so 1 MiB per executor keeps
    /// two executors well inside it.
    pub io_memory_bytes: usize,
    /// Depth of each io_uring ring.
    pub ring_depth: usize,
    /// Bytes by which segment files are preallocated ahead of the write position.
    pub preallocate_bytes: u64,
    /// Log files of retention-deleted segments each partition keeps as spares, to become its
    /// next segments instead of new files (0: delete them, Kafka's behaviour). A recycled
    /// file's blocks are already allocated and written, so appends into it overwrite instead
    /// of allocating (on ext4: no extent conversion at fdatasync; on a `discard` mount, no
    /// discard at deletion). Each spare holds up to a segment's bytes of disk.
    pub segment_spares_max: usize,
    /// How many recent batches per producer are remembered for duplicate detection (Kafka: 5).
    pub producer_batches_max: usize,
    /// How many producer ids one partition remembers; the least recently used is dropped.
    pub producers_per_partition_max: usize,
    /// Pin each executor to one CPU (production); tests may turn it off.
    pub pin_cores: bool,
    /// Group commit: a flush writes and syncs every queued append at once. Off, each append
    /// gets its own write and fdatasync (for measuring what group commit buys).
    pub group_commit: bool,
    /// The file I/O path (and with it the runtime: see [`IoBackend::runtime`]).
    pub io_backend: IoBackend,
    /// The backends' own settings.
    pub backend_options: BackendOptions,
}

impl EngineConfig {
    /// Defaults for a data dir.
    #[must_use]
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            shards: available_cores(),
            fsync: FsyncPolicy::Always,
            topic_defaults: TopicConfig::default(),
            batch_cache_bytes_max: 256 << 20,
            append_queue_bytes_max: 16 << 20,
            write_bytes_max: 4 << 20,
            read_bytes_max: 64 << 20,
            batch_bytes_max: 8 << 20,
            topics_max: 10_000,
            partitions_per_topic_max: 10_000,
            partitions_max: 100_000,
            shard_queue_max: 1024,
            retention_check_ms: 5_000,
            io_memory_bytes: 1 << 20,
            ring_depth: 128,
            preallocate_bytes: 32 << 20,
            segment_spares_max: 0,
            producer_batches_max: 5,
            producers_per_partition_max: 10_000,
            pin_cores: true,
            group_commit: true,
            io_backend: IoBackend::default(),
            backend_options: BackendOptions::default(),
        }
    }
}

/// The number of CPUs this process may run on (its affinity mask), at least 1.
#[must_use]
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_and_prints() {
        for s in ["always", "never", "interval_ms:50"] {
            let p: FsyncPolicy = s.parse().expect("valid policy");
            assert_eq!(p.to_string(), s);
        }
        assert!("interval_ms:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn overrides_apply_over_defaults() {
        let defaults = TopicConfig::default();
        let o = TopicOverrides {
            retention_ms: Some(1000),
            ..TopicOverrides::default()
        };
        let c = o.apply(&defaults);
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.segment_bytes_max, defaults.segment_bytes_max);
    }
}
