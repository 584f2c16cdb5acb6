//! Produce and fetch over a real socket: many partitions (on both shards) in one request, old
//! and flexible versions, acks 0/1/all, the long poll, byte limits, ListOffsets.

mod common;

use std::time::{Duration, Instant};

use common::{batch, fetch_request, produce_request, values, Broker, TestResult};
use kafka_protocol::messages::{
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    produce_request::{PartitionProduceData, TopicProduceData},
    ListOffsetsRequest, MetadataRequest, ProduceRequest,
};

#[test]
fn many_partitions_in_one_request_round_trip() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    c.create_topic("multi", 4)?;
    for (version, round) in [(3i16, 0i64), (9, 1)] {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(common::topic("multi"))
                .with_partition_data(
                    (0..4)
                        .map(|p| -> TestResult<PartitionProduceData> {
                            let v = [format!("p{p}-r{round}-a"), format!("p{p}-r{round}-b")];
                            let v: Vec<&str> = v.iter().map(String::as_str).collect();
                            Ok(PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(batch(&v)?)))
                        })
                        .collect::<TestResult<Vec<_>>>()?,
                )]);
        let resp = c.send(version, &req)?;
        let parts = &resp
            .responses
            .first()
            .ok_or("no topic")?
            .partition_responses;
        assert_eq!(parts.len(), 4);
        for (p, r) in parts.iter().enumerate() {
            assert_eq!(r.index, i32::try_from(p)?, "answers in request order");
            assert_eq!(r.error_code, 0);
            assert_eq!(r.base_offset, 2 * round);
        }
    }
    for version in [4i16, 11, 12] {
        let resp = c.send(
            version,
            &fetch_request("multi", &[(3, 0), (0, 0), (2, 1), (1, 4)], 100),
        )?;
        let parts = &resp.responses.first().ok_or("no topic")?.partitions;
        let got: Vec<(i32, i64, Vec<String>)> = parts
            .iter()
            .map(|p| -> TestResult<_> {
                assert_eq!(p.error_code, 0);
                let records = p.records.clone().unwrap_or_default();
                Ok((p.partition_index, p.high_watermark, values(&records)?))
            })
            .collect::<TestResult<_>>()?;
        let all = |p: i32| {
            vec![
                format!("p{p}-r0-a"),
                format!("p{p}-r0-b"),
                format!("p{p}-r1-a"),
                format!("p{p}-r1-b"),
            ]
        };
        assert_eq!(got[0], (3, 4, all(3)), "v{version}");
        assert_eq!(got[1], (0, 4, all(0)));
        // From offset 1, inside the first batch: the whole batch comes back.
        assert_eq!(got[2], (2, 4, all(2)));
        assert_eq!(got[3], (1, 4, vec![]), "at the high watermark: nothing yet");
    }
    Ok(())
}

#[test]
fn acks_zero_gets_no_response_and_the_connection_goes_on() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    let frame = c.frame(9, &produce_request(0, "quiet", 0, batch(&["x"])?))?;
    std::io::Write::write_all(&mut c.stream, &frame)?;
    // The next response on this connection is the metadata's, not a produce answer.
    let meta = c.send(9, &MetadataRequest::default().with_topics(None))?;
    assert!(meta
        .topics
        .iter()
        .any(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "quiet")));
    let p = c.fetch(11, "quiet", 0, 0, 1000)?;
    assert_eq!(values(&p.records.unwrap_or_default())?, ["x"]);
    Ok(())
}

#[test]
fn acks_one_and_all_answer_with_offsets() -> TestResult {
    let broker = Broker::start(&["--fsync", "always"])?;
    let mut c = broker.client()?;
    for (i, acks) in [1i16, -1].into_iter().enumerate() {
        let resp = c.send(7, &produce_request(acks, "acked", 0, batch(&["a", "b"])?))?;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 2 * i64::try_from(i)?));
        assert_eq!(p.log_start_offset, 0);
    }
    Ok(())
}

#[test]
fn long_poll_wakes_when_a_produce_arrives() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    c.produce(9, "poll", 0, batch(&["first"])?)?;
    let addr = broker.addr;
    let waiter = std::thread::spawn(move || -> Result<(Duration, Vec<String>), String> {
        let mut c = common::Client::connect(addr).map_err(|e| e.to_string())?;
        let start = Instant::now();
        let p = c
            .fetch(11, "poll", 0, 1, 20_000)
            .map_err(|e| e.to_string())?;
        let v = values(&p.records.unwrap_or_default()).map_err(|e| e.to_string())?;
        Ok((start.elapsed(), v))
    });
    std::thread::sleep(Duration::from_millis(500));
    c.produce(9, "poll", 0, batch(&["second"])?)?;
    let (waited, got) = waiter.join().map_err(|_| "waiter panicked")??;
    assert_eq!(got, ["second"]);
    assert!(
        waited >= Duration::from_millis(400),
        "it waited: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "woken by the produce: {waited:?}"
    );
    Ok(())
}

#[test]
fn long_poll_ends_at_max_wait_when_nothing_comes() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    c.produce(9, "idle", 0, batch(&["only"])?)?;
    let start = Instant::now();
    let p = c.fetch(11, "idle", 0, 1, 600)?;
    let waited = start.elapsed();
    assert_eq!((p.error_code, p.high_watermark), (0, 1));
    assert!(values(&p.records.unwrap_or_default())?.is_empty());
    assert!(waited >= Duration::from_millis(550), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    Ok(())
}

#[test]
fn max_bytes_limits_the_answer_but_the_first_batch_is_whole() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    let big = "x".repeat(2000);
    for _ in 0..3 {
        c.produce(9, "sized", 0, batch(&[&big])?)?;
    }
    let req = fetch_request("sized", &[(0, 0)], 100).with_max_bytes(100);
    let resp = c.send(11, &req)?;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(values(&p.records.clone().unwrap_or_default())?.len(), 1);
    assert_eq!(p.high_watermark, 3);
    let req = fetch_request("sized", &[(0, 0)], 100).with_max_bytes(5000);
    let resp = c.send(11, &req)?;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(values(&p.records.clone().unwrap_or_default())?.len(), 2);
    Ok(())
}

#[test]
fn fetch_past_the_end_is_offset_out_of_range() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    c.produce(9, "short", 0, batch(&["a"])?)?;
    let p = c.fetch(11, "short", 0, 5, 100)?;
    assert_eq!(p.error_code, 1, "OFFSET_OUT_OF_RANGE");
    Ok(())
}

#[test]
fn list_offsets_earliest_latest_and_by_time() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    c.produce(9, "times", 0, batch(&["a", "b"])?)?;
    std::thread::sleep(Duration::from_millis(20));
    c.produce(9, "times", 0, batch(&["c"])?)?;
    let list = |c: &mut common::Client, version: i16, ts: i64| -> TestResult<(i16, i64)> {
        let req = ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(common::topic("times"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts)])]);
        let resp = c.send(version, &req)?;
        let p = &resp.topics[0].partitions[0];
        Ok((p.error_code, p.offset))
    };
    for version in [1i16, 5, 7] {
        assert_eq!(list(&mut c, version, -2)?, (0, 0), "earliest v{version}");
        assert_eq!(list(&mut c, version, -1)?, (0, 3), "latest v{version}");
        assert_eq!(list(&mut c, version, 0)?, (0, 0), "by time 0");
        assert_eq!(
            list(&mut c, version, i64::MAX / 2)?,
            (0, -1),
            "past every batch"
        );
    }
    assert_eq!(
        list(&mut c, 7, -3)?,
        (0, 2),
        "max timestamp: the last record"
    );
    // By time, the answer is the record, not its batch: "b" is the second record of the
    // first batch.
    let records = c.fetch(11, "times", 0, 0, 100)?.records.unwrap_or_default();
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records.clone())?;
    let b = sets[0].records.get(1).ok_or("no second record")?;
    assert_eq!(list(&mut c, 5, b.timestamp)?, (0, 1));
    Ok(())
}

#[test]
fn old_produce_versions_answer_in_their_layout() -> TestResult {
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::{
        messages::RequestHeader,
        protocol::{Encodable, StrBytes},
    };
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    for version in 0i16..=2 {
        // A v3 body without its leading transactional id (a null string, 2 bytes) is v0-v2.
        let mut v3 = BytesMut::new();
        produce_request(-1, "old", 0, batch(&["x"])?).encode(&mut v3, 3)?;
        let mut frame = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("old")))
            .encode(&mut frame, 1)?;
        frame.put_slice(&v3[2..]);
        let mut framed = BytesMut::new();
        framed.put_u32(u32::try_from(frame.len())?);
        framed.put_slice(&frame);
        std::io::Write::write_all(&mut c.stream, &framed)?;
        let mut r = c.read_frame()?;
        assert_eq!(r.get_i32(), 77);
        assert_eq!(r.get_i32(), 1, "one topic");
        let name_len = usize::try_from(r.get_i16())?;
        assert_eq!(&r.split_to(name_len)[..], b"old");
        assert_eq!(r.get_i32(), 1, "one partition");
        assert_eq!(r.get_i32(), 0, "partition 0");
        assert_eq!(r.get_i16(), 0, "no error");
        assert_eq!(r.get_i64(), i64::from(version), "base offset");
        if version >= 2 {
            assert_eq!(r.get_i64(), -1, "log append time");
        }
        if version >= 1 {
            assert_eq!(r.get_i32(), 0, "throttle time");
        }
        assert!(r.is_empty(), "v{version}: {} bytes left", r.len());
    }
    Ok(())
}

#[test]
fn partitions_past_the_byte_budget_still_report_their_offsets() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    c.create_topic("budget", 4)?;
    let big = "y".repeat(2000);
    for p in 0..4 {
        c.produce(9, "budget", p, batch(&[&big])?)?;
    }
    let req = fetch_request("budget", &[(0, 0), (1, 0), (2, 0), (3, 5)], 100).with_max_bytes(3000);
    let resp = c.send(11, &req)?;
    let parts = &resp.responses[0].partitions;
    let got: Vec<(i16, i64, usize)> = parts
        .iter()
        .map(|p| -> TestResult<_> {
            let n = values(&p.records.clone().unwrap_or_default())?.len();
            Ok((p.error_code, p.high_watermark, n))
        })
        .collect::<TestResult<_>>()?;
    assert_eq!(got[0], (0, 1, 1), "the first batch fits");
    assert_eq!(got[1], (0, 1, 0), "past the budget: offsets only");
    assert_eq!(got[2], (0, 1, 0));
    assert_eq!(got[3].0, 1, "the range is still checked past the budget");
    Ok(())
}

#[test]
fn large_batches_round_trip() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    // Larger than the 1 MiB partition_max_bytes of these fetches: it comes whole, alone.
    let big: String = (0..1_200_000u32)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)))
        .collect();
    let small = "s".repeat(100);
    for v in [&big, &small, &big] {
        assert_eq!(c.produce(9, "large", 0, batch(&[v])?)?.error_code, 0);
    }
    for version in [4i16, 12] {
        let mut got = Vec::new();
        for offset in 0..3 {
            let resp = c.send(version, &fetch_request("large", &[(0, offset)], 100))?;
            let p = &resp.responses[0].partitions[0];
            got.push(values(&p.records.clone().unwrap_or_default())?);
        }
        assert_eq!(got[0], std::slice::from_ref(&big), "v{version}");
        assert_eq!(
            got[1],
            std::slice::from_ref(&small),
            "the next big batch does not fit after it"
        );
        assert_eq!(got[2], std::slice::from_ref(&big));
    }
    Ok(())
}

#[test]
fn large_frames_share_the_request_memory_budget() -> TestResult {
    // A budget smaller than one of the frames: each takes all of it in turn.
    let broker = Broker::start(&["--request-memory-bytes-max", "1000000"])?;
    broker.client()?.create_topic("budgeted", 1)?;
    let value = "m".repeat(1_500_000);
    let addr = broker.addr;
    let producers: Vec<_> = (0..3)
        .map(|_| {
            let value = value.clone();
            std::thread::spawn(move || -> Result<i16, String> {
                let mut c = common::Client::connect(addr).map_err(|e| e.to_string())?;
                let b = batch(&[&value]).map_err(|e| e.to_string())?;
                let p = c.produce(9, "budgeted", 0, b).map_err(|e| e.to_string())?;
                Ok(p.error_code)
            })
        })
        .collect();
    for p in producers {
        assert_eq!(p.join().map_err(|_| "producer panicked")??, 0);
    }
    let mut c = broker.client()?;
    let p = c.fetch(11, "budgeted", 0, 0, 100)?;
    assert_eq!(p.high_watermark, 3);
    Ok(())
}
