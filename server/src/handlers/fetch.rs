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
//! stall a consumer). The wait is at most the request's `max_wait_ms`, capped by the broker's
//! `fetch_wait_ms_max`.
//!
//! Memory: each read first takes its share of the shard's response memory
//! (`response_memory_bytes_max`), which the answer holds until it is written: the bytes its
//! limits allow plus [`READ_PIN_BYTES`] a partition, or less when less is free (down to one
//! largest batch). With less than that free it waits, at most until its deadline, and then
//! answers with offsets only. Nothing is held through the long poll's wait. So the answers of
//! a shard, stuck on clients that do not read them included, stay within its budget (plus
//! at most one batch each when the budget is below one batch); a client that does not read
//! an answer within `connection_idle_ms_max` is disconnected, which frees it.
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

use keel_engine::rt::BudgetPermit;

use crate::{broker::Ctx, error::error_code};

struct Wanted {
    tp: TopicPartition,
    offset: Offset,
    max_bytes: usize,
}

/// What a partition's read may pin beyond the batches it returns: one 64 KiB read chunk and
/// a block of alignment (see the engine's `Segment::read`). Charged to the response memory
/// budget for every partition that returns data.
pub const READ_PIN_BYTES: usize = 68 * 1024;

/// A Fetch answer: the response without its records, the batches of each partition in
/// request order (for [`super::fetch_response::encode`]), and the response memory they hold.
#[derive(Debug)]
pub struct Fetched {
    /// The response, records left out.
    pub response: FetchResponse,
    /// Each partition's batches, in request order.
    pub batches: Vec<Vec<Bytes>>,
    /// The shard's response memory the batches are charged to, until written.
    pub memory: Option<BudgetPermit>,
}

/// Answers Fetch.
pub async fn handle(ctx: &Ctx, _version: i16, req: FetchRequest) -> Fetched {
    if req.session_id != 0 {
        let response =
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return Fetched {
            response,
            batches: Vec::new(),
            memory: None,
        };
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
    let parts = wanted.iter().map(Vec::len).sum::<usize>();
    let (reads, memory) = loop {
        let Some(mut memory) = take_memory(ctx, request_max, parts, deadline).await else {
            // No response memory came free before the deadline: the offsets alone, and the
            // client fetches again.
            let flat = wanted.iter().flatten().map(|w| offsets_only(ctx, w));
            break (shaped_as(&wanted, join_all(flat).await), None);
        };
        let units = usize::try_from(memory.units()).unwrap_or(usize::MAX);
        let (reads, bytes, cost) = read_all(ctx, &wanted, request_max, units).await;
        memory.shrink_to(cost as u64);
        let failed = reads.iter().flatten().any(Result::is_err);
        if bytes >= min_bytes || failed || Instant::now() >= deadline || ctx.shutdown.is_set() {
            break (reads, Some(memory));
        }
        // Neither the batches read nor their memory are held through the wait.
        let seen = high_watermarks(&reads);
        drop((reads, memory));
        wait_for_more(ctx, &wanted, &seen, deadline).await;
    };
    let mut batches = Vec::with_capacity(parts);
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
    Fetched {
        response: FetchResponse::default().with_responses(responses),
        batches,
        memory,
    }
}

/// Takes this fetch's share of the shard's response memory: what its limits could use (its
/// bytes plus [`READ_PIN_BYTES`] a partition) if that much is free, or less, down to one
/// largest batch and its pin. With less than that free, it waits in turn until the deadline;
/// `None` if it passes (or shutdown starts) first.
async fn take_memory(
    ctx: &Ctx,
    request_max: usize,
    parts: usize,
    deadline: Instant,
) -> Option<BudgetPermit> {
    let floor = (ctx.broker.config.batch_bytes_max + READ_PIN_BYTES) as u64;
    let want = (request_max as u64)
        .saturating_add((READ_PIN_BYTES as u64).saturating_mul(parts as u64))
        .max(floor);
    if let Some(permit) = ctx.response_memory.try_acquire_up_to(want, floor) {
        return Some(permit);
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    let acquire = Box::pin(ctx.response_memory.acquire(floor));
    let give_up = select(Box::pin(keel_engine::rt::sleep(wait)), ctx.shutdown.clone());
    match select(acquire, give_up).await {
        Either::Left((permit, _)) => Some(permit),
        Either::Right(_) => None,
    }
}

type Reads = Vec<Vec<Result<ReadOutcome, EngineError>>>;

/// Reads every partition, in request order, within the request's byte budget and the
/// response memory taken (`memory`: the bytes kept plus [`READ_PIN_BYTES`] for each partition
/// that returned any).
///
/// Partitions are read in windows: as many consecutive partitions at once (concurrently, on
/// their shards) as both budgets left cover with their own limits, so that memory stays
/// within them (the first batch of the answer is kept whole even past them). Once either is
/// spent, the remaining partitions report only their offsets. Returns the reads, shaped as
/// the request, the bytes of batches kept, and the memory they are charged.
async fn read_all(
    ctx: &Ctx,
    wanted: &[Vec<Wanted>],
    request_max: usize,
    memory: usize,
) -> (Reads, usize, usize) {
    let flat: Vec<&Wanted> = wanted.iter().flatten().collect();
    let mut out: Vec<Result<ReadOutcome, EngineError>> = Vec::with_capacity(flat.len());
    let (mut kept, mut cost) = (0usize, 0usize);
    while out.len() < flat.len() {
        let start = out.len();
        let left = request_max.saturating_sub(kept);
        let memory_left = memory.saturating_sub(cost);
        if kept > 0 && (left == 0 || memory_left <= READ_PIN_BYTES) {
            let rest = flat[start..].iter().map(|w| offsets_only(ctx, w));
            out.extend(join_all(rest).await);
            break;
        }
        let read_max = memory_left.saturating_sub(READ_PIN_BYTES).min(left);
        let mut limits = Vec::new();
        let (mut window_bytes, mut window_memory) = (0usize, 0usize);
        while start + limits.len() < flat.len() {
            let limit = flat[start + limits.len()].max_bytes.min(read_max).max(1);
            let pinned = limit + READ_PIN_BYTES;
            if !limits.is_empty()
                && (window_bytes + limit > left || window_memory + pinned > memory_left)
            {
                break;
            }
            window_bytes += limit;
            window_memory += pinned;
            limits.push(limit);
        }
        let reads = join_all(
            flat[start..start + limits.len()]
                .iter()
                .zip(&limits)
                .map(|(w, limit)| ctx.shard.read(&w.tp, w.offset, *limit)),
        )
        .await;
        for mut read in reads {
            if let Ok(r) = read.as_mut() {
                let (bytes, charged) =
                    keep_within(&mut r.batches, (kept, request_max), (cost, memory));
                kept += bytes;
                cost += charged;
            }
            out.push(read);
        }
    }
    (shaped_as(wanted, out), kept, cost)
}

/// The reads of every partition, in request order, grouped by topic as the request is.
fn shaped_as(wanted: &[Vec<Wanted>], flat: Vec<Result<ReadOutcome, EngineError>>) -> Reads {
    let mut flat = flat.into_iter();
    wanted
        .iter()
        .map(|parts| flat.by_ref().take(parts.len()).collect())
        .collect()
}

/// Drops the batches past either budget, given (bytes kept, `request_max`) and (memory
/// charged, memory taken) so far; the first batch of the answer is always kept whole,
/// whatever its size (Kafka's rule, so that a batch larger than the limits cannot stall a
/// consumer). Returns the bytes kept here and the memory they are charged, their pin
/// included.
fn keep_within(
    batches: &mut Vec<Bytes>,
    (kept, request_max): (usize, usize),
    (cost, memory): (usize, usize),
) -> (usize, usize) {
    let mut total = kept;
    let mut charged = cost + READ_PIN_BYTES;
    let mut take = 0;
    for batch in batches.iter() {
        if total > 0 && (total + batch.len() > request_max || charged + batch.len() > memory) {
            break;
        }
        total += batch.len();
        charged += batch.len();
        take += 1;
    }
    batches.truncate(take);
    if take == 0 {
        return (0, 0);
    }
    (total - kept, charged - cost)
}

/// The high watermark each partition that read cleanly was at, in request order.
fn high_watermarks(reads: &Reads) -> Vec<Option<Offset>> {
    reads
        .iter()
        .flatten()
        .map(|r| r.as_ref().ok().map(|r| r.high_watermark))
        .collect()
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

/// Waits until a partition that read cleanly (`seen`: its high watermark then) has more
/// data, the deadline passes, or shutdown starts.
async fn wait_for_more(
    ctx: &Ctx,
    wanted: &[Vec<Wanted>],
    seen: &[Option<Offset>],
    deadline: Instant,
) {
    let waits: Vec<_> = wanted
        .iter()
        .flatten()
        .zip(seen)
        .filter_map(|(w, seen)| seen.map(|seen| (w, seen)))
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
