//! # keel-engine
//!
//! The storage engine of keel, a Kafka-compatible broker: a thread-per-core partition log on
//! io_uring that never loses an acknowledged write.
//!
//! ## The tour
//! - [`shard`]: one executor per core (glommio, or the poll runtime: [`rt`] is the seam); [`shard::run`] starts them and hands each a
//!   [`Shard`], the handle through which any shard appends to or reads from any partition
//!   (requests for partitions owned elsewhere travel over bounded channels; batches as `Bytes`).
//! - [`catalog`]: topics, partitions and their owner shards, persisted crash-safely.
//! - [`partition`]: one partition's segments, the append path with group commit, reads,
//!   retention. Start reading here.
//! - [`segment`]: a log file and its indexes; O_DIRECT block writes with the tail block kept
//!   in memory. [`index`]: the sparse offset and time indexes. [`recovery`]: start-up checks.
//! - [`batch`]: RecordBatch v2 validation and offset assignment. [`batch_cache`]: recent
//!   batches per shard. [`producers`]: idempotent producer sequence state.
//! - [`storage`]: the file seam and its backends (`glommio`, `uring`, `pwrite`, chosen at
//!   start as [`IoBackend`]); [`sim`]: the fault-injecting storage the tests use.
//!
//! Data flow of an append: `Shard::append` → owner shard → `Partition::append` (validate,
//! assign offsets, queue) → flusher writes the queue in one O_DIRECT write → fdatasync shared
//! by every waiter (fsync=always) → high watermark moves → waiting readers wake.
//!
//! The byte-level format of every file is in `engine/FORMAT.md`.

pub mod batch;
pub mod batch_cache;
pub mod catalog;
pub mod config;
pub mod error;
pub mod index;
pub mod partition;
pub mod producers;
pub mod recovery;
pub mod rt;
pub mod segment;
pub mod shard;
pub mod sim;
pub mod storage;
pub mod types;

pub use config::{
    BackendOptions, EngineConfig, FsyncPolicy, IoBackend, TopicConfig, TopicOverrides,
};
pub use error::{BatchError, EngineError, Result};
pub use partition::{AppendOutcome, PartitionOffsets, ReadOutcome};
pub use shard::{run, run_with, OffsetSpec, Shard};
pub use types::{FilePos, Offset, TimestampMs, TopicPartition};
