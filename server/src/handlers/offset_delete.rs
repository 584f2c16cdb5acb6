//! OffsetDelete (key 47), v0: deletes some committed offsets of a group. Partitions of a
//! topic the group's members subscribe to are GROUP_SUBSCRIBED_TO_TOPIC while it has members.

use kafka_protocol::{
    messages::{
        offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic},
        OffsetDeleteRequest, OffsetDeleteResponse, TopicName,
    },
    protocol::StrBytes,
};

use crate::{broker::Ctx, group::on_coordinator};

/// Answers OffsetDelete.
pub async fn handle(ctx: &Ctx, _version: i16, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.to_string();
    let topics: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            let ps = t.partitions.iter().map(|p| p.partition_index).collect();
            (t.name.0.to_string(), ps)
        })
        .collect();
    let gid = group_id.clone();
    let (code, answers) = on_coordinator(ctx, &group_id, move |c| async move {
        c.delete_offsets(&gid, topics).await
    })
    .await
    .unwrap_or_else(|e| (e.code(), Vec::new()));
    let topics = answers
        .into_iter()
        .map(|(t, ps)| {
            OffsetDeleteResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(t)))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, c)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(c)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default()
        .with_error_code(code)
        .with_topics(topics)
}
