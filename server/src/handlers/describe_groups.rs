//! DescribeGroups (key 15), v0-v5: state, protocol and members (with their metadata and
//! assignment) of each group asked for. A group that does not exist is "Dead", as in Kafka.

use kafka_protocol::{
    messages::{
        describe_groups_response::{DescribedGroup, DescribedGroupMember},
        DescribeGroupsRequest, DescribeGroupsResponse,
    },
    protocol::StrBytes,
};

use crate::{broker::Ctx, group::on_coordinator};

/// Every group operation a client may be told it is allowed (no ACLs in keel): READ,
/// DELETE, DESCRIBE as bits.
const GROUP_OPERATIONS_ALL: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Answers DescribeGroups.
pub async fn handle(ctx: &Ctx, version: i16, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let ops = req.include_authorized_operations;
    let groups = req.groups.into_iter().map(|g| async move {
        let id = g.0.to_string();
        let gid = id.clone();
        let described = on_coordinator(ctx, &id, move |c| async move { c.describe(&gid) })
            .await
            .unwrap_or_else(|e| (e.code(), "", String::new(), String::new(), Vec::new()));
        let (code, state, protocol_type, protocol, members) = described;
        let s = StrBytes::from_string;
        let members = members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(s(m.id))
                    .with_group_instance_id(if version >= 4 {
                        m.instance_id.map(s)
                    } else {
                        None
                    })
                    .with_client_id(s(m.client_id))
                    .with_client_host(s(m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            })
            .collect();
        let group = DescribedGroup::default()
            .with_error_code(code)
            .with_group_id(g)
            .with_group_state(StrBytes::from_static_str(state))
            .with_protocol_type(s(protocol_type))
            .with_protocol_data(s(protocol))
            .with_members(members);
        if version >= 3 {
            group.with_authorized_operations(if ops { GROUP_OPERATIONS_ALL } else { i32::MIN })
        } else {
            group
        }
    });
    DescribeGroupsResponse::default().with_groups(futures::future::join_all(groups).await)
}
