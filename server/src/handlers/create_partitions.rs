//! CreatePartitions (key 37), v0-v3: grow a topic to a new total, validate-only. Manual
//! assignments are accepted only when they place every new partition on broker 0 alone.

use futures::future::join_all;
use kafka_protocol::{
    error::ResponseError,
    messages::{
        create_partitions_request::CreatePartitionsTopic,
        create_partitions_response::CreatePartitionsTopicResult, CreatePartitionsRequest,
        CreatePartitionsResponse,
    },
    protocol::StrBytes,
};

use crate::{
    broker::{Ctx, NODE_ID},
    error::response_error,
};

/// Answers CreatePartitions.
pub async fn handle(
    ctx: &Ctx,
    _version: i16,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let validate_only = req.validate_only;
    let results = join_all(
        req.topics
            .into_iter()
            .map(|t| grow_one(ctx, t, validate_only)),
    )
    .await;
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow_one(
    ctx: &Ctx,
    t: CreatePartitionsTopic,
    validate_only: bool,
) -> CreatePartitionsTopicResult {
    let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
    let only_here = t
        .assignments
        .iter()
        .flatten()
        .all(|a| a.broker_ids.len() == 1 && a.broker_ids.iter().all(|b| b.0 == NODE_ID));
    if !only_here {
        return result
            .with_error_code(ResponseError::InvalidReplicaAssignment.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "keel has one broker (0): each partition goes on it alone",
            )));
    }
    match ctx
        .shard
        .create_partitions(&t.name, t.count, validate_only)
        .await
    {
        Ok(()) => {
            if !validate_only {
                tracing::info!(topic = t.name.as_str(), partitions = t.count, "grew topic");
            }
            result
        }
        Err(e) => result
            .with_error_code(response_error(&e).code())
            .with_error_message(Some(StrBytes::from_string(e.to_string()))),
    }
}
