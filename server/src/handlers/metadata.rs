//! Metadata (key 3), v0-v12: one broker (node 0, the advertised address) that leads every
//! partition, with replicas and ISR `[0]`; topics by name or (v10+) by id; auto-creation where
//! the broker and the request allow it.

use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::{
    error::ResponseError,
    messages::{
        metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        },
        BrokerId, MetadataRequest, MetadataResponse, TopicName,
    },
    protocol::StrBytes,
};
use keel_engine::{catalog::TopicMeta, EngineError, TopicOverrides};
use uuid::Uuid;

use crate::{
    broker::{Ctx, NODE_ID},
    error::error_code,
};

/// Kafka's internal topics, flagged `is_internal` when they exist.
const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// Every operation on a topic a client may be told it is allowed (no ACLs in keel): READ,
/// WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS as bits.
const TOPIC_OPERATIONS_ALL: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Answers Metadata.
pub async fn handle(ctx: &Ctx, version: i16, req: MetadataRequest) -> MetadataResponse {
    let allow_create =
        ctx.broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let ops = version >= 8 && req.include_topic_authorized_operations;
    let all_topics = match &req.topics {
        None => true,
        Some(list) => version == 0 && list.is_empty(),
    };
    let topics = if all_topics {
        ctx.shard
            .catalog()
            .topics
            .values()
            .map(|t| topic_entry(t, ops))
            .collect()
    } else {
        let wanted = req.topics.unwrap_or_default();
        join_all(wanted.into_iter().map(|t| async move {
            match t.name {
                Some(name) => by_name(ctx, name, allow_create, ops).await,
                None => by_id(ctx, t.topic_id, ops),
            }
        }))
        .await
    };
    let (host, port) = ctx.broker.advertised();
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(NODE_ID))
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(port)])
        .with_cluster_id(Some(StrBytes::from_string(
            ctx.broker.state.cluster_id().to_string(),
        )))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics)
}

async fn by_name(
    ctx: &Ctx,
    name: TopicName,
    allow_create: bool,
    ops: bool,
) -> MetadataResponseTopic {
    let found = if allow_create {
        ensure_topic(ctx, &name).await
    } else {
        ctx.shard
            .catalog()
            .topics
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| EngineError::UnknownTopicOrPartition(name.to_string()))
    };
    match found {
        Ok(meta) => topic_entry(&meta, ops),
        Err(e) => MetadataResponseTopic::default()
            .with_name(Some(name))
            .with_error_code(error_code(&e)),
    }
}

fn by_id(ctx: &Ctx, id: Uuid, ops: bool) -> MetadataResponseTopic {
    let catalog = ctx.shard.catalog();
    match catalog.topics.values().find(|t| t.id == *id.as_bytes()) {
        Some(meta) => topic_entry(meta, ops),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

/// The topic, created with the broker's defaults if it does not exist and auto-creation is on.
/// Two requests racing to create it both get the topic.
///
/// # Errors
/// The engine's, when the topic cannot be created (an invalid name, a limit).
pub async fn ensure_topic(ctx: &Ctx, name: &str) -> Result<Arc<TopicMeta>, EngineError> {
    if let Some(meta) = ctx.shard.catalog().topics.get(name) {
        return Ok(Arc::clone(meta));
    }
    if !ctx.broker.config.auto_create_topics {
        return Err(EngineError::UnknownTopicOrPartition(name.to_string()));
    }
    let partitions = ctx.broker.config.default_partitions;
    match ctx
        .shard
        .create_topic(name, partitions, TopicOverrides::default(), false)
        .await
    {
        Ok(meta) => {
            tracing::info!(topic = name, partitions, "auto-created topic");
            Ok(meta)
        }
        Err(EngineError::TopicAlreadyExists(_)) => ctx
            .shard
            .catalog()
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownTopicOrPartition(name.to_string())),
        Err(e) => Err(e),
    }
}

fn topic_entry(meta: &TopicMeta, ops: bool) -> MetadataResponseTopic {
    let partitions = meta
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    let mut topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
        .with_topic_id(Uuid::from_bytes(meta.id))
        .with_is_internal(INTERNAL_TOPICS.contains(&meta.name.as_str()))
        .with_partitions(partitions);
    if ops {
        topic.topic_authorized_operations = TOPIC_OPERATIONS_ALL;
    }
    topic
}
