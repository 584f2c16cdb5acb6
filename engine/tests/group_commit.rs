//! Appends that arrive while an fdatasync runs share the next one: 64 concurrent appends with
//! fsync=always need far fewer than 64 syncs, and every one is durable when acknowledged.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, Offset};

#[test]
fn concurrent_appends_share_fsyncs() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(1 << 20));
    let batches: Vec<_> = (0..64).map(|id| batch_of(id, 2, 0)).collect();
    let before = s.sync_count();
    let results = block_on(futures::future::join_all(
        batches.iter().map(|b| p.append(b)),
    ));
    let syncs = s.sync_count() - before;
    assert!(syncs <= 4, "{syncs} syncs for 64 appends");
    let mut bases: Vec<i64> = results
        .into_iter()
        .map(|r| r.expect("append").base_offset.0)
        .collect();
    bases.sort_unstable();
    assert_eq!(bases, (0..64).map(|i| i * 2).collect::<Vec<_>>());
    // Everything acknowledged survives a crash.
    s.crash(7);
    drop(p);
    let p = open(&s, small_segments(1 << 20));
    assert_eq!(p.offsets().high_watermark, Offset(128));
}

/// The baseline group commit is measured against: with `group_commit` off, every append gets a
/// write and an fdatasync of its own, and is still durable when acknowledged.
#[test]
fn without_group_commit_each_append_syncs_alone() {
    let s = SimStorage::new();
    let mut limits = limits(keel_engine::FsyncPolicy::Always);
    limits.group_commit = false;
    let p = block_on(keel_engine::partition::Partition::open(
        s.clone(),
        keel_engine::TopicPartition::new("t", 0),
        dir(),
        1,
        small_segments(1 << 20),
        limits,
        std::rc::Rc::new(std::cell::RefCell::new(
            keel_engine::batch_cache::BatchCache::new(0),
        )),
    ))
    .expect("open");
    let batches: Vec<_> = (0..16).map(|id| batch_of(id, 2, 0)).collect();
    let before = s.sync_count();
    let results = block_on(futures::future::join_all(
        batches.iter().map(|b| p.append(b)),
    ));
    let syncs = s.sync_count() - before;
    assert!(
        syncs >= 16,
        "{syncs} syncs for 16 appends without group commit"
    );
    assert!(results.iter().all(Result::is_ok));
    s.crash(3);
    drop(p);
    let p = open(&s, small_segments(1 << 20));
    assert_eq!(p.offsets().high_watermark, Offset(32));
}
