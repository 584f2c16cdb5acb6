//! ApiVersions: the advertised ranges, every version of the request, and the v0 fallback with
//! UNSUPPORTED_VERSION for a version keel does not know.

mod common;

use std::io::Write;

use bytes::{Buf, BufMut, BytesMut};
use common::{Broker, TestResult};
use kafka_protocol::{
    messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse},
    protocol::{Decodable, StrBytes},
};

fn range(resp: &ApiVersionsResponse, key: ApiKey) -> Option<(i16, i16)> {
    resp.api_keys
        .iter()
        .find(|k| k.api_key == key as i16)
        .map(|k| (k.min_version, k.max_version))
}

#[test]
fn every_version_answers_with_the_supported_apis() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut client = broker.client()?;
    for version in 0..=3 {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("keel-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        let resp = client.send(version, &req)?;
        assert_eq!(resp.error_code, 0, "v{version}");
        let produce = range(&resp, ApiKey::Produce).ok_or("no Produce")?;
        // librdkafka compresses with gzip or snappy only if Produce v0 is advertised.
        assert!(produce.0 == 0 && produce.1 >= 7, "produce {produce:?}");
        let fetch = range(&resp, ApiKey::Fetch).ok_or("no Fetch")?;
        assert!(fetch.0 <= 4 && fetch.1 >= 11, "fetch {fetch:?}");
        for key in [
            ApiKey::Metadata,
            ApiKey::ListOffsets,
            ApiKey::ApiVersions,
            ApiKey::CreateTopics,
            ApiKey::DeleteTopics,
            ApiKey::InitProducerId,
            // librdkafka enables LZ4 only when FindCoordinator is advertised.
            ApiKey::FindCoordinator,
        ] {
            assert!(range(&resp, key).is_some(), "{key:?} not advertised");
        }
        // Only what is implemented is advertised: no group APIs yet, no transactions.
        assert!(range(&resp, ApiKey::EndTxn).is_none());
    }
    Ok(())
}

#[test]
fn unknown_version_gets_a_v0_answer_with_unsupported_version() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut client = broker.client()?;
    // An ApiVersions v99 request, header v2 (flexible): key, version, correlation id, client
    // id, empty tagged fields; then some body keel cannot know.
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::ApiVersions as i16);
    body.put_i16(99);
    body.put_i32(42);
    body.put_i16(-1);
    body.put_u8(0);
    body.put_slice(&[1, 2, 3, 4]);
    let mut frame = BytesMut::new();
    frame.put_u32(u32::try_from(body.len())?);
    frame.put_slice(&body);
    client.stream.write_all(&frame)?;
    let mut resp = client.read_frame()?;
    // Response header v0: the correlation id alone.
    assert_eq!(resp.get_i32(), 42);
    let v0 = ApiVersionsResponse::decode(&mut resp, 0)?;
    assert_eq!(v0.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(range(&v0, ApiKey::ApiVersions).is_some_and(|(_, max)| max >= 3));
    // The connection stays usable: the client retries with a version both know.
    let resp = client.send(3, &ApiVersionsRequest::default())?;
    assert_eq!(resp.error_code, 0);
    Ok(())
}
