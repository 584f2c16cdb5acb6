//! DescribeConfigs (key 32), v1-v4: a topic's configs with their real values and sources
//! (DYNAMIC_TOPIC_CONFIG where the topic overrides the broker, DEFAULT_CONFIG where not), and
//! the broker's own settings (resource name "0", or "" for the defaults).

use kafka_protocol::{
    error::ResponseError,
    messages::{
        describe_configs_request::DescribeConfigsResource,
        describe_configs_response::{
            DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
        },
        DescribeConfigsRequest, DescribeConfigsResponse,
    },
    protocol::StrBytes,
};

use super::topic_configs::{describe, kind, source, ConfigValue};
use crate::broker::{Ctx, NODE_ID};

/// Kafka's resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Answers DescribeConfigs.
pub async fn handle(
    ctx: &Ctx,
    version: i16,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let synonyms = req.include_synonyms;
    let results = req
        .resources
        .into_iter()
        .map(|r| describe_one(ctx, version, r, synonyms))
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn describe_one(
    ctx: &Ctx,
    version: i16,
    r: DescribeConfigsResource,
    synonyms: bool,
) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(r.resource_type)
        .with_resource_name(r.resource_name.clone());
    let fail = |e: ResponseError, msg: String| {
        result
            .clone()
            .with_error_code(e.code())
            .with_error_message(Some(StrBytes::from_string(msg)))
    };
    let values = match r.resource_type {
        TOPIC => {
            let catalog = ctx.shard.catalog();
            let Some(meta) = catalog.topics.get(r.resource_name.as_str()) else {
                return fail(
                    ResponseError::UnknownTopicOrPartition,
                    format!("no topic {}", r.resource_name),
                );
            };
            describe(
                &meta.overrides,
                &ctx.shard.config().topic_defaults,
                ctx.broker.config.batch_bytes_max,
            )
        }
        BROKER if r.resource_name.is_empty() || *r.resource_name == *NODE_ID.to_string() => {
            broker_configs(ctx)
        }
        BROKER => {
            return fail(
                ResponseError::InvalidRequest,
                format!("no broker {} (keel is broker 0)", r.resource_name),
            )
        }
        other => {
            return fail(
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            )
        }
    };
    let wanted = r.configuration_keys.filter(|k| !k.is_empty());
    let configs = values
        .into_iter()
        .filter(|c| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|k| **k == *c.name))
        })
        .map(|c| entry(version, c, synonyms))
        .collect();
    result.with_configs(configs)
}

fn entry(version: i16, c: ConfigValue, synonyms: bool) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(c.name))
        .with_value(Some(StrBytes::from_string(c.value.clone())))
        .with_read_only(c.read_only)
        .with_config_source(c.source);
    if synonyms {
        let mut list = vec![DescribeConfigsSynonym::default()
            .with_name(StrBytes::from_static_str(c.name))
            .with_value(Some(StrBytes::from_string(c.value)))
            .with_source(c.source)];
        if c.source == source::DYNAMIC_TOPIC_CONFIG {
            list.push(
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_static_str(c.name))
                    .with_value(Some(StrBytes::from_string(c.default)))
                    .with_source(source::DEFAULT_CONFIG),
            );
        }
        e.synonyms = list;
    }
    if version >= 3 {
        e.config_type = c.kind;
    }
    e
}

fn broker_configs(ctx: &Ctx) -> Vec<ConfigValue> {
    let c = &ctx.broker.config;
    let table: [(&'static str, i8, String); 15] = [
        ("broker.id", kind::INT, NODE_ID.to_string()),
        ("log.dirs", kind::STRING, c.data_dir.display().to_string()),
        (
            "num.partitions",
            kind::INT,
            c.default_partitions.to_string(),
        ),
        (
            "auto.create.topics.enable",
            kind::BOOLEAN,
            c.auto_create_topics.to_string(),
        ),
        ("log.retention.ms", kind::LONG, c.retention_ms.to_string()),
        (
            "log.retention.bytes",
            kind::LONG,
            c.retention_bytes.to_string(),
        ),
        (
            "log.segment.bytes",
            kind::INT,
            c.segment_bytes_max.to_string(),
        ),
        ("log.roll.ms", kind::LONG, c.segment_ms.to_string()),
        (
            "log.index.interval.bytes",
            kind::INT,
            c.index_interval_bytes.to_string(),
        ),
        (
            "message.max.bytes",
            kind::INT,
            c.batch_bytes_max.to_string(),
        ),
        (
            "socket.request.max.bytes",
            kind::INT,
            c.request_bytes_max.to_string(),
        ),
        ("default.replication.factor", kind::INT, "1".into()),
        ("offsets.topic.replication.factor", kind::INT, "1".into()),
        ("min.insync.replicas", kind::INT, "1".into()),
        ("keel.fsync", kind::STRING, c.fsync.to_string()),
    ];
    table
        .into_iter()
        .map(|(name, kind, value)| ConfigValue {
            name,
            default: value.clone(),
            value,
            source: source::STATIC_BROKER_CONFIG,
            read_only: true,
            kind,
        })
        .collect()
}
