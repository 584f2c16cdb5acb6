//! CreateTopics (key 19), v2-v7: partition count (-1: the broker default), replication factor
//! 1 or -1 (one broker), the configs of [`super::topic_configs`], validate-only.
//!
//! From v5 the answer carries the topic's partition count, replication factor and every config
//! with its value and source, as Kafka's does.

use std::collections::HashMap;

use futures::future::join_all;
use kafka_protocol::{
    error::ResponseError,
    messages::{
        create_topics_request::CreatableTopic,
        create_topics_response::{CreatableTopicConfigs, CreatableTopicResult},
        CreateTopicsRequest, CreateTopicsResponse,
    },
    protocol::StrBytes,
};
use keel_engine::catalog::TopicMeta;
use uuid::Uuid;

use super::topic_configs::{describe, parse_overrides};
use crate::{
    broker::{Ctx, NODE_ID},
    error::response_error,
};

/// Answers CreateTopics.
pub async fn handle(ctx: &Ctx, version: i16, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut seen: HashMap<StrBytes, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.clone()).or_default() += 1;
    }
    let validate_only = req.validate_only;
    let topics = join_all(req.topics.into_iter().map(|t| {
        let duplicate = seen.get(&t.name.0).is_some_and(|n| *n > 1);
        async move {
            if duplicate {
                return failed(
                    t,
                    ResponseError::InvalidRequest,
                    "topic named twice in one request".into(),
                );
            }
            create_one(ctx, version, t, validate_only).await
        }
    }))
    .await;
    CreateTopicsResponse::default().with_topics(topics)
}

async fn create_one(
    ctx: &Ctx,
    version: i16,
    t: CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let config = &ctx.broker.config;
    if !matches!(t.replication_factor, -1 | 1) {
        let msg = format!(
            "replication factor {} is larger than the 1 broker",
            t.replication_factor
        );
        return failed(t, ResponseError::InvalidReplicationFactor, msg);
    }
    let partitions = if t.assignments.is_empty() {
        if t.num_partitions == -1 {
            config.default_partitions
        } else {
            t.num_partitions
        }
    } else {
        let only_here = t
            .assignments
            .iter()
            .all(|a| a.broker_ids.iter().all(|b| b.0 == NODE_ID) && a.broker_ids.len() == 1);
        if !only_here || t.num_partitions != -1 || t.replication_factor != -1 {
            let msg = "assignments must put each partition on broker 0 alone, with \
                       num_partitions and replication_factor -1"
                .to_string();
            return failed(t, ResponseError::InvalidReplicaAssignment, msg);
        }
        i32::try_from(t.assignments.len()).unwrap_or(i32::MAX)
    };
    let pairs = t
        .configs
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_deref()));
    let overrides = match parse_overrides(pairs, config.batch_bytes_max) {
        Ok(o) => o,
        Err(msg) => return failed(t, ResponseError::InvalidConfig, msg),
    };
    match ctx
        .shard
        .create_topic(&t.name, partitions, overrides, validate_only)
        .await
    {
        Ok(meta) => {
            if !validate_only {
                tracing::info!(topic = t.name.as_str(), partitions, "created topic");
            }
            created(ctx, version, t, &meta)
        }
        Err(e) => failed(t, response_error(&e), e.to_string()),
    }
}

fn created(ctx: &Ctx, version: i16, t: CreatableTopic, meta: &TopicMeta) -> CreatableTopicResult {
    let mut r = CreatableTopicResult::default()
        .with_name(t.name)
        .with_topic_id(Uuid::from_bytes(meta.id));
    if version >= 5 {
        let config = &ctx.broker.config;
        let configs = describe(
            &meta.overrides,
            &ctx.shard.config().topic_defaults,
            config.batch_bytes_max,
        )
        .into_iter()
        .map(|c| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(c.name))
                .with_value(Some(StrBytes::from_string(c.value)))
                .with_read_only(c.read_only)
                .with_config_source(c.source)
        })
        .collect();
        r = r
            .with_num_partitions(i32::try_from(meta.partitions.len()).unwrap_or(i32::MAX))
            .with_replication_factor(1)
            .with_configs(Some(configs));
    }
    r
}

fn failed(t: CreatableTopic, error: ResponseError, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(t.name)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}
