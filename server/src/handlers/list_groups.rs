//! ListGroups (key 16), v0-v5: every group of every shard's coordinator. v4 filters by
//! state, v5 by type (keel's groups are all of Kafka's "classic" type).

use kafka_protocol::{
    messages::{list_groups_response::ListedGroup, GroupId, ListGroupsRequest, ListGroupsResponse},
    protocol::StrBytes,
};

use crate::{broker::Ctx, group::on_every_coordinator};

/// The type of every keel group (KIP-848 names the old protocol "classic").
const GROUP_TYPE: &str = "classic";

/// Answers ListGroups.
pub async fn handle(ctx: &Ctx, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    let lists = on_every_coordinator(ctx, |c| async move { c.list() }).await;
    let wanted_state = |s: &str| {
        req.states_filter.is_empty() || req.states_filter.iter().any(|f| f.eq_ignore_ascii_case(s))
    };
    let wanted_type = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE));
    let mut groups: Vec<ListedGroup> = lists
        .into_iter()
        .flatten()
        .filter(|(_, _, state)| wanted_type && wanted_state(state))
        .map(|(id, protocol_type, state)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(protocol_type));
            let g = if version >= 4 {
                g.with_group_state(StrBytes::from_static_str(state))
            } else {
                g
            };
            if version >= 5 {
                g.with_group_type(StrBytes::from_static_str(GROUP_TYPE))
            } else {
                g
            }
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_groups(groups)
}
