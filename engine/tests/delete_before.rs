//! delete_before drops the closed segments that hold only offsets below the given one (a
//! compacted prefix), never a segment holding that offset, and never the active segment.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, Offset};

#[test]
fn drops_whole_segments_below_an_offset() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(16 * 1024));
    for id in 0..1000 {
        block_on(p.append(&batch_of(id, 4, 0))).expect("append");
    }
    let before = p.offsets();
    let cut = Offset(2000);
    let deleted = block_on(p.delete_before(cut)).expect("delete_before");
    assert!(deleted > 0);
    let after = p.offsets();
    assert!(
        after.log_start > Offset(0) && after.log_start <= cut,
        "{after:?}"
    );
    assert_eq!(after.high_watermark, before.high_watermark);
    let got = read_all(&p, cut.0);
    assert_eq!(
        got.first().map(|g| g.0),
        Some(cut.0),
        "the offset itself is kept"
    );
    // Past the end: everything but the active segment goes; the data stays readable.
    block_on(p.delete_before(Offset(i64::MAX))).expect("delete_before");
    let end = p.offsets();
    assert_eq!(end.high_watermark, before.high_watermark);
    assert_eq!(
        read_all(&p, end.log_start.0).last().map(|g| g.0),
        Some(999 * 4)
    );
    block_on(p.close()).expect("close");
    let p = open(&s, small_segments(16 * 1024));
    assert_eq!(p.offsets().log_start, end.log_start);
}
