//! JoinGroup (key 11), v0-v9: a member joins (or rejoins) a group and waits for the
//! rebalance to complete. From v4 a member without an id first gets one with
//! MEMBER_ID_REQUIRED and joins again with it. v0 has no rebalance timeout: the session
//! timeout serves as both, as in Kafka. The coordinator is in [`crate::group`].

use kafka_protocol::{
    messages::{join_group_response::JoinGroupResponseMember, JoinGroupRequest, JoinGroupResponse},
    protocol::StrBytes,
};

use crate::{
    broker::Ctx,
    group::{coordinator::JoinReq, machine::JoinResult, on_coordinator},
};

/// Answers JoinGroup.
pub async fn handle(
    ctx: &Ctx,
    version: i16,
    client_id: String,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let join = JoinReq {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(ToString::to_string),
        client_id,
        client_host: ctx
            .peer
            .map_or_else(String::new, |p| format!("/{}", p.ip())),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let group_id = join.group_id.clone();
    let member_id = join.member_id.clone();
    let result = on_coordinator(ctx, &group_id, move |c| async move { c.join(join).await })
        .await
        .unwrap_or_else(|e| JoinResult::error(e, &member_id));
    response(version, result)
}

fn response(version: i16, r: JoinResult) -> JoinGroupResponse {
    let s = |v: String| StrBytes::from_string(v);
    let members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_group_instance_id(if version >= 5 { instance.map(s) } else { None })
                .with_metadata(metadata)
        })
        .collect();
    // v0-v6 carry a non-null protocol name; v7+ may say null.
    let protocol_name = match r.protocol_name {
        Some(p) => Some(s(p)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_type(if version >= 7 {
            r.protocol_type.map(s)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(s(r.leader))
        .with_member_id(s(r.member_id))
        .with_members(members)
}
