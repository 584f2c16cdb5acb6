//! FindCoordinator (key 10), v0-v4: keel is one broker, so the coordinator of every group is
//! node 0 at the advertised address (v4 answers a batch of keys). Transactions are not
//! implemented: a transaction coordinator is refused with a non-retriable error, so that a
//! transactional client fails at once rather than retrying until its timeout.
//!
//! Clients also read this API's presence as a broker version: librdkafka enables LZ4 only
//! when FindCoordinator v0 is advertised (a broker-0.8.2 marker in its feature map).
//! The group coordinator itself is in [`crate::group`]; inside the broker, a group's requests
//! are routed to the shard that owns its partition of `__consumer_offsets`.

use kafka_protocol::{
    error::ResponseError,
    messages::{
        find_coordinator_response::Coordinator, BrokerId, FindCoordinatorRequest,
        FindCoordinatorResponse,
    },
    protocol::StrBytes,
};

use crate::broker::{Ctx, NODE_ID};

/// FindCoordinator key types.
const GROUP: i8 = 0;

/// Answers FindCoordinator.
pub async fn handle(
    ctx: &Ctx,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let (host, port) = ctx.broker.advertised();
    let host = StrBytes::from_string(host.to_string());
    let error = if req.key_type == GROUP {
        None
    } else {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| match error {
                None => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(NODE_ID))
                    .with_host(host.clone())
                    .with_port(port),
                Some(e) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(e.code()),
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match error {
        None => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(NODE_ID))
            .with_host(host)
            .with_port(port),
        Some(e) => FindCoordinatorResponse::default()
            .with_error_code(e.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}
