//! After a crash that tore the last batch, recovery cuts the log at the last whole batch, and
//! appends continue from the offset after it.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, Offset};

#[test]
fn torn_last_batch_is_cut() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(1 << 20));
    let mut ends = Vec::new();
    let mut end = 0usize;
    for id in 0..10 {
        let b = batch_of(id, 3, 0);
        end += b.len();
        ends.push(end);
        block_on(p.append(&b)).expect("append");
    }
    drop(p); // no clean shutdown
    let log = dir().join(format!("{:020}.log", 0));
    let data = s.contents(&log).expect("log");
    // Tear the last batch: keep all but its last 7 bytes.
    s.set_contents(&log, data[..ends[9] - 7].to_vec());
    let p = open(&s, small_segments(1 << 20));
    assert_eq!(p.offsets().high_watermark, Offset(27));
    assert_eq!(read_all(&p, 0).len(), 9);
    let out = block_on(p.append(&batch_of(99, 2, 0))).expect("append after recovery");
    assert_eq!(out.base_offset, Offset(27));
    assert_eq!(read_all(&p, 0).last(), Some(&(27, 2)));
}
