//! A batch whose bytes no longer match its CRC (a flipped bit in the unsynced tail) is cut at
//! recovery, with everything after it; the batches before it stay.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, Offset};

#[test]
fn corrupt_batch_cuts_the_log_there() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(1 << 20));
    let starts = append_pairs(&p, 10);
    drop(p);
    let log = dir().join(format!("{:020}.log", 0));
    let mut data = s.contents(&log).expect("log");
    data[starts[5] + 70] ^= 0x40; // inside batch 5's records
    s.set_contents(&log, data);
    let p = open(&s, small_segments(1 << 20));
    assert_eq!(p.offsets().high_watermark, Offset(10));
    assert_eq!(
        read_all(&p, 0),
        (0..5).map(|i| (i * 2, 2)).collect::<Vec<_>>()
    );
}
