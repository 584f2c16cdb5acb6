//! Errors of the broker, and the one place where engine errors become Kafka error codes.
//!
//! Two kinds of failure exist on a connection. A request the broker understands but cannot
//! satisfy gets a Kafka error code in its response ([`error_code`]). A request the broker cannot
//! understand at all (a bad frame, an unknown API, a body that does not decode) closes the
//! connection, as Kafka does: a [`ConnectionError`].

use kafka_protocol::error::ResponseError;
use keel_engine::{BatchError, EngineError};

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The socket failed.
    #[error("socket {op}: {source}")]
    Io {
        /// read or write.
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A frame length that is negative, too short for a header, or past `request_bytes_max`.
    #[error("frame of {length} bytes is outside [8, {max}]")]
    FrameLength {
        /// The length field.
        length: i64,
        /// request_bytes_max.
        max: usize,
    },
    /// The client closed the socket in the middle of a frame.
    #[error("connection closed after {have} of {need} bytes of a frame")]
    Truncated {
        /// Bytes received of the frame.
        have: usize,
        /// Bytes the frame announced.
        need: usize,
    },
    /// No whole request arrived for `connection_idle_ms_max` (Kafka's connections.max.idle.ms).
    #[error("no request for {ms} ms")]
    Idle {
        /// The limit.
        ms: u64,
    },
    /// The client did not read an answer within `connection_idle_ms_max`.
    #[error("the client did not read its answer within {ms} ms")]
    WriteStalled {
        /// The limit.
        ms: u64,
    },
    /// An API key this broker does not serve.
    #[error("unsupported API key {0}")]
    UnknownApi(i16),
    /// An API version this broker does not serve (other than ApiVersions, which gets an answer).
    #[error("unsupported version {version} of API {api}")]
    UnsupportedVersion {
        /// The API key.
        api: i16,
        /// The version asked for.
        version: i16,
    },
    /// The request header or body does not decode.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which part.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A response could not be encoded (a broker bug, logged loudly).
    #[error("encoding the response to API {api} v{version}: {reason}")]
    Encode {
        /// The API key.
        api: i16,
        /// The version.
        version: i16,
        /// The encoder's complaint.
        reason: String,
    },
    /// A produce with acks=0 failed: Kafka closes the connection so the client notices.
    #[error("produce with acks=0 failed: {0}")]
    UnackedProduceFailed(String),
}

/// The Kafka error code for an engine error. Every mapping of engine errors lives here.
#[must_use]
pub fn error_code(e: &EngineError) -> i16 {
    response_error(e).code()
}

/// The Kafka error for an engine error.
#[must_use]
pub fn response_error(e: &EngineError) -> ResponseError {
    match e {
        EngineError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        EngineError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        EngineError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        EngineError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        EngineError::InvalidConfig(_) => ResponseError::InvalidConfig,
        EngineError::LimitReached(_) => ResponseError::PolicyViolation,
        EngineError::InvalidBatch { source, .. } => batch_error(source),
        EngineError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        EngineError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        EngineError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        EngineError::ReadOnly { .. } | EngineError::Io { .. } | EngineError::Corrupt { .. } => {
            ResponseError::KafkaStorageError
        }
        // A shard going away is a broker on its way down: a retriable error sends the client
        // to refresh its metadata and try again, by which time the broker is back.
        EngineError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        _ => ResponseError::UnknownServerError,
    }
}

fn batch_error(e: &BatchError) -> ResponseError {
    match e {
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
        // Kafka answers a transactional batch without a transaction coordinator with
        // INVALID_RECORD-like refusals; keel has no transactions, so the batch is invalid here.
        BatchError::Transactional => ResponseError::InvalidRecord,
        _ => ResponseError::CorruptMessage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::{Offset, TopicPartition};

    #[test]
    fn codes_match_kafka() {
        let tp = TopicPartition::new("t", 0);
        let bad = |source| EngineError::InvalidBatch {
            tp: tp.clone(),
            source,
        };
        let cases = [
            (
                bad(BatchError::CrcMismatch {
                    stored: 1,
                    computed: 2,
                }),
                2,
            ),
            (bad(BatchError::UnsupportedMagic(1)), 43),
            (bad(BatchError::TooLarge { bytes: 2, max: 1 }), 10),
            (
                EngineError::InvalidTopic {
                    name: "a b".into(),
                    reason: "space",
                },
                17,
            ),
            (EngineError::UnknownTopicOrPartition("t-0".into()), 3),
            (
                EngineError::OffsetOutOfRange {
                    tp: tp.clone(),
                    requested: Offset(5),
                    log_start: Offset(0),
                    high_watermark: Offset(1),
                },
                1,
            ),
            (
                EngineError::OutOfOrderSequence {
                    producer_id: 1,
                    expected: 0,
                    got: 3,
                },
                45,
            ),
            (
                EngineError::InvalidProducerEpoch {
                    producer_id: 1,
                    current: 2,
                    got: 1,
                },
                47,
            ),
            (
                EngineError::ReadOnly {
                    tp,
                    reason: "x".into(),
                },
                56,
            ),
            (EngineError::TopicAlreadyExists("t".into()), 36),
            (EngineError::InvalidPartitions("0".into()), 37),
            (EngineError::InvalidConfig("x".into()), 40),
            (EngineError::LimitReached("x".into()), 44),
        ];
        for (e, code) in cases {
            assert_eq!(error_code(&e), code, "{e}");
        }
    }
}
