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
