//! retention_ms deletes closed segments whose newest batch is older than the limit.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, Offset, TopicConfig};

#[test]
fn deletes_segments_older_than_retention_ms() {
    let s = SimStorage::new();
    let config = TopicConfig {
        retention_ms: 1000,
        ..small_segments(16 * 1024)
    };
    let p = open(&s, config);
    // Old batches (timestamp 1000), then new ones (timestamp 100_000).
    for id in 0..150 {
        block_on(p.append(&batch_of(id, 4, 1000))).expect("append");
    }
    let old_end = p.offsets().high_watermark;
    for id in 150..300 {
        block_on(p.append(&batch_of(id, 4, 100_000))).expect("append");
    }
    let deleted = block_on(p.apply_retention(100_500)).expect("retention");
    assert!(deleted > 0);
    let start = p.offsets().log_start;
    assert!(
        start > Offset(0) && start <= old_end,
        "log start {start} vs old end {old_end}"
    );
    // Nothing newer than the limit was deleted.
    assert_eq!(block_on(p.apply_retention(100_500)).expect("retention"), 0);
}
