//! Heartbeat (key 12), v0-v4: a member says it is alive, and learns whether a rebalance
//! started (REBALANCE_IN_PROGRESS) or it fell out of the group.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::{
    broker::Ctx,
    group::{coordinator::MemberRef, on_coordinator},
};

/// Answers Heartbeat.
pub async fn handle(ctx: &Ctx, _version: i16, req: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = req.group_id.0.to_string();
    let member = MemberRef {
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(ToString::to_string),
    };
    let gid = group_id.clone();
    let code = on_coordinator(ctx, &group_id, move |c| async move {
        c.heartbeat(&gid, &member)
    })
    .await
    .unwrap_or_else(|e| e.code());
    HeartbeatResponse::default().with_error_code(code)
}
