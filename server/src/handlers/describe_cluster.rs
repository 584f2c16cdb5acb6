//! DescribeCluster (key 60), v0-v1: the cluster id, controller 0 and the one broker.

use kafka_protocol::{
    messages::{
        describe_cluster_response::DescribeClusterBroker, BrokerId, DescribeClusterRequest,
        DescribeClusterResponse,
    },
    protocol::StrBytes,
};

use crate::broker::{Ctx, NODE_ID};

/// Answers DescribeCluster.
pub async fn handle(
    ctx: &Ctx,
    _version: i16,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let (host, port) = ctx.broker.advertised();
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(
            ctx.broker.state.cluster_id().to_string(),
        ))
        .with_controller_id(BrokerId(NODE_ID))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(NODE_ID))
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(port)])
}
