//! Fetch (key 1), v4-v12: whole batches from many partitions, with the long poll.
//!
//! ```text
//! read every partition (concurrently) ─ trim to max_bytes ─ enough (>= min_bytes), an error,
//!        ▲                                                  the deadline or shutdown? ─ answer
//!        └──── any partition's high watermark moves past what was seen ◀── wait ◀─ no
//! ```
//! Bounds: each partition reads at most its `partition_max_bytes`, the answer holds at most
//! the request's `max_bytes` (capped by the broker's `fetch_bytes_max`), except that the first
//! batch found is always whole (Kafka's rule, so that a batch larger than the limits cannot
//! stall a consumer). Memory follows the same budget: see [`read_all`]. The wait is at most
//! the request's `max_wait_ms`, capped by the broker's `fetch_wait_ms_max`.
//!
//! Fetch sessions (KIP-227) are not kept: a request with session id 0 is answered in full with
//! session id 0, which tells a client that no session was created; it then keeps sending full
//! requests. A request naming another session gets FETCH_SESSION_ID_NOT_FOUND.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{join_all, select, select_all, Either};
use kafka_protocol::{
    error::ResponseError,
    messages::{
        fetch_response::{FetchableTopicResponse, PartitionData},
        FetchRequest, FetchResponse,
    },
};
use keel_engine::{EngineError, Offset, ReadOutcome, TopicPartition};

use crate::{broker::Ctx, error::error_code};

struct Wanted {
    tp: TopicPartition,
    offset: Offset,
    max_bytes: usize,
}

/// Answers Fetch: the response without its records, and the batches of each partition in
/// request order, for [`super::fetch_response::encode`].
pub async fn handle(
    ctx: &Ctx,
    _version: i16,
    req: FetchRequest,
) -> (FetchResponse, Vec<Vec<Bytes>>) {
    if req.session_id != 0 {
        let resp =
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return (resp, Vec::new());
    }
    let wait_ms = u64::try_from(req.max_wait_ms)
        .unwrap_or(0)
        .min(ctx.broker.config.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let request_max = usize::try_from(req.max_bytes)
        .unwrap_or(0)
        .min(ctx.broker.config.fetch_bytes_max);
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let wanted: Vec<Vec<Wanted>> = req
        .topics
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| Wanted {
                    tp: TopicPartition::new(&t.topic, p.partition),
                    offset: Offset(p.fetch_offset),
                    max_bytes: usize::try_from(p.partition_max_bytes)
                        .unwrap_or(0)
                        .min(request_max),
                })
                .collect()
        })
        .collect();
    let reads = loop {
        let (reads, bytes) = read_all(ctx, &wanted, request_max).await;
        let failed = reads.iter().flatten().any(Result::is_err);
        if bytes >= min_bytes || failed || Instant::now() >= deadline || ctx.shutdown.is_set() {
            break reads;
        }
        wait_for_more(ctx, &wanted, &reads, deadline).await;
    };
    let mut batches = Vec::with_capacity(reads.iter().map(Vec::len).sum());
    let responses = req
        .topics
        .into_iter()
        .zip(reads)
        .map(|(t, parts)| {
            let partitions = t
                .partitions
                .iter()
                .zip(parts)
                .map(|(p, r)| {
                    let (data, b) = partition_data(p.partition, r);
                    batches.push(b);
                    data
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    (FetchResponse::default().with_responses(responses), batches)
}

type Reads = Vec<Vec<Result<ReadOutcome, EngineError>>>;

/// Reads every partition, in request order, within the request's byte budget.
///
/// Partitions are read in windows: as many consecutive partitions at once (concurrently, on
/// their shards) as the budget left covers with their own limits, so that memory stays
/// within the budget (plus at most one oversized first batch per partition). Once the budget
/// is spent, the remaining partitions report only their offsets. Returns the reads, shaped as
/// the request, and the bytes of batches kept.
async fn read_all(ctx: &Ctx, wanted: &[Vec<Wanted>], request_max: usize) -> (Reads, usize) {
    let flat: Vec<&Wanted> = wanted.iter().flatten().collect();
    let mut out: Vec<Result<ReadOutcome, EngineError>> = Vec::with_capacity(flat.len());
    let mut kept = 0usize;
    while out.len() < flat.len() {
        let start = out.len();
        let left = request_max.saturating_sub(kept);
        if left == 0 && kept > 0 {
            let rest = flat[start..].iter().map(|w| offsets_only(ctx, w));
            out.extend(join_all(rest).await);
            break;
        }
        let mut end = start;
        let mut window_bytes = 0usize;
        while end < flat.len() {
            let limit = flat[end].max_bytes.min(left).max(1);
            if end > start && window_bytes + limit > left {
                break;
            }
            window_bytes += limit;
            end += 1;
        }
        let reads = join_all(flat[start..end].iter().map(|w| {
            ctx.shard
                .read(&w.tp, w.offset, w.max_bytes.min(left).max(1))
        }))
        .await;
        for mut read in reads {
            if let Ok(r) = read.as_mut() {
                kept += keep_within(&mut r.batches, kept, request_max);
            }
            out.push(read);
        }
    }
    let mut out = out.into_iter();
    let shaped = wanted
        .iter()
        .map(|parts| out.by_ref().take(parts.len()).collect())
        .collect();
    (shaped, kept)
}

/// Drops the batches past `request_max`, given `kept` bytes already in the answer; the first
/// batch of the answer is always kept whole, whatever its size (Kafka's rule, so that a batch
/// larger than the limits cannot stall a consumer). Returns the bytes kept here.
fn keep_within(batches: &mut Vec<Bytes>, kept: usize, request_max: usize) -> usize {
    let mut total = kept;
    let mut take = 0;
    for batch in batches.iter() {
        if total > 0 && total + batch.len() > request_max {
            break;
        }
        total += batch.len();
        take += 1;
    }
    batches.truncate(take);
    total - kept
}

/// A partition past the budget: its offsets, and the range check a read would have made.
async fn offsets_only(ctx: &Ctx, w: &Wanted) -> Result<ReadOutcome, EngineError> {
    let o = ctx.shard.offsets(&w.tp).await?;
    if w.offset < o.log_start || w.offset > o.high_watermark {
        return Err(EngineError::OffsetOutOfRange {
            tp: w.tp.clone(),
            requested: w.offset,
            log_start: o.log_start,
            high_watermark: o.high_watermark,
        });
    }
    Ok(ReadOutcome {
        batches: Vec::new(),
        high_watermark: o.high_watermark,
        log_start_offset: o.log_start,
        last_stable_offset: o.high_watermark,
    })
}

/// Waits until a partition that read cleanly has more data than seen, the deadline passes, or
/// shutdown starts.
async fn wait_for_more(ctx: &Ctx, wanted: &[Vec<Wanted>], reads: &Reads, deadline: Instant) {
    let waits: Vec<_> = wanted
        .iter()
        .flatten()
        .zip(reads.iter().flatten())
        .filter_map(|(w, r)| r.as_ref().ok().map(|r| (w, r.high_watermark)))
        .map(|(w, seen)| Box::pin(ctx.shard.wait_for_data(&w.tp, seen.max(w.offset), deadline)))
        .collect();
    let shutdown = ctx.shutdown.clone();
    if waits.is_empty() {
        let sleep = keel_engine::rt::sleep(deadline.saturating_duration_since(Instant::now()));
        select(Box::pin(sleep), shutdown).await;
        return;
    }
    match select(select_all(waits), shutdown).await {
        Either::Left(((Err(e), _, _), _)) => tracing::debug!(error = %e, "fetch wait failed"),
        Either::Left(_) | Either::Right(_) => {}
    }
}

/// A partition's answer without its records, and its batches.
fn partition_data(
    index: i32,
    read: Result<ReadOutcome, EngineError>,
) -> (PartitionData, Vec<Bytes>) {
    match read {
        Ok(r) => {
            let data = PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(r.high_watermark.0)
                .with_last_stable_offset(r.last_stable_offset.0)
                .with_log_start_offset(r.log_start_offset.0)
                .with_records(None);
            (data, r.batches)
        }
        Err(e) => {
            if !matches!(
                e,
                EngineError::OffsetOutOfRange { .. } | EngineError::UnknownTopicOrPartition(_)
            ) {
                tracing::warn!(error = %e, "fetch read failed");
            }
            let data = PartitionData::default()
                .with_partition_index(index)
                .with_error_code(error_code(&e))
                .with_high_watermark(-1)
                .with_records(None);
            (data, Vec::new())
        }
    }
}
