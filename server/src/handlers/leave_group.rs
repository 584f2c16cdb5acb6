//! LeaveGroup (key 13), v0-v5: members leave at once instead of waiting out their session;
//! v3+ names a batch of members, by member id or by static instance id.

use kafka_protocol::{
    messages::{leave_group_response::MemberResponse, LeaveGroupRequest, LeaveGroupResponse},
    protocol::StrBytes,
};

use crate::{broker::Ctx, group::on_coordinator};

/// Answers LeaveGroup.
pub async fn handle(ctx: &Ctx, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = req.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(ToString::to_string),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let gid = group_id.clone();
    let asked = members.clone();
    let (top, answers) = on_coordinator(ctx, &group_id, move |c| async move {
        c.leave(&gid, members).await
    })
    .await
    .unwrap_or_else(|e| {
        let answers = asked.into_iter().map(|(m, i)| (m, i, e.code())).collect();
        (e.code(), answers)
    });
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(top);
    }
    // v3+: the top-level error is for the group as a whole; members carry their own.
    let group_level = if answers.is_empty() { top } else { 0 };
    let members = answers
        .into_iter()
        .map(|(m, i, code)| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(m))
                .with_group_instance_id(i.map(StrBytes::from_string))
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default()
        .with_error_code(group_level)
        .with_members(members)
}
