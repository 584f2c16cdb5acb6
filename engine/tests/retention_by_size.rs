//! retention_bytes deletes whole closed segments, oldest first; the log start moves and a read
//! below it is out of range. The active segment is never deleted.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, EngineError, Offset, TopicConfig};

#[test]
fn deletes_oldest_segments_past_the_size() {
    let s = SimStorage::new();
    let config = TopicConfig {
        retention_bytes: 40 * 1024,
        ..small_segments(16 * 1024)
    };
    let p = open(&s, config);
    for id in 0..1000 {
        block_on(p.append(&batch_of(id, 4, 0))).expect("append");
    }
    let before = p.offsets();
    let deleted = block_on(p.apply_retention(0)).expect("retention");
    assert!(deleted > 0);
    let after = p.offsets();
    assert!(after.log_start > Offset(0));
    assert!(
        after.size_bytes <= 40 * 1024 + 16 * 1024,
        "{} bytes left",
        after.size_bytes
    );
    assert_eq!(after.high_watermark, before.high_watermark);
    assert!(matches!(
        block_on(p.read(Offset(0), 100)),
        Err(EngineError::OffsetOutOfRange { .. })
    ));
    let got = read_all(&p, after.log_start.0);
    assert_eq!(got.first().map(|g| g.0), Some(after.log_start.0));
    assert_eq!(got.last().map(|g| g.0), Some(999 * 4));
    // A reopened partition starts at the same log start.
    block_on(p.close()).expect("close");
    let p = open(&s, small_segments(16 * 1024));
    assert_eq!(p.offsets().log_start, after.log_start);
}
