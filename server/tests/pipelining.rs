//! A client may send several requests before reading: the answers come back in request order,
//! even when a slow one (a long poll) is followed by fast ones.

mod common;

use std::io::Write;

use common::{batch, fetch_request, produce_request, Broker, TestResult};
use kafka_protocol::messages::{ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest};

#[test]
fn pipelined_requests_are_answered_in_order() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    c.produce(9, "piped", 0, batch(&["a"])?)?;
    let mut frames = Vec::new();
    // A long poll that ends by its deadline, then requests that are quick on their own.
    frames.extend_from_slice(&c.frame(11, &fetch_request("piped", &[(0, 1)], 300))?);
    frames.extend_from_slice(&c.frame(3, &ApiVersionsRequest::default())?);
    frames.extend_from_slice(&c.frame(9, &produce_request(-1, "piped", 0, batch(&["b"])?))?);
    frames.extend_from_slice(&c.frame(12, &MetadataRequest::default().with_topics(None))?);
    c.stream.write_all(&frames)?;
    // Client::receive checks that each answer carries the next correlation id in order.
    let last = 5; // the produce above was request 1
    c.set_expected_correlation(last - 3);
    let fetched = c.receive::<FetchRequest>(11)?;
    assert_eq!(
        fetched.responses[0].partitions[0].high_watermark, 1,
        "before the produce"
    );
    c.set_expected_correlation(last - 2);
    assert_eq!(c.receive::<ApiVersionsRequest>(3)?.error_code, 0);
    c.set_expected_correlation(last - 1);
    let produced = c.receive::<ProduceRequest>(9)?;
    assert_eq!(produced.responses[0].partition_responses[0].base_offset, 1);
    c.set_expected_correlation(last);
    let meta = c.receive::<MetadataRequest>(12)?;
    // "piped", besides the internal `__consumer_offsets`.
    assert_eq!(meta.topics.iter().filter(|t| !t.is_internal).count(), 1);
    Ok(())
}
