//! Produce (key 0), v0-v11: record batches, as `Bytes` slices of the request frame, go to
//! `Shard::append` for each partition (the engine routes to the owner shard), all partitions
//! of the request at once. Topics are auto-created when the broker allows it.
//!
//! acks=0 gets no response at all; if a partition fails, the connection is closed instead, as
//! Kafka does, so that the client notices. acks=1 and acks=-1 (all) both answer once the
//! engine has made the batch as durable as its fsync policy says: with one broker there is no
//! replica to wait for, so "all" is the leader.
//!
//! Versions 0-2 are served although no current client sends them: librdkafka (up to at least
//! 2.0.2) compresses a batch with gzip or snappy only if the broker advertises Produce v0, so
//! without it kcat silently sends uncompressed batches. They differ from v3 only by the
//! missing transactional id in the request and by fewer response fields; the kafka-protocol
//! crate starts at v3, so [`handle_legacy`] adapts both ends (their batches, magic 0 or 1 in
//! practice, are then refused by the engine with UNSUPPORTED_FOR_MESSAGE_FORMAT).

use bytes::{BufMut, Bytes, BytesMut};
use futures::{
    channel::oneshot,
    future::{join, join_all},
};
use kafka_protocol::{
    error::ResponseError,
    messages::{
        produce_request::{PartitionProduceData, TopicProduceData},
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ProduceRequest, ProduceResponse,
    },
    protocol::{Decodable, StrBytes},
};
use keel_engine::{EngineError, TopicPartition};

use super::metadata::ensure_topic;
use crate::{
    broker::Ctx,
    codec::RawRequest,
    error::{response_error, ConnectionError},
};

/// Answers Produce: `None` for acks=0. `enqueued`, when given, is told once every partition
/// of the request has its batches in its write queue or has failed (so that the connection
/// may start on its next request while this one waits to be durable).
///
/// # Errors
/// A failed partition with acks=0 (the connection is closed).
pub async fn handle(
    ctx: &Ctx,
    version: i16,
    req: ProduceRequest,
    enqueued: Option<oneshot::Sender<()>>,
) -> Result<Option<ProduceResponse>, ConnectionError> {
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let mut signals = Vec::new();
    let topics = req.topic_data.into_iter().map(|t| {
        let senders = t
            .partition_data
            .iter()
            .map(|_| {
                enqueued.as_ref().map(|_| {
                    let (tx, rx) = oneshot::channel();
                    signals.push(rx);
                    tx
                })
            })
            .collect();
        produce_topic(ctx, version, t, valid_acks, senders)
    });
    let topics: Vec<_> = topics.collect();
    let all_enqueued = async move {
        // A sender dropped (a partition that failed first) counts as done, too.
        join_all(signals).await;
        if let Some(enqueued) = enqueued {
            let _ = enqueued.send(());
        }
    };
    let (responses, ()) = join(join_all(topics), all_enqueued).await;
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
    enqueued: Vec<Option<oneshot::Sender<()>>>,
) -> TopicProduceResponse {
    let topic = if valid_acks {
        ensure_topic(ctx, &t.name).await.map(|_| ())
    } else {
        Ok(())
    };
    let partitions = join_all(
        t.partition_data
            .into_iter()
            .zip(enqueued)
            .map(|(p, enqueued)| {
                let topic = &topic;
                let name = &t.name;
                async move {
                    if !valid_acks {
                        return failed(version, p.index, ResponseError::InvalidRequiredAcks, None);
                    }
                    if let Err(e) = topic {
                        return engine_failed(version, p.index, e);
                    }
                    if name.as_str() == crate::group::OFFSETS_TOPIC {
                        // Only the group coordinator writes there (as Kafka refuses it too).
                        let why = Some("cannot append to an internal topic");
                        return failed(version, p.index, ResponseError::InvalidTopicException, why);
                    }
                    append(ctx, version, name, p, enqueued).await
                }
            }),
    )
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
    enqueued: Option<oneshot::Sender<()>>,
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
    match ctx.shard.append_notify(&tp, records, enqueued).await {
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

/// Serves Produce v0-v2: the body is decoded as v3 behind a null transactional id, and the
/// answer is encoded by hand in the older layout (v2 is v3's layout; v1 lacks the log append
/// time; v0 also lacks the throttle time). Returns the response frame.
///
/// # Errors
/// As [`handle`], and a body that does not decode.
pub async fn handle_legacy(ctx: &Ctx, req: &RawRequest) -> Result<Option<Bytes>, ConnectionError> {
    let version = req.version();
    debug_assert!((0..3).contains(&version));
    let mut shimmed = BytesMut::with_capacity(2 + req.body.len());
    shimmed.put_i16(-1);
    shimmed.put_slice(&req.body);
    let decoded = ProduceRequest::decode(&mut shimmed.freeze(), 3).map_err(|e| {
        ConnectionError::Malformed {
            what: "request body",
            reason: e.to_string(),
        }
    })?;
    let Some(resp) = handle(ctx, 3, decoded, None).await? else {
        return Ok(None);
    };
    let mut out = BytesMut::new();
    out.put_i32(0); // the frame length, set below
    out.put_i32(req.header.correlation_id);
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    out.put_i32(count(resp.responses.len()));
    for t in &resp.responses {
        put_string(&mut out, t.name.as_str());
        out.put_i32(count(t.partition_responses.len()));
        for p in &t.partition_responses {
            out.put_i32(p.index);
            out.put_i16(p.error_code);
            out.put_i64(p.base_offset);
            if version >= 2 {
                out.put_i64(p.log_append_time_ms);
            }
        }
    }
    if version >= 1 {
        out.put_i32(resp.throttle_time_ms);
    }
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(Some(out.freeze()))
}

fn put_string(out: &mut BytesMut, s: &str) {
    out.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    out.put_slice(s.as_bytes());
}
