//! DeleteTopics (key 20), v1-v6: by name, or from v6 by name or topic id.

use futures::future::join_all;
use kafka_protocol::{
    error::ResponseError,
    messages::{
        delete_topics_response::DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse,
        TopicName,
    },
    protocol::StrBytes,
};
use keel_engine::EngineError;
use uuid::Uuid;

use crate::{broker::Ctx, error::error_code};

/// Answers DeleteTopics.
pub async fn handle(ctx: &Ctx, version: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let responses = join_all(
        targets
            .into_iter()
            .map(|(name, id)| delete_one(ctx, version, name, id)),
    )
    .await;
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn delete_one(
    ctx: &Ctx,
    version: i16,
    name: Option<TopicName>,
    id: Uuid,
) -> DeletableTopicResult {
    let catalog = ctx.shard.catalog();
    let meta = match &name {
        Some(n) => catalog.topics.get(n.as_str()),
        None => catalog.topics.values().find(|t| t.id == *id.as_bytes()),
    };
    let mut r = DeletableTopicResult::default().with_name(name.clone());
    if version >= 6 {
        r.topic_id = meta.map_or(id, |m| Uuid::from_bytes(m.id));
    }
    let Some(meta) = meta else {
        let error = if name.is_some() {
            ResponseError::UnknownTopicOrPartition
        } else {
            ResponseError::UnknownTopicId
        };
        return r.with_error_code(error.code());
    };
    if name.is_none() {
        r.name = Some(TopicName(StrBytes::from_string(meta.name.clone())));
    }
    if meta.name == crate::group::OFFSETS_TOPIC {
        // The group coordinator's own topic stays while the broker runs.
        return r.with_error_code(ResponseError::InvalidTopicException.code());
    }
    match ctx.shard.delete_topic(&meta.name).await {
        Ok(()) => {
            tracing::info!(topic = %meta.name, "deleted topic");
            r
        }
        Err(e) => failed(r, version, &e),
    }
}

fn failed(r: DeletableTopicResult, version: i16, e: &EngineError) -> DeletableTopicResult {
    let mut r = r.with_error_code(error_code(e));
    if version >= 5 {
        r.error_message = Some(StrBytes::from_string(e.to_string()));
    }
    r
}
