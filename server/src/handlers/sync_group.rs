//! SyncGroup (key 14), v0-v5: the leader hands in the assignment it computed; every member
//! gets its own part once the leader's is persisted in `__consumer_offsets`.

use kafka_protocol::{
    messages::{SyncGroupRequest, SyncGroupResponse},
    protocol::StrBytes,
};

use crate::{
    broker::Ctx,
    group::{coordinator::SyncReq, machine::SyncResult, on_coordinator},
};

/// Answers SyncGroup.
pub async fn handle(ctx: &Ctx, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    let sync = SyncReq {
        group_id: req.group_id.0.to_string(),
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(ToString::to_string),
        protocol_type: req.protocol_type.as_ref().map(ToString::to_string),
        protocol_name: req.protocol_name.as_ref().map(ToString::to_string),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let group_id = sync.group_id.clone();
    let r = on_coordinator(ctx, &group_id, move |c| async move { c.sync(sync).await })
        .await
        .unwrap_or_else(SyncResult::error);
    let s = |v: Option<String>| {
        if version >= 5 {
            v.map(StrBytes::from_string)
        } else {
            None
        }
    };
    SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_protocol_type(s(r.protocol_type))
        .with_protocol_name(s(r.protocol_name))
        .with_assignment(r.assignment)
}
