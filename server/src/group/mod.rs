//! Consumer groups: the group coordinator, as Kafka runs it, so that the group support of
//! every client works unchanged.
//!
//! - Where a group lives: its partition of the internal topic `__consumer_offsets` is
//!   [`partition_for`] (Java's `String.hashCode` of the group id, sign bit cleared, modulo the
//!   partition count: the same choice Kafka makes), and its coordinator is the shard that owns
//!   that partition. A request arriving on another shard's connection is run there through
//!   the engine's `Shard::run_on` seam ([`on_coordinator`]); the coordinator's state lives
//!   only on its shard (a thread-local [`Coordinator`] per shard).
//! - [`machine`]: one group and the classic state machine (Empty, PreparingRebalance,
//!   CompletingRebalance, Stable, Dead), without I/O.
//! - [`coordinator`]: the groups of one shard: the request logic, persistence, timers, replay.
//! - [`store`]: the records in `__consumer_offsets` and their bytes
//!   (`docs/consumer-offsets.md`).
//!
//! At start shard 0 creates `__consumer_offsets` if it is missing, every shard replays the
//! partitions it owns, then serves; a request for a partition still loading is answered
//! COORDINATOR_LOAD_IN_PROGRESS, which clients retry.

pub mod coordinator;
pub mod machine;
pub mod store;

use std::{cell::RefCell, future::Future, rc::Rc, sync::Arc, time::Duration};

use kafka_protocol::error::ResponseError;
use keel_engine::{config::SEGMENT_BYTES_MIN, Shard, TopicOverrides};

use crate::{
    broker::{Broker, Ctx},
    config::Config,
};
pub use coordinator::Coordinator;

/// The internal topic of committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often each shard's coordinator checks sessions and rebalance deadlines.
const TICK_MS: u64 = 50;

thread_local! {
    /// This shard's coordinator (each shard is one thread).
    static COORDINATOR: RefCell<Option<Rc<Coordinator>>> = const { RefCell::new(None) };
}

fn local() -> Option<Rc<Coordinator>> {
    COORDINATOR.with(|c| c.borrow().clone())
}

/// The partition of `__consumer_offsets` that holds a group: Java's `String.hashCode` over
/// the id's UTF-16 code units, `& 0x7fffffff`, modulo `partitions` (Kafka's
/// `Utils.abs(groupId.hashCode) % groupMetadataTopicPartitionCount`).
#[must_use]
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (hash & 0x7fff_ffff) % partitions.max(1)
}

/// The shard whose coordinator holds `group_id`.
fn coordinator_shard(shard: &Shard, group_id: &str) -> Option<usize> {
    let catalog = shard.catalog();
    let topic = catalog.topics.get(OFFSETS_TOPIC)?;
    let count = i32::try_from(topic.partitions.len()).ok()?;
    let p = partition_for(group_id, count);
    catalog
        .owner(OFFSETS_TOPIC, p)
        .map(|m| m.owner_shard as usize)
}

/// Runs `f` with the coordinator of `group_id`, on its shard.
///
/// # Errors
/// COORDINATOR_NOT_AVAILABLE when there is none (still starting, or stopping).
pub async fn on_coordinator<T, F, Fut>(ctx: &Ctx, group_id: &str, f: F) -> Result<T, ResponseError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let shard =
        coordinator_shard(&ctx.shard, group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
    on_shard(ctx, shard, f).await
}

/// Runs `f` with the coordinator of shard `shard`.
async fn on_shard<T, F, Fut>(ctx: &Ctx, shard: usize, f: F) -> Result<T, ResponseError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let run = ctx.shard.run_on(shard, move || async move {
        match local() {
            Some(c) => Some(f(c).await),
            None => None,
        }
    });
    match run.await {
        Ok(Some(t)) => Ok(t),
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// Runs `f` with every shard's coordinator; the answers of those that have one.
pub async fn on_every_coordinator<T, F, Fut>(ctx: &Ctx, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Rc<Coordinator>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    let runs = (0..ctx.shard.shard_count()).map(|s| on_shard(ctx, s, f.clone()));
    futures::future::join_all(runs)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

fn settings(config: &Config) -> coordinator::Settings {
    coordinator::Settings {
        groups_max: config.groups_max,
        members_max: config.group_members_max,
        metadata_bytes_max: config.group_metadata_bytes_max,
        offset_metadata_bytes_max: config.offset_metadata_bytes_max,
        session_min_ms: config.group_min_session_timeout_ms,
        session_max_ms: config.group_max_session_timeout_ms,
        initial_delay: Duration::from_millis(config.group_initial_rebalance_delay_ms),
        retention_ms: config.offsets_retention_ms,
        snapshot_bytes: config.offsets_snapshot_bytes,
    }
}

/// Starts this shard's coordinator: shard 0 creates `__consumer_offsets` if missing; every
/// shard waits for it, replays its partitions, and starts its timers.
///
/// # Errors
/// The topic could not be created or a partition not replayed; the broker does not start.
pub async fn start(shard: &Shard, broker: &Arc<Broker>) -> Result<(), String> {
    let config = &broker.config;
    if shard.id() == 0 && !shard.catalog().topics.contains_key(OFFSETS_TOPIC) {
        let overrides = TopicOverrides {
            // Compaction (snapshots), not time or size, bounds this topic.
            retention_ms: Some(-1),
            retention_bytes: Some(-1),
            // Segments roll at the snapshot bound, so that a snapshot frees whole segments.
            segment_bytes_max: Some(config.offsets_snapshot_bytes.max(SEGMENT_BYTES_MIN)),
            ..TopicOverrides::default()
        };
        shard
            .create_topic(
                OFFSETS_TOPIC,
                config.offsets_topic_partitions,
                overrides,
                false,
            )
            .await
            .map_err(|e| format!("creating {OFFSETS_TOPIC}: {e}"))?;
        tracing::info!(
            partitions = config.offsets_topic_partitions,
            "created {OFFSETS_TOPIC}"
        );
    }
    let topic = loop {
        if let Some(t) = shard.catalog().topics.get(OFFSETS_TOPIC).cloned() {
            break t;
        }
        if broker.failed() || broker.shutdown.is_set() {
            return Err(format!("{OFFSETS_TOPIC} was not created"));
        }
        keel_engine::rt::sleep(Duration::from_millis(1)).await;
    };
    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    let coordinator = Rc::new(Coordinator::new(
        shard.clone(),
        Arc::clone(broker),
        settings(config),
        count,
    ));
    COORDINATOR.with(|c| *c.borrow_mut() = Some(Rc::clone(&coordinator)));
    for p in topic
        .partitions
        .iter()
        .filter(|p| p.owner_shard as usize == shard.id())
    {
        coordinator
            .load(p.index)
            .await
            .map_err(|e| format!("replaying {OFFSETS_TOPIC}-{}: {e}", p.index))?;
    }
    let retention_every = (config.offsets_retention_ms / 2).clamp(100, 60_000) / TICK_MS;
    let broker = Arc::clone(broker);
    keel_engine::rt::spawn_local(async move {
        let mut ticks = 0u64;
        while !broker.shutdown.is_set() {
            keel_engine::rt::sleep(Duration::from_millis(TICK_MS)).await;
            ticks += 1;
            coordinator
                .tick(ticks.is_multiple_of(retention_every.max(1)))
                .await;
            coordinator.compact().await;
        }
        coordinator.fail_waiters();
    })
    .detach();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_javas_string_hash() {
        // "my-group".hashCode() in Java is -1_906_497_762; with the sign bit cleared
        // 240_985_886, and mod 50 that is 36.
        assert_eq!(partition_for("my-group", 50), 36);
        assert_eq!(partition_for("", 8), 0);
        // A hash with the sign bit set: the bit is cleared, not negated.
        let negative = "polygenelubricants";
        let h = negative
            .encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
        assert!(h < 0);
        assert_eq!(partition_for(negative, 7), (h & 0x7fff_ffff) % 7);
    }
}
