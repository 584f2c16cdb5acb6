//! ApiVersions (key 18), v0-v3: what keel serves, straight from [`super::APIS`].

use kafka_protocol::{
    error::ResponseError,
    messages::{api_versions_response::ApiVersion, ApiVersionsRequest, ApiVersionsResponse},
};

use super::APIS;

/// Answers ApiVersions.
pub async fn handle(_version: i16, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The answer to an ApiVersions request of a version keel does not know, encoded as v0: the
/// error and the supported ranges, so that the client retries with one of them.
#[must_use]
pub fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}

fn api_keys() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|(key, range)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect()
}
