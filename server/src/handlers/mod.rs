//! One file per Kafka API. [`APIS`] is the single list of what keel serves and at which
//! versions: ApiVersions advertises exactly it, the codec refuses anything outside it, and
//! [`handle`] routes by it. Adding an API is a line in each of `APIS` and `handle`, and a file.
//!
//! A handler takes the decoded request and its version and returns the response; the versions
//! it gets are always within its `APIS` range. Per-partition work inside a request runs
//! concurrently (`join_all`), and the answers keep the order of the request.

use std::future::Future;

use bytes::Bytes;
use kafka_protocol::{
    messages::ApiKey,
    protocol::{Encodable, VersionRange},
};
use keel_engine::rt::BudgetPermit;

use crate::{
    broker::Ctx,
    codec::{encode_response, RawRequest},
    error::ConnectionError,
};

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod fetch_response;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;
pub mod topic_configs;

const fn range(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
}

/// Every API keel serves, with the versions it handles.
///
/// Produce v0-v2 exist for librdkafka's feature check (see [`produce`]). Produce stops at v11
/// and Fetch at v12 because later versions change what a request names a
/// topic by or what a response must carry for features keel lacks; every listed client
/// negotiates down to these.
pub const APIS: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, range(0, 11)),
    (ApiKey::Fetch, range(4, 12)),
    (ApiKey::ListOffsets, range(1, 7)),
    (ApiKey::Metadata, range(0, 12)),
    (ApiKey::ApiVersions, range(0, 3)),
    (ApiKey::CreateTopics, range(2, 7)),
    (ApiKey::DeleteTopics, range(1, 6)),
    (ApiKey::InitProducerId, range(0, 4)),
    (ApiKey::DescribeConfigs, range(1, 4)),
    (ApiKey::CreatePartitions, range(0, 3)),
    (ApiKey::DescribeCluster, range(0, 1)),
    (ApiKey::FindCoordinator, range(0, 4)),
    (ApiKey::JoinGroup, range(0, 9)),
    (ApiKey::SyncGroup, range(0, 5)),
    (ApiKey::Heartbeat, range(0, 4)),
    (ApiKey::LeaveGroup, range(0, 5)),
    (ApiKey::OffsetCommit, range(2, 8)),
    (ApiKey::OffsetFetch, range(1, 8)),
    (ApiKey::ListGroups, range(0, 5)),
    (ApiKey::DescribeGroups, range(0, 5)),
    (ApiKey::DeleteGroups, range(0, 2)),
    (ApiKey::OffsetDelete, range(0, 0)),
];

/// The versions of `api` keel serves, if any.
#[must_use]
pub fn supported(api: ApiKey) -> Option<VersionRange> {
    APIS.iter().find(|(k, _)| *k == api).map(|(_, r)| *r)
}

/// An encoded response frame, ready to write.
#[derive(Debug)]
pub struct Answer {
    /// The chunks to write in order: one, except for Fetch, whose large batches go out
    /// uncopied.
    pub chunks: Vec<Bytes>,
    /// The shard's response memory this answer holds until it is written (Fetch only).
    pub memory: Option<BudgetPermit>,
}

impl From<Bytes> for Answer {
    fn from(frame: Bytes) -> Self {
        Answer {
            chunks: vec![frame],
            memory: None,
        }
    }
}

/// Runs one request; its answer, or `None` where Kafka sends none (a produce with acks=0).
///
/// # Errors
/// A body that does not decode, a response that does not encode, or a failed acks=0 produce:
/// each closes the connection.
pub async fn handle(ctx: &Ctx, req: &RawRequest) -> Result<Option<Answer>, ConnectionError> {
    let v = req.version();
    match req.api {
        ApiKey::Produce if v < 3 => Ok(produce::handle_legacy(ctx, req).await?.map(Answer::from)),
        ApiKey::Produce => produce::handle(ctx, v, req.decode_body()?, None)
            .await?
            .map(|r| encode(req, &r).map(Answer::from))
            .transpose(),
        ApiKey::Fetch => {
            let fetched = fetch::handle(ctx, v, req.decode_body()?).await;
            let chunks = fetch_response::encode(
                v,
                req.header.correlation_id,
                &fetched.response,
                &fetched.batches,
            )?;
            Ok(Some(Answer {
                chunks,
                memory: fetched.memory,
            }))
        }
        ApiKey::ListOffsets => answer(req, list_offsets::handle(ctx, v, req.decode_body()?)).await,
        ApiKey::Metadata => answer(req, metadata::handle(ctx, v, req.decode_body()?)).await,
        ApiKey::ApiVersions => answer(req, api_versions::handle(v, req.decode_body()?)).await,
        ApiKey::CreateTopics => {
            answer(req, create_topics::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::DeleteTopics => {
            answer(req, delete_topics::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::InitProducerId => {
            answer(req, init_producer_id::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::DescribeConfigs => {
            answer(req, describe_configs::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::CreatePartitions => {
            answer(req, create_partitions::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::DescribeCluster => {
            answer(req, describe_cluster::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::FindCoordinator => {
            answer(req, find_coordinator::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::JoinGroup => {
            let client_id = req
                .header
                .client_id
                .as_deref()
                .unwrap_or_default()
                .to_string();
            answer(
                req,
                join_group::handle(ctx, v, client_id, req.decode_body()?),
            )
            .await
        }
        ApiKey::SyncGroup => answer(req, sync_group::handle(ctx, v, req.decode_body()?)).await,
        ApiKey::Heartbeat => answer(req, heartbeat::handle(ctx, v, req.decode_body()?)).await,
        ApiKey::LeaveGroup => answer(req, leave_group::handle(ctx, v, req.decode_body()?)).await,
        ApiKey::OffsetCommit => {
            answer(req, offset_commit::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::OffsetFetch => answer(req, offset_fetch::handle(ctx, v, req.decode_body()?)).await,
        ApiKey::ListGroups => answer(req, list_groups::handle(ctx, v, req.decode_body()?)).await,
        ApiKey::DescribeGroups => {
            answer(req, describe_groups::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::DeleteGroups => {
            answer(req, delete_groups::handle(ctx, v, req.decode_body()?)).await
        }
        ApiKey::OffsetDelete => {
            answer(req, offset_delete::handle(ctx, v, req.decode_body()?)).await
        }
        other => Err(ConnectionError::UnknownApi(other as i16)),
    }
}

/// Whether the connection may start on the requests after `req` before `req` is answered:
/// Produce v3 and later, once [`handle_pipelined`] says its batches are queued. Everything
/// else runs alone, after the requests before it are answered.
#[must_use]
pub fn pipelines(req: &RawRequest) -> bool {
    req.api == ApiKey::Produce && req.version() >= 3
}

/// Runs a request that [`pipelines`]; `enqueued` is told once what follows it may start.
///
/// # Errors
/// As [`handle`].
pub async fn handle_pipelined(
    ctx: &Ctx,
    req: &RawRequest,
    enqueued: futures::channel::oneshot::Sender<()>,
) -> Result<Option<Answer>, ConnectionError> {
    debug_assert!(pipelines(req));
    produce::handle(ctx, req.version(), req.decode_body()?, Some(enqueued))
        .await?
        .map(|r| encode(req, &r).map(Answer::from))
        .transpose()
}

async fn answer<R: Encodable>(
    req: &RawRequest,
    response: impl Future<Output = R>,
) -> Result<Option<Answer>, ConnectionError> {
    encode(req, &response.await).map(|b| Some(Answer::from(b)))
}

fn encode<R: Encodable>(req: &RawRequest, response: &R) -> Result<Bytes, ConnectionError> {
    encode_response(req.api, req.version(), req.header.correlation_id, response)
}
