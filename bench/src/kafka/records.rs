//! The bench's messages and the record batches that carry them.
//!
//! Every message value starts with two timestamps, nanoseconds since the run's epoch (one
//! `Instant` shared by every producer and consumer thread of the process):
//!
//! ```text
//!   value: [intended send time: u64 BE][actual send time: u64 BE][filler up to message_bytes]
//! ```
//!
//! The intended time is the producer's schedule slot (coordinated-omission corrected latency
//! counts from it); the actual time is when the batch holding the message was built and handed
//! to the socket (uncorrected latency counts from it). A consumer reads both back, so
//! end-to-end latency needs no clock but the process's own.

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Bytes of the two timestamps at the start of every value.
pub const VALUE_HEADER_BYTES: usize = 16;

/// One message waiting in a producer's partition buffer.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    /// Scheduled send time, ns since the run epoch.
    pub intended_ns: u64,
    pub key: Option<Bytes>,
}

/// Builds one record batch (magic 2) of `messages`, each value `message_bytes` long (at least
/// the header) stamped with its intended time and `actual_ns`. `filler` provides the bytes
/// after the header (it must hold at least `message_bytes`).
pub fn encode_batch(
    messages: &[PendingMessage],
    actual_ns: u64,
    message_bytes: usize,
    filler: &[u8],
    compression: Compression,
    wall_ms: i64,
) -> anyhow::Result<Bytes> {
    let value_bytes = message_bytes.max(VALUE_HEADER_BYTES);
    anyhow::ensure!(filler.len() >= value_bytes, "filler shorter than a message");
    let mut values = BytesMut::with_capacity(value_bytes * messages.len());
    let records: Vec<Record> = messages
        .iter()
        .zip(0i32..)
        .map(|(message, index)| {
            values.put_u64(message.intended_ns);
            values.put_u64(actual_ns);
            values.put_slice(&filler[VALUE_HEADER_BYTES..value_bytes]);
            let value = values.split().freeze();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(index),
                sequence: index,
                timestamp: wall_ms,
                key: message.key.clone(),
                value: Some(value),
                headers: IndexMap::new(),
            }
        })
        .collect();
    let mut batch = BytesMut::with_capacity(value_bytes * messages.len() + 128);
    RecordBatchEncoder::encode(
        &mut batch,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(batch.freeze())
}

/// What a consumer learns from one fetched record set: per message, its two timestamps, and
/// the offset to fetch next.
#[derive(Debug, Default)]
pub struct ConsumedSet {
    /// (intended ns, actual ns) of every bench message, in offset order.
    pub stamps: Vec<(u64, u64)>,
    /// Bytes of the values read.
    pub value_bytes: u64,
    /// One past the last offset returned, if any record was.
    pub next_offset: Option<i64>,
}

/// Decodes every batch in `records` (any codec) and reads the bench stamps of the records at
/// or after `from_offset` (a fetch may return a whole batch that starts earlier).
pub fn read_stamps(records: &mut Bytes, from_offset: i64) -> anyhow::Result<ConsumedSet> {
    let mut consumed = ConsumedSet::default();
    for set in RecordBatchDecoder::decode_all(records)? {
        for record in set.records {
            consumed.next_offset = Some(record.offset + 1);
            if record.offset < from_offset {
                continue;
            }
            let Some(value) = record.value else { continue };
            consumed.value_bytes += value.len() as u64;
            if value.len() >= VALUE_HEADER_BYTES {
                let stamp = |at: usize| {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(&value[at..at + 8]);
                    u64::from_be_bytes(word)
                };
                consumed.stamps.push((stamp(0), stamp(8)));
            }
        }
    }
    Ok(consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_a_batch() -> anyhow::Result<()> {
        let filler = vec![7u8; 1024];
        let messages: Vec<PendingMessage> = (0..5)
            .map(|i| PendingMessage {
                intended_ns: 1000 + i,
                key: (i % 2 == 0).then(|| Bytes::from_static(b"k")),
            })
            .collect();
        for compression in [Compression::None, Compression::Lz4] {
            let mut batch = encode_batch(&messages, 5000, 1024, &filler, compression, 0)?;
            let consumed = read_stamps(&mut batch, 2)?;
            assert_eq!(consumed.stamps, [(1002, 5000), (1003, 5000), (1004, 5000)]);
            assert_eq!(consumed.next_offset, Some(5));
            assert_eq!(consumed.value_bytes, 3 * 1024);
        }
        Ok(())
    }
}
