//! Lost or stale index files are rebuilt from the log; reads from disk still find every offset.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, storage::Storage, Offset};

fn fill(s: &SimStorage) {
    let p = open(s, small_segments(1 << 20));
    for id in 0..300 {
        block_on(p.append(&batch_of(id, 2, id as i64))).expect("append");
    }
    block_on(p.close()).expect("close");
}

#[test]
fn missing_index_is_rebuilt() {
    let s = SimStorage::new();
    fill(&s);
    let index = dir().join(format!("{:020}.index", 0));
    let timeindex = dir().join(format!("{:020}.timeindex", 0));
    assert!(s.contents(&index).expect("index written at close").len() >= 4096);
    block_on(s.remove(&index)).expect("rm");
    block_on(s.remove(&timeindex)).expect("rm");
    let p = open(&s, small_segments(1 << 20));
    assert_eq!(p.offsets().high_watermark, Offset(600));
    assert_eq!(read_all(&p, 401).first(), Some(&(400, 2)));
    assert_eq!(
        block_on(p.offset_for_time(250)).expect("time").map(|f| f.0),
        Some(Offset(500))
    );
    block_on(p.close()).expect("close");
    assert!(s.contents(&index).expect("rewritten").len() >= 4096);
}

#[test]
fn stale_index_pointing_past_the_log_is_dropped() {
    let s = SimStorage::new();
    fill(&s);
    let log = dir().join(format!("{:020}.log", 0));
    let data = s.contents(&log).expect("log");
    // Crash-like state: no clean marker, and the log lost its second half.
    block_on(s.remove(&dir().join("clean_shutdown"))).expect("rm marker");
    s.set_contents(&log, data[..data.len() / 2].to_vec());
    let p = open(&s, small_segments(1 << 20));
    let hw = p.offsets().high_watermark;
    assert!(hw > Offset(0) && hw < Offset(600));
    let got = read_all(&p, 0);
    assert_eq!(got.len() as i64 * 2, hw.0);
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 2));
}
