//! OffsetCommit (key 8), v2-v8: a group's consumed positions, appended to
//! `__consumer_offsets` and acknowledged once durable (per the fsync policy). A member of a
//! managed group must name the current generation; a group that does not use the
//! coordinator for membership commits with generation -1. v9 (the new consumer protocol's
//! member epochs) is not served.

use kafka_protocol::{
    messages::{
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        OffsetCommitRequest, OffsetCommitResponse, TopicName,
    },
    protocol::StrBytes,
};

use crate::{
    broker::Ctx,
    group::{coordinator::MemberRef, on_coordinator},
};

/// Answers OffsetCommit.
pub async fn handle(ctx: &Ctx, version: i16, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    let member = MemberRef {
        generation: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(ToString::to_string),
    };
    let topics: Vec<_> = req
        .topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let epoch = if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    };
                    let meta = p.committed_metadata.as_ref().map(ToString::to_string);
                    (p.partition_index, p.committed_offset, epoch, meta)
                })
                .collect();
            (t.name.0.to_string(), parts)
        })
        .collect();
    let asked = topics.clone();
    let gid = group_id.clone();
    let answers = on_coordinator(ctx, &group_id, move |c| async move {
        c.commit(&gid, &member, topics).await
    })
    .await
    .unwrap_or_else(|e| {
        asked
            .iter()
            .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (p.0, e.code())).collect()))
            .collect()
    });
    let topics = answers
        .into_iter()
        .map(|(t, ps)| {
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(t)))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, code)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
