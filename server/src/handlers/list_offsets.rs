//! ListOffsets (key 2), v1-v7: earliest (-2), latest (-1), max timestamp (-3, v7) and by
//! timestamp, for many partitions at once.

use futures::future::join_all;
use kafka_protocol::{
    error::ResponseError,
    messages::{
        list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
        ListOffsetsRequest, ListOffsetsResponse,
    },
};
use keel_engine::{OffsetSpec, TopicPartition};

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
        Ok((offset, ts)) => base.with_offset(offset.0).with_timestamp(ts),
        Err(e) => base
            .with_error_code(error_code(&e))
            .with_offset(-1)
            .with_timestamp(-1),
    }
}
