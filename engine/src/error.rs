//! The engine's typed errors. Each keeps its cause (the `io::Error`, the file, the offset);
//! the server maps them to Kafka error codes in one place.

use std::{io, path::PathBuf};

use crate::types::{Offset, TopicPartition};

/// Why a record batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than a batch header, or a length field that points past the data.
    #[error("batch truncated: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the header says the batch needs.
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// A length field that cannot be right (negative, or smaller than a header).
    #[error("batch length {0} is invalid")]
    BadLength(i64),
    /// Magic byte 0 or 1 (the old message formats), or anything but 2.
    #[error("record batch magic {0} is not supported (only 2)")]
    UnsupportedMagic(i8),
    /// The CRC-32C stored in the batch does not match its bytes.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The record count disagrees with lastOffsetDelta.
    #[error("record count {count} does not match lastOffsetDelta {last_offset_delta}")]
    CountMismatch {
        /// The records count field.
        count: i32,
        /// The lastOffsetDelta field.
        last_offset_delta: i32,
    },
    /// A batch larger than `batch_bytes_max`.
    #[error("batch of {bytes} bytes is larger than batch_bytes_max {max}")]
    TooLarge {
        /// The batch size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A transactional or control batch; keel does not implement transactions yet.
    #[error("transactional and control batches are not supported")]
    Transactional,
}

/// Errors the engine returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The topic or partition does not exist.
    #[error("unknown topic or partition {0}")]
    UnknownTopicOrPartition(String),
    /// A topic of that name exists already.
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// A topic name Kafka would reject.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The name given.
        name: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A partition count that is not allowed (zero, fewer than now, past a `_max`).
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    /// A topic setting out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A `_max` on the catalog was reached.
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// The batch was refused.
    #[error("invalid record batch for {tp}: {source}")]
    InvalidBatch {
        /// Where it was sent.
        tp: TopicPartition,
        /// What was wrong.
        #[source]
        source: BatchError,
    },
    /// A read at an offset outside `[log_start, high_watermark]`.
    #[error("offset {requested} out of range [{log_start}, {high_watermark}] for {tp}")]
    OffsetOutOfRange {
        /// Where.
        tp: TopicPartition,
        /// The offset asked for.
        requested: Offset,
        /// The first offset still present.
        log_start: Offset,
        /// The next offset to be written.
        high_watermark: Offset,
    },
    /// An idempotent producer's sequence number skipped ahead.
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        /// The producer.
        producer_id: i64,
        /// The sequence the partition expected.
        expected: i32,
        /// The sequence sent.
        got: i32,
    },
    /// A batch from an older epoch of a producer id than one already seen.
    #[error("producer {producer_id} epoch {got} is older than {current}")]
    InvalidProducerEpoch {
        /// The producer.
        producer_id: i64,
        /// The epoch on record.
        current: i16,
        /// The epoch sent.
        got: i16,
    },
    /// A write or sync failed earlier; the partition refuses writes until restarted.
    #[error("partition {tp} is read-only after a storage error: {reason}")]
    ReadOnly {
        /// Where.
        tp: TopicPartition,
        /// The original failure.
        reason: String,
    },
    /// A storage operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Data at rest failed a check (a CRC, a length, an index entry).
    #[error("corrupt data in {path} at byte {pos}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where in it.
        pos: u64,
        /// What was wrong.
        reason: String,
    },
    /// A shard panicked or failed to start (usize::MAX: another shard did), so none serves.
    #[error("shard {0} failed; the engine stopped")]
    ShardFailed(usize),
    /// The engine is shutting down, or a shard went away.
    #[error("engine is shutting down")]
    ShuttingDown,
}

impl EngineError {
    /// Wraps an `io::Error` with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        EngineError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl EngineError {
    /// Whether this is a storage error of a disk out of space (ENOSPC, EDQUOT): the write or
    /// preallocation it came from changed nothing, so the caller may give up that write alone
    /// rather than the partition.
    #[must_use]
    pub fn is_out_of_space(&self) -> bool {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        let EngineError::Io { source, .. } = self else {
            return false;
        };
        matches!(source.raw_os_error(), Some(ENOSPC | EDQUOT))
            || matches!(
                source.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            )
    }
}

/// Shorthand for engine results.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
