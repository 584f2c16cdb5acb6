//! ListOffsets (key 2), v1-v7: earliest (-2), latest (-1), max timestamp (-3, v7) and by
//! timestamp, for many partitions at once.
//!
//! The engine finds the *batch* for a timestamp (its indexes hold batch timestamps); Kafka
//! answers with the *record*: the first record at or after the time, or the first record with
//! the largest time. So the batch is read back and its records decoded (decompressed if need
//! be) to find that record. Only lookups by time pay for it.

use futures::future::join_all;
use kafka_protocol::{
    error::ResponseError,
    messages::{
        list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
        ListOffsetsRequest, ListOffsetsResponse,
    },
    records::RecordBatchDecoder,
};
use keel_engine::{Offset, OffsetSpec, TopicPartition};

use crate::{broker::Ctx, error::error_code};

/// Kafka's special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Answers ListOffsets.
pub async fn handle(ctx: &Ctx, _version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = join_all(req.topics.into_iter().map(|t| async move {
        let partitions = join_all(t.partitions.iter().map(|p| {
            let tp = TopicPartition::new(&t.name, p.partition_index);
            list_one(ctx, tp, p.timestamp)
        }))
        .await;
        ListOffsetsTopicResponse::default()
            .with_name(t.name)
            .with_partitions(partitions)
    }))
    .await;
    ListOffsetsResponse::default().with_topics(topics)
}

async fn list_one(ctx: &Ctx, tp: TopicPartition, timestamp: i64) -> ListOffsetsPartitionResponse {
    let base = ListOffsetsPartitionResponse::default().with_partition_index(tp.partition);
    let spec = match timestamp {
        LATEST => OffsetSpec::Latest,
        EARLIEST => OffsetSpec::Earliest,
        MAX_TIMESTAMP => OffsetSpec::MaxTimestamp,
        ts if ts >= 0 => OffsetSpec::Timestamp(ts),
        _ => {
            return base
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_offset(-1)
                .with_timestamp(-1)
        }
    };
    match ctx.shard.list_offset(&tp, spec).await {
        Ok((offset, ts)) => {
            let (offset, ts) = match spec {
                OffsetSpec::Timestamp(_) | OffsetSpec::MaxTimestamp if offset.0 >= 0 => {
                    exact_record(ctx, &tp, spec, offset)
                        .await
                        .unwrap_or((offset.0, ts))
                }
                _ => (offset.0, ts),
            };
            base.with_offset(offset).with_timestamp(ts)
        }
        Err(e) => base
            .with_error_code(error_code(&e))
            .with_offset(-1)
            .with_timestamp(-1),
    }
}

/// The record the lookup means, inside the batch the engine found at `batch`: (offset,
/// timestamp), or `None` if the batch cannot be read back or decoded (the batch's own answer
/// is used then).
async fn exact_record(
    ctx: &Ctx,
    tp: &TopicPartition,
    spec: OffsetSpec,
    batch: Offset,
) -> Option<(i64, i64)> {
    let read = ctx.shard.read(tp, batch, 1).await.ok()?;
    let mut bytes = read.batches.into_iter().next()?;
    let sets = RecordBatchDecoder::decode_all(&mut bytes)
        .map_err(|e| tracing::warn!(partition = %tp, error = %e, "cannot decode a batch"))
        .ok()?;
    let records = sets.iter().flat_map(|s| &s.records);
    let found = match spec {
        OffsetSpec::Timestamp(target) => records
            .filter(|r| r.timestamp >= target)
            .min_by_key(|r| r.offset),
        // The first of the records with the largest timestamp.
        _ => records.min_by_key(|r| (std::cmp::Reverse(r.timestamp), r.offset)),
    }?;
    Some((found.offset, found.timestamp))
}
