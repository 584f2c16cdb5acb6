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

/// Pipelined produces overlap (each starts once the one before it has queued its batches), so
/// they must still land in request order: an idempotent producer's sequence runs on across
/// 40 requests sent at once over 4 partitions (on both shards), with a Metadata and a Fetch
/// in between that run alone; every answer is in order and clean, and the log holds each
/// batch once, in order.
#[test]
fn pipelined_produces_keep_request_order_per_partition() -> TestResult {
    use common::{idempotent_batch, values};
    use kafka_protocol::messages::InitProducerIdRequest;
    let broker = Broker::start(&["--shards", "2"])?;
    let mut c = broker.client()?;
    c.create_topic("ordered", 4)?;
    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let pid = c.send(4, &init)?.producer_id.0;
    let first = 3; // create_topic and init were requests 1 and 2
    let mut frames = Vec::new();
    // What each answer is, in request order: a produce to a partition, or the Metadata.
    let mut expected = Vec::new();
    let mut sequence = [0i32; 4];
    for i in 0..40 {
        let partition = i % 4;
        let p = usize::try_from(partition)?;
        let value = format!("m{i}");
        let records = idempotent_batch(pid, 0, sequence[p], &[&value])?;
        sequence[p] += 1;
        frames.extend_from_slice(&c.frame(9, &produce_request(-1, "ordered", partition, records))?);
        expected.push(Some(partition));
        if i == 19 {
            frames.extend_from_slice(&c.frame(12, &MetadataRequest::default().with_topics(None))?);
            expected.push(None);
        }
    }
    // The fetch runs once every produce before it is answered: it sees them all.
    let all: Vec<(i32, i64)> = (0..4).map(|p| (p, 0)).collect();
    frames.extend_from_slice(&c.frame(11, &fetch_request("ordered", &all, 0))?);
    c.stream.write_all(&frames)?;
    let mut next_offset = [0i64; 4];
    // Correlation ids run on from `first` in the order the requests were framed.
    let mut id = first;
    for what in &expected {
        c.set_expected_correlation(id);
        id += 1;
        match what {
            Some(partition) => {
                let resp = c.receive::<ProduceRequest>(9)?;
                let r = &resp.responses[0].partition_responses[0];
                let p = usize::try_from(*partition)?;
                assert_eq!(r.index, *partition);
                assert_eq!(r.error_code, 0, "produce {} failed", id - 1);
                assert_eq!(r.base_offset, next_offset[p], "offsets in request order");
                next_offset[p] += 1;
            }
            None => {
                let meta = c.receive::<MetadataRequest>(12)?;
                assert!(meta
                    .topics
                    .iter()
                    .any(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("ordered")));
            }
        }
    }
    c.set_expected_correlation(id);
    let fetched = c.receive::<FetchRequest>(11)?;
    for part in &fetched.responses[0].partitions {
        let p = part.partition_index;
        assert_eq!(part.high_watermark, 10, "partition {p}");
        let got = values(part.records.as_ref().ok_or("no records")?)?;
        let want: Vec<String> = (0..40)
            .filter(|i| i % 4 == p)
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(got, want, "partition {p} holds its batches once, in order");
    }
    Ok(())
}
