//! DeleteGroups (key 42), v0-v2: an empty group and its committed offsets are deleted
//! (tombstones in `__consumer_offsets`). A group with members is NON_EMPTY_GROUP, an
//! unknown one GROUP_ID_NOT_FOUND.

use kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult, DeleteGroupsRequest, DeleteGroupsResponse,
};

use crate::{broker::Ctx, group::on_coordinator};

/// Answers DeleteGroups.
pub async fn handle(ctx: &Ctx, _version: i16, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = req.groups_names.into_iter().map(|g| async move {
        let id = g.0.to_string();
        let gid = id.clone();
        let code = on_coordinator(ctx, &id, move |c| async move { c.delete(&gid).await })
            .await
            .unwrap_or_else(|e| e.code());
        DeletableGroupResult::default()
            .with_group_id(g)
            .with_error_code(code)
    });
    DeleteGroupsResponse::default().with_results(futures::future::join_all(results).await)
}
