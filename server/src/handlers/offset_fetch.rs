//! OffsetFetch (key 9), v1-v8: a group's committed offsets, -1 where none. v8 asks for
//! several groups at once; each is answered by its own coordinator. v9 (member epochs of the
//! new consumer protocol) is not served.

use kafka_protocol::{
    messages::{
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        },
        GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName,
    },
    protocol::StrBytes,
};

use crate::{
    broker::Ctx,
    group::{machine::Committed, on_coordinator},
};

type Found = Vec<(String, Vec<(i32, Option<Committed>)>)>;

/// Answers OffsetFetch.
pub async fn handle(ctx: &Ctx, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req.groups.into_iter().map(|g| {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let id = g.group_id.0.to_string();
            async move { (id.clone(), fetch(ctx, id, topics).await) }
        });
        let groups = futures::future::join_all(groups)
            .await
            .into_iter()
            .map(|(id, found)| group_v8(id, found))
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let (code, found) = match fetch(ctx, req.group_id.0.to_string(), topics).await {
        Ok(f) => (0, f),
        Err(code) => (code, Vec::new()),
    };
    let topics = found
        .into_iter()
        .map(|(t, ps)| {
            let partitions = ps
                .into_iter()
                .map(|(p, c)| {
                    let (offset, epoch, meta) = fields(c);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
                        .with_metadata(Some(StrBytes::from_string(meta)))
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(t)))
                .with_partitions(partitions)
        })
        .collect();
    let resp = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        resp.with_error_code(code)
    } else {
        resp
    }
}

async fn fetch(
    ctx: &Ctx,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Found, i16> {
    let gid = group_id.clone();
    on_coordinator(ctx, &group_id, move |c| async move {
        c.fetch_offsets(&gid, topics)
    })
    .await
    .unwrap_or_else(|e| Err(e.code()))
}

fn fields(c: Option<Committed>) -> (i64, i32, String) {
    c.map_or((-1, -1, String::new()), |c| {
        (c.offset, c.leader_epoch, c.metadata)
    })
}

fn group_v8(id: String, found: Result<Found, i16>) -> OffsetFetchResponseGroup {
    let (code, found) = match found {
        Ok(f) => (0, f),
        Err(code) => (code, Vec::new()),
    };
    let topics = found
        .into_iter()
        .map(|(t, ps)| {
            let partitions = ps
                .into_iter()
                .map(|(p, c)| {
                    let (offset, epoch, meta) = fields(c);
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(StrBytes::from_string(meta)))
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(StrBytes::from_string(t)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(id)))
        .with_topics(topics)
        .with_error_code(code)
}
