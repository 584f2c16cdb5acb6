//! Produce (key 0), v3-v11: record batches, as `Bytes` slices of the request frame, go to
//! `Shard::append` for each partition (the engine routes to the owner shard), all partitions
//! of the request at once. Topics are auto-created when the broker allows it.
//!
//! acks=0 gets no response at all; if a partition fails, the connection is closed instead, as
//! Kafka does, so that the client notices. acks=1 and acks=-1 (all) both answer once the
//! engine has made the batch as durable as its fsync policy says: with one broker there is no
//! replica to wait for, so "all" is the leader.

use futures::future::join_all;
use kafka_protocol::{
    error::ResponseError,
    messages::{
        produce_request::{PartitionProduceData, TopicProduceData},
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ProduceRequest, ProduceResponse,
    },
    protocol::StrBytes,
};
use keel_engine::{EngineError, TopicPartition};

use super::metadata::ensure_topic;
use crate::{
    broker::Ctx,
    error::{response_error, ConnectionError},
};

/// Answers Produce: `None` for acks=0.
///
/// # Errors
/// A failed partition with acks=0 (the connection is closed).
pub async fn handle(
    ctx: &Ctx,
    version: i16,
    req: ProduceRequest,
) -> Result<Option<ProduceResponse>, ConnectionError> {
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let responses = join_all(
        req.topic_data
            .into_iter()
            .map(|t| produce_topic(ctx, version, t, valid_acks)),
    )
    .await;
    if acks == 0 {
        let failed = responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.error_code != 0);
        return match failed {
            Some(p) => Err(ConnectionError::UnackedProduceFailed(format!(
                "partition {} error {}",
                p.index, p.error_code
            ))),
            None => Ok(None),
        };
    }
    Ok(Some(ProduceResponse::default().with_responses(responses)))
}

async fn produce_topic(
    ctx: &Ctx,
    version: i16,
    t: TopicProduceData,
    valid_acks: bool,
) -> TopicProduceResponse {
    let topic = if valid_acks {
        ensure_topic(ctx, &t.name).await.map(|_| ())
    } else {
        Ok(())
    };
    let partitions = join_all(t.partition_data.into_iter().map(|p| {
        let topic = &topic;
        let name = &t.name;
        async move {
            if !valid_acks {
                return failed(version, p.index, ResponseError::InvalidRequiredAcks, None);
            }
            if let Err(e) = topic {
                return engine_failed(version, p.index, e);
            }
            append(ctx, version, name, p).await
        }
    }))
    .await;
    TopicProduceResponse::default()
        .with_name(t.name)
        .with_partition_responses(partitions)
}

async fn append(
    ctx: &Ctx,
    version: i16,
    topic: &str,
    p: PartitionProduceData,
) -> PartitionProduceResponse {
    let Some(records) = p.records else {
        return failed(
            version,
            p.index,
            ResponseError::CorruptMessage,
            Some("null records"),
        );
    };
    let tp = TopicPartition::new(topic, p.index);
    match ctx.shard.append(&tp, records).await {
        Ok(out) => {
            let mut r = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(out.base_offset.0)
                // Topics keep the producer's CreateTime, for which Kafka answers -1 here.
                .with_log_append_time_ms(-1);
            if version >= 5 {
                r.log_start_offset = out.log_start_offset.0;
            }
            r
        }
        Err(e) => engine_failed(version, p.index, &e),
    }
}

fn engine_failed(version: i16, index: i32, e: &EngineError) -> PartitionProduceResponse {
    let code = response_error(e);
    if !matches!(
        e,
        EngineError::InvalidBatch { .. } | EngineError::UnknownTopicOrPartition(_)
    ) {
        tracing::warn!(error = %e, "produce failed");
    }
    failed(version, index, code, Some(&e.to_string()))
}

fn failed(
    version: i16,
    index: i32,
    error: ResponseError,
    message: Option<&str>,
) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1);
    if version >= 8 {
        r.error_message = message.map(|m| StrBytes::from_string(m.to_string()));
    }
    r
}
