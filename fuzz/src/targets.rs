//! The fuzz targets: every decoder that reads bytes from a socket or a disk, driven the way the
//! broker drives it. Each function takes arbitrary bytes, must never panic, and checks the
//! invariant that matters for its decoder (never serve a batch that fails its checks).
//!
//! | target           | reads                                   | as the broker does in           |
//! |------------------|-----------------------------------------|---------------------------------|
//! | `request_frames` | a byte stream from a client             | `connection`, `codec`, handlers |
//! | `record_batch`   | the records of a Produce                | `batch::split` / `validate`     |
//! | `recovery_scan`  | a segment's log, index and time index,  | `Partition::open` (recovery),   |
//! |                  | clean-shutdown marker, producer snapshot| reads, ListOffsets by time      |
//! | `index_files`    | an offset index and a time index file   | `index::*::from_bytes`, lookups |
//! | `catalog_files`  | `catalog/catalog.json`, `broker.toml`   | `Catalog::load`, `BrokerState`  |

use std::{cell::RefCell, path::PathBuf, rc::Rc};

use bytes::Bytes;
use futures::executor::block_on;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    FetchRequest, FindCoordinatorRequest, HeartbeatRequest, InitProducerIdRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, ProduceRequest, SyncGroupRequest,
};
use keel_engine::{
    batch,
    batch_cache::BatchCache,
    catalog::Catalog,
    index::{OffsetIndex, TimeIndex},
    partition::{Partition, PartitionLimits},
    sim::SimStorage,
    storage::Storage,
    EngineConfig, FsyncPolicy, Offset, TopicConfig, TopicPartition,
};
use keel_server::{
    codec::{parse_frame, Parsed, RawRequest},
    connection::frame_length,
    state::BrokerState,
};

/// The largest frame the targets accept (the broker's default is 100 MiB; inputs are small).
const REQUEST_BYTES_MAX: usize = 1 << 20;
/// The largest batch, as the broker's default.
const BATCH_BYTES_MAX: usize = 8 << 20;

/// A client's byte stream: the whole input as one frame body, then the input cut into frames
/// by their length prefixes as the connection does; each frame's header is checked and its
/// body decoded as its API's request, and a Produce's record batches are validated.
pub fn request_frames(data: &[u8]) {
    request(Bytes::copy_from_slice(data));
    let mut rest = data;
    // A frame length out of bounds closes the connection; a partial frame waits for more.
    while let Ok(Some(len)) = frame_length(rest, REQUEST_BYTES_MAX) {
        if rest.len() < 4 + len {
            break;
        }
        request(Bytes::copy_from_slice(&rest[4..4 + len]));
        rest = &rest[4 + len..];
    }
}

fn request(frame: Bytes) {
    if let Ok(Parsed::Request(raw)) = parse_frame(frame) {
        decode_request(&raw);
    }
}

/// Decodes the body of `raw` as the request of its API and version, as its handler does.
/// Returns whether the API is one this function knows (every API keel serves must be).
pub fn decode_request(raw: &RawRequest) -> bool {
    match raw.api {
        ApiKey::Produce => {
            if let Ok(req) = raw.decode_body::<ProduceRequest>() {
                for topic in &req.topic_data {
                    for p in &topic.partition_data {
                        if let Some(records) = &p.records {
                            record_batch_checks(records);
                        }
                    }
                }
            }
        }
        ApiKey::Fetch => drop(raw.decode_body::<FetchRequest>()),
        ApiKey::ListOffsets => drop(raw.decode_body::<ListOffsetsRequest>()),
        ApiKey::Metadata => drop(raw.decode_body::<MetadataRequest>()),
        ApiKey::ApiVersions => drop(raw.decode_body::<ApiVersionsRequest>()),
        ApiKey::CreateTopics => drop(raw.decode_body::<CreateTopicsRequest>()),
        ApiKey::DeleteTopics => drop(raw.decode_body::<DeleteTopicsRequest>()),
        ApiKey::InitProducerId => drop(raw.decode_body::<InitProducerIdRequest>()),
        ApiKey::DescribeConfigs => drop(raw.decode_body::<DescribeConfigsRequest>()),
        ApiKey::CreatePartitions => drop(raw.decode_body::<CreatePartitionsRequest>()),
        ApiKey::DescribeCluster => drop(raw.decode_body::<DescribeClusterRequest>()),
        ApiKey::FindCoordinator => drop(raw.decode_body::<FindCoordinatorRequest>()),
        ApiKey::JoinGroup => drop(raw.decode_body::<JoinGroupRequest>()),
        ApiKey::SyncGroup => drop(raw.decode_body::<SyncGroupRequest>()),
        ApiKey::Heartbeat => drop(raw.decode_body::<HeartbeatRequest>()),
        ApiKey::LeaveGroup => drop(raw.decode_body::<LeaveGroupRequest>()),
        ApiKey::OffsetCommit => drop(raw.decode_body::<OffsetCommitRequest>()),
        ApiKey::OffsetFetch => drop(raw.decode_body::<OffsetFetchRequest>()),
        ApiKey::ListGroups => drop(raw.decode_body::<ListGroupsRequest>()),
        ApiKey::DescribeGroups => drop(raw.decode_body::<DescribeGroupsRequest>()),
        ApiKey::DeleteGroups => drop(raw.decode_body::<DeleteGroupsRequest>()),
        ApiKey::OffsetDelete => drop(raw.decode_body::<OffsetDeleteRequest>()),
        _ => return false,
    }
    true
}

/// A Produce's records as `Partition::append` takes them.
pub fn record_batch(data: &[u8]) {
    record_batch_checks(&Bytes::copy_from_slice(data));
}

fn record_batch_checks(records: &Bytes) {
    if let Ok(parts) = batch::split(records, BATCH_BYTES_MAX) {
        let total: usize = parts.iter().map(|(b, _)| b.len()).sum();
        assert_eq!(total, records.len(), "split covers the records exactly");
        for (bytes, info) in &parts {
            let again = batch::validate(bytes, BATCH_BYTES_MAX).expect("a split batch validates");
            assert_eq!(again.batch_bytes, bytes.len());
            assert_eq!(info.record_count, info.last_offset_delta + 1);
            let mut patched = bytes.to_vec();
            batch::set_base_offset(&mut patched, 1234);
            batch::validate(&patched, BATCH_BYTES_MAX).expect("offset patching keeps the CRC");
        }
    }
    let _ = batch::peek(records);
    let _ = batch::info(records);
}

fn le_u16(data: &[u8], at: usize) -> usize {
    data.get(at..at + 2)
        .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

/// Lays out a partition directory from `data` and recovers it:
/// `flags u8 | index_len u16 | time_len u16 | split u16 | index | timeindex | log`.
/// flags bit 0: a clean-shutdown marker (the last segment is trusted); bit 1: the log is two
/// segments, cut at `split` (the first one closed, so trusted); bit 2: a producer snapshot
/// made of the last 64 bytes of the input.
pub fn recovery_scan(data: &[u8]) {
    if data.len() < 7 {
        return;
    }
    let flags = data[0];
    let (index_len, time_len) = (le_u16(data, 1), le_u16(data, 3));
    let body = &data[7..];
    let index = &body[..index_len.min(body.len())];
    let time = &body[index.len()..(index.len() + time_len).min(body.len())];
    let log = &body[index.len() + time.len()..];
    let storage = SimStorage::new();
    let dir = PathBuf::from("/fuzz/t-0");
    let put = |name: &str, bytes: &[u8]| {
        block_on(storage.write_atomic(&dir.join(name), bytes)).expect("sim write");
    };
    storage.create_dir_all(&dir).expect("sim mkdir");
    let split = if flags & 2 != 0 {
        le_u16(data, 5).min(log.len())
    } else {
        log.len()
    };
    put(&format!("{:020}.log", 0), &log[..split]);
    put(&format!("{:020}.index", 0), index);
    put(&format!("{:020}.timeindex", 0), time);
    if flags & 2 != 0 {
        // The second segment's base: the offset after the first segment's batches, as a roll
        // makes it; a bogus one must be caught too.
        let base = batch::info(&log[split..]).map_or(0, |i| i.base_offset.max(0));
        put(&format!("{base:020}.log"), &log[split..]);
    }
    if flags & 1 != 0 {
        let next = log.len() as i64;
        let marker =
            format!("{{\"version\":1,\"next_offset\":{next},\"producers\":{{\"map\":{{}}}}}}");
        put("clean_shutdown", marker.as_bytes());
    }
    if flags & 4 != 0 {
        put("producers.json", &data[data.len().saturating_sub(64)..]);
    }
    recover_and_read(&storage, dir);
}

fn recover_and_read(storage: &SimStorage, dir: PathBuf) {
    let mut config = EngineConfig::new("/fuzz");
    config.fsync = FsyncPolicy::Always;
    config.preallocate_bytes = 0;
    let opened = block_on(Partition::open(
        storage.clone(),
        TopicPartition::new("t", 0),
        dir,
        1,
        TopicConfig {
            segment_bytes_max: 1 << 20,
            index_interval_bytes: 256,
            ..TopicConfig::default()
        },
        PartitionLimits::from_config(&config),
        Rc::new(RefCell::new(BatchCache::new(0))),
    ));
    let Ok(p) = opened else {
        return; // refused to start, with a Corrupt or Io error: allowed
    };
    let offsets = p.offsets();
    let mut at = offsets.log_start;
    let mut batches = 0;
    while at < offsets.high_watermark && batches < 10_000 {
        let Ok(r) = block_on(p.read(at, 4096)) else {
            break; // corrupt data reported, not served
        };
        let Some(first) = r.batches.first() else {
            break;
        };
        for b in &r.batches {
            let info = batch::validate(b, usize::MAX).expect("a served batch passes its checks");
            assert!(
                info.last_offset() >= at.0 || b == first,
                "offsets move forward"
            );
            at = Offset(info.last_offset() + 1);
            batches += 1;
        }
    }
    for ts in [i64::MIN, -1, 0, 1_000, i64::MAX] {
        let _ = block_on(p.offset_for_time(ts));
    }
    // A recovered partition takes appends at its end.
    let b = batch::build(0, &[b"after recovery"]);
    if let Ok(out) = block_on(p.append(&b)) {
        assert_eq!(out.base_offset, offsets.high_watermark.max(offsets.log_end));
        let r = block_on(p.read(out.base_offset, 1 << 16)).expect("read back what was appended");
        assert!(!r.batches.is_empty());
    }
}

/// An offset index and a time index file (the input split in two by its first byte).
pub fn index_files(data: &[u8]) {
    let cut = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (a, b) = data.split_at(cut);
    let idx = OffsetIndex::from_bytes(b);
    for rel in [0, 1, 7, 1000, u32::MAX] {
        if let Some((r, _)) = idx.lookup(rel) {
            assert!(r <= rel);
        }
    }
    let again = OffsetIndex::from_bytes(&idx.encode(0, idx.len()));
    assert_eq!(again.len(), idx.len(), "offset index round trip");
    let t = TimeIndex::from_bytes(a);
    for ts in [i64::MIN, 0, 1_000, i64::MAX] {
        let _ = t.lookup(ts);
    }
    let again = TimeIndex::from_bytes(&t.encode(0, t.len()));
    assert!(again.len() <= t.len(), "time index round trip");
}

/// The catalog (even first byte) or the broker state file (odd), loaded from a data dir.
pub fn catalog_files(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let body = data.get(1..).unwrap_or_default();
    if data.first().is_some_and(|b| b % 2 == 1) {
        if std::fs::write(dir.path().join("broker.toml"), body).is_ok() {
            if let Ok(state) = BrokerState::open(dir.path()) {
                let _ = state.cluster_id();
                let _ = state.next_producer_id();
            }
        }
        return;
    }
    let cat = dir.path().join("catalog");
    if std::fs::create_dir_all(&cat).is_err()
        || std::fs::write(cat.join("catalog.json"), body).is_err()
    {
        return;
    }
    if let Ok(c) = Catalog::load(dir.path()) {
        let snap = c.snapshot();
        let _ = snap.partition_count();
        let _ = snap.load_per_shard(2);
        for (name, t) in &snap.topics {
            for i in [-1, 0, 1, i32::MAX] {
                let _ = snap.owner(name, i);
            }
            let _ = t.partitions.len();
        }
    }
}
