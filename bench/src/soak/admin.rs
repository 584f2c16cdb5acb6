//! The admin load: every `period_ms` one cycle on its own connection. Each request's
//! latency goes into the admin histogram of the interval; a failed request ends the cycle,
//! counts as an error, and the next cycle starts on a new connection.
//!
//! ```text
//!   CreateTopics soak-admin-<n>   Produce `messages` to each partition (acks=all)
//!   ListOffsets (ends = messages)  Metadata (all topics; the new one is there)
//!   DescribeConfigs (the soak topic and the new one)   DescribeGroups (the soak's group)
//!   DeleteTopics soak-admin-<n>
//! ```

use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest, GroupId,
    MetadataRequest, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use super::load::LoadCtx;
use crate::kafka::client::{topic_name, Connection};
use crate::kafka::records::{encode_batch, PendingMessage};

/// Prefix of the admin load's topics.
pub const TOPIC_PREFIX: &str = "soak-admin-";

/// DeleteTopics v6 names topics by id as well; v5 by name is enough here.
const DELETE_TOPICS_MAX: i16 = 5;
const DESCRIBE_CONFIGS_MAX: i16 = 4;
const DESCRIBE_GROUPS_MAX: i16 = 5;

/// DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

/// Bytes of each message the admin load produces.
const MESSAGE_BYTES: usize = 256;

/// Runs admin cycles until the soak stops.
pub fn admin_loop(ctx: &LoadCtx) {
    let period = Duration::from_millis(ctx.config.admin.period_ms);
    let mut connection: Option<Connection> = None;
    let mut next = Instant::now() + period;
    for cycle in 0u64.. {
        if !ctx.sleep_until(next) {
            return;
        }
        next += period;
        let result = match connection.as_mut() {
            Some(connection) => one_cycle(ctx, connection, cycle),
            None => Connection::connect(ctx.bootstrap, Duration::from_secs(5)).and_then(|mut c| {
                let result = one_cycle(ctx, &mut c, cycle);
                connection = Some(c);
                result
            }),
        };
        match result {
            Ok(()) => ctx.admin(|a| a.cycles += 1),
            Err(error) => {
                ctx.admin_error(&error);
                connection = None;
            }
        }
    }
}

/// Times one request: runs `call`, and records its latency when it was answered.
fn timed<T>(ctx: &LoadCtx, call: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let started = Instant::now();
    let answer = call()?;
    ctx.admin_answered(started.elapsed());
    Ok(answer)
}

fn one_cycle(ctx: &LoadCtx, connection: &mut Connection, cycle: u64) -> anyhow::Result<()> {
    let settings = &ctx.config.admin;
    let topic = format!("{TOPIC_PREFIX}{cycle}");
    let partitions: Vec<i32> = (0..settings.partitions).collect();
    timed(ctx, || connection.create_topic(&topic, settings.partitions))?;
    ctx.admin(|a| a.topics_created += 1);
    timed(ctx, || {
        produce(connection, &topic, &partitions, settings.messages)
    })?;
    ctx.admin(|a| a.produces += 1);
    let ends = timed(ctx, || connection.end_offsets(&topic, &partitions))?;
    anyhow::ensure!(
        ends.iter().all(|&end| end == i64::from(settings.messages)),
        "{topic}: end offsets {ends:?} after {} messages each",
        settings.messages
    );
    ctx.admin(|a| a.list_offsets += 1);
    let metadata = timed(ctx, || {
        connection.call(
            &MetadataRequest::default().with_topics(None),
            connection.versions.metadata,
        )
    })?;
    anyhow::ensure!(
        metadata
            .topics
            .iter()
            .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)),
        "Metadata does not list {topic}"
    );
    ctx.admin(|a| a.metadata += 1);
    timed(ctx, || describe_configs(connection, &[&ctx.topic, &topic]))?;
    ctx.admin(|a| a.describe_configs += 1);
    timed(ctx, || describe_group(connection, &ctx.config.groups.group))?;
    ctx.admin(|a| a.describe_groups += 1);
    timed(ctx, || delete_topic(connection, &topic))?;
    ctx.admin(|a| a.topics_deleted += 1);
    Ok(())
}

/// One acks=all Produce of `messages` messages to each of `partitions`.
fn produce(
    connection: &mut Connection,
    topic: &str,
    partitions: &[i32],
    messages: u32,
) -> anyhow::Result<()> {
    let pending: Vec<PendingMessage> = (0..messages)
        .map(|i| PendingMessage {
            intended_ns: u64::from(i),
            key: None,
        })
        .collect();
    let filler = vec![b'a'; MESSAGE_BYTES];
    let mut data = Vec::with_capacity(partitions.len());
    for &partition in partitions {
        let batch = encode_batch(&pending, 0, MESSAGE_BYTES, &filler, Compression::None, 0)?;
        data.push(
            PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch)),
        );
    }
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(data)]);
    let response = connection.call(&request, connection.versions.produce)?;
    for answer in response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
    {
        anyhow::ensure!(
            answer.error_code == 0,
            "produce to {topic}-{}: error {}",
            answer.index,
            answer.error_code
        );
    }
    Ok(())
}

fn describe_configs(connection: &mut Connection, topics: &[&str]) -> anyhow::Result<()> {
    let version = connection.version(ApiKey::DescribeConfigs, DESCRIBE_CONFIGS_MAX)?;
    let request = DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|t| {
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string((*t).to_owned()))
            })
            .collect(),
    );
    let response = connection.call(&request, version)?;
    anyhow::ensure!(
        response.results.len() == topics.len(),
        "DescribeConfigs: {} results for {} topics",
        response.results.len(),
        topics.len()
    );
    for result in &response.results {
        anyhow::ensure!(
            result.error_code == 0 && !result.configs.is_empty(),
            "DescribeConfigs {}: error {}, {} configs",
            result.resource_name.as_str(),
            result.error_code,
            result.configs.len()
        );
    }
    Ok(())
}

fn describe_group(connection: &mut Connection, group: &str) -> anyhow::Result<()> {
    let version = connection.version(ApiKey::DescribeGroups, DESCRIBE_GROUPS_MAX)?;
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
    let response = connection.call(&request, version)?;
    for described in &response.groups {
        anyhow::ensure!(
            described.error_code == 0,
            "DescribeGroups {}: error {}",
            described.group_id.0.as_str(),
            described.error_code
        );
    }
    Ok(())
}

fn delete_topic(connection: &mut Connection, topic: &str) -> anyhow::Result<()> {
    let version = connection.version(ApiKey::DeleteTopics, DELETE_TOPICS_MAX)?;
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name(topic)])
        .with_timeout_ms(30_000);
    let response = connection.call(&request, version)?;
    let result = response
        .responses
        .first()
        .ok_or_else(|| anyhow::anyhow!("DeleteTopics {topic}: no result"))?;
    anyhow::ensure!(
        result.error_code == 0,
        "DeleteTopics {topic}: error {}",
        result.error_code
    );
    Ok(())
}
