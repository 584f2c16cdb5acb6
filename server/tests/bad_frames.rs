//! Bad input: each gets its Kafka error code or a closed connection, and after each the broker
//! still serves a well-behaved client.

mod common;

use std::{io::Write, net::Shutdown};

use bytes::{BufMut, Bytes, BytesMut};
use common::{batch, produce_request, values, Broker, Client, TestResult};
use kafka_protocol::messages::{
    metadata_request::MetadataRequestTopic, ApiVersionsRequest, MetadataRequest,
};

/// A fresh client can still talk to the broker: ApiVersions, then a produce and its fetch.
fn still_serves(broker: &Broker) -> TestResult {
    let mut c = broker.client()?;
    assert_eq!(c.send(3, &ApiVersionsRequest::default())?.error_code, 0);
    let p = c.produce(9, "healthy", 0, batch(&["ok"])?)?;
    assert_eq!(p.error_code, 0);
    let f = c.fetch(11, "healthy", 0, p.base_offset, 100)?;
    assert_eq!(values(&f.records.unwrap_or_default())?, ["ok"]);
    Ok(())
}

fn raw_frame(len: i32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(len);
    b.put_slice(body);
    b.freeze()
}

#[test]
fn oversized_frame_closes_the_connection() -> TestResult {
    let broker = Broker::start(&["--request-bytes-max", "1048576"])?;
    let mut c = broker.client()?;
    c.stream.write_all(&raw_frame(2 << 20, &[0; 16]))?;
    assert!(c.is_closed());
    let mut c = broker.client()?;
    c.stream.write_all(&raw_frame(-5, &[0; 16]))?;
    assert!(c.is_closed(), "a negative length too");
    still_serves(&broker)
}

#[test]
fn truncated_frame_and_mid_request_disconnects_hurt_no_one() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    c.stream.write_all(&raw_frame(100, &[0, 3, 0, 9, 0, 0]))?;
    c.stream.shutdown(Shutdown::Write)?;
    assert!(c.is_closed());
    // A produce cut in the middle of its records, then gone.
    let mut c = broker.client()?;
    let frame = c.frame(9, &produce_request(-1, "healthy", 0, batch(&["lost"])?))?;
    c.stream.write_all(&frame[..frame.len() / 2])?;
    drop(c);
    // A long poll whose client leaves before the answer.
    let mut c = broker.client()?;
    let frame = c.frame(11, &common::fetch_request("healthy", &[(0, 0)], 2000))?;
    c.stream.write_all(&frame)?;
    drop(c);
    still_serves(&broker)?;
    // Nothing of the cut produce was written.
    let mut c = broker.client()?;
    let f = c.fetch(11, "healthy", 0, 0, 100)?;
    assert_eq!(values(&f.records.unwrap_or_default())?, ["ok"]);
    Ok(())
}

#[test]
fn random_bytes_close_the_connection() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..5 {
        let mut c = broker.client()?;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        // The broker may close before reading it all; a failed write is fine.
        let _ = c.stream.write_all(&noise);
        let _ = c.stream.shutdown(Shutdown::Write);
        assert!(c.is_closed());
    }
    // A frame of plausible length whose content is noise.
    let mut c = broker.client()?;
    c.stream.write_all(&raw_frame(
        12,
        &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8],
    ))?;
    assert!(c.is_closed());
    still_serves(&broker)
}

#[test]
fn unknown_api_key_and_bad_body_close_the_connection() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    // API key 999, version 0, correlation id 1, null client id.
    c.stream
        .write_all(&raw_frame(10, &[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff]))?;
    assert!(c.is_closed());
    // A Metadata v9 header followed by a body that is not a Metadata request.
    let mut c = broker.client()?;
    let mut body = BytesMut::new();
    body.put_i16(3);
    body.put_i16(9);
    body.put_i32(1);
    body.put_i16(-1);
    body.put_u8(0);
    body.put_slice(&[0xff; 7]);
    c.stream
        .write_all(&raw_frame(i32::try_from(body.len())?, &body))?;
    assert!(c.is_closed());
    // A Metadata v0 claiming 2^31-1 topics in 14 bytes: a decode error, not an allocation
    // that aborts the broker (see keel_server::alloc).
    let mut c = broker.client()?;
    let mut body = BytesMut::new();
    body.put_i16(3);
    body.put_i16(0);
    body.put_i32(1);
    body.put_i16(-1);
    body.put_i32(i32::MAX);
    c.stream
        .write_all(&raw_frame(i32::try_from(body.len())?, &body))?;
    assert!(c.is_closed());
    still_serves(&broker)
}

#[test]
fn bad_batches_get_their_error_codes_and_the_connection_stays() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    let good = batch(&["a", "b"])?;
    let mut corrupt = BytesMut::from(&good[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let p = c.produce(9, "checked", 0, corrupt.freeze())?;
    assert_eq!(p.error_code, 2, "CORRUPT_MESSAGE");
    let value = "v".repeat(100);
    let p = c.produce(9, "checked", 0, legacy_message(1, value.as_bytes()))?;
    assert_eq!(p.error_code, 43, "UNSUPPORTED_FOR_MESSAGE_FORMAT");
    let p = c.produce(9, "checked", 0, legacy_message(0, value.as_bytes()))?;
    assert_eq!(p.error_code, 43, "magic 0 too");
    // Nothing of those was written: the next good batch starts at offset 0.
    let p = c.produce(9, "checked", 0, good)?;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    still_serves(&broker)
}

#[test]
fn bad_topic_names_are_invalid_topic() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    for name in ["bad name!", "..", &"x".repeat(300)] {
        let p = c.produce(9, name, 0, batch(&["a"])?)?;
        assert_eq!(p.error_code, 17, "produce to {name:?}");
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(common::topic(name)))
            ]));
        let resp = c.send(9, &req)?;
        assert_eq!(resp.topics[0].error_code, 17, "metadata for {name:?}");
    }
    still_serves(&broker)
}

#[test]
fn fetch_of_a_missing_partition_is_unknown_topic_or_partition() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c: Client = broker.client()?;
    c.produce(9, "one", 0, batch(&["a"])?)?;
    let p = c.fetch(11, "one", 5, 0, 100)?;
    assert_eq!(p.error_code, 3, "partition 5 of a 1-partition topic");
    let p = c.fetch(11, "no-such-topic", 0, 0, 100)?;
    assert_eq!(p.error_code, 3, "a topic that does not exist");
    let p = c.produce(9, "one", 7, batch(&["a"])?)?;
    assert_eq!(p.error_code, 3, "produce to a missing partition");
    still_serves(&broker)
}

#[test]
fn short_old_format_message_is_unsupported_format() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    let p = c.produce(9, "checked", 0, legacy_message(1, b"old"))?;
    assert_eq!(p.error_code, 43);
    Ok(())
}

/// One message in the old (magic 0 or 1) format, which kafka-protocol cannot encode:
/// offset, size, CRC-32 of the rest, magic, attributes, [timestamp,] key, value.
fn legacy_message(magic: i8, value: &[u8]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i8(magic);
    body.put_i8(0);
    if magic == 1 {
        body.put_i64(1_700_000_000_000);
    }
    body.put_i32(-1);
    body.put_i32(i32::try_from(value.len()).unwrap_or(i32::MAX));
    body.put_slice(value);
    let mut m = BytesMut::new();
    m.put_i64(0);
    m.put_i32(i32::try_from(body.len() + 4).unwrap_or(i32::MAX));
    m.put_u32(crc32_ieee(&body));
    m.put_slice(&body);
    m.freeze()
}

fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn idle_and_half_sent_connections_are_closed() -> TestResult {
    let broker = Broker::start(&["--connection-idle-ms-max", "300"])?;
    let mut quiet = broker.client()?;
    let mut slow = broker.client()?;
    slow.stream.write_all(&raw_frame(1000, &[0, 18, 0, 3]))?;
    let start = std::time::Instant::now();
    assert!(quiet.is_closed());
    assert!(slow.is_closed(), "a frame never finished is no activity");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    still_serves(&broker)
}
