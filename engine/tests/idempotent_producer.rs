//! An idempotent producer's retried batch is acknowledged with its first offset and not
//! written twice, also after a clean restart and after a crash; a gap is refused.
mod common;
use common::*;
use keel_engine::{batch, sim::SimStorage, EngineError, Offset};

fn pbatch(seq: i32, n: usize) -> bytes::Bytes {
    let values: Vec<&[u8]> = (0..n).map(|_| &b"value"[..]).collect();
    batch::build_idempotent(0, &values, 42, 0, seq)
}

#[test]
fn duplicates_and_gaps() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(1 << 20));
    block_on(p.append(&batch_of(0, 5, 0))).expect("plain");
    let first = block_on(p.append(&pbatch(0, 3))).expect("append");
    assert_eq!(first.base_offset, Offset(5));
    let again = block_on(p.append(&pbatch(0, 3))).expect("retry");
    assert!(again.duplicate);
    assert_eq!(again.base_offset, Offset(5));
    assert_eq!(p.offsets().high_watermark, Offset(8));
    assert!(matches!(
        block_on(p.append(&pbatch(5, 1))),
        Err(EngineError::OutOfOrderSequence {
            expected: 3,
            got: 5,
            ..
        })
    ));
    block_on(p.append(&pbatch(3, 1))).expect("next in sequence");

    // Clean restart: the state comes from the shutdown marker.
    block_on(p.close()).expect("close");
    let p = open(&s, small_segments(1 << 20));
    assert!(block_on(p.append(&pbatch(3, 1))).expect("retry").duplicate);

    // Crash: the state is rebuilt from the log.
    drop(p);
    s.crash(1);
    let p = open(&s, small_segments(1 << 20));
    let r = block_on(p.append(&pbatch(3, 1))).expect("retry after crash");
    assert!(r.duplicate);
    assert_eq!(r.base_offset, Offset(8));
    assert_eq!(p.offsets().high_watermark, Offset(9));
}
