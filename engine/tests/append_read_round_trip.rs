//! Batches appended come back whole, in order, with offsets assigned, from cache and disk.
mod common;
use common::*;
use keel_engine::{batch, sim::SimStorage, FsyncPolicy, Offset};

#[test]
fn round_trip_from_disk_and_cache() {
    for cache in [0, 1 << 20] {
        let s = SimStorage::new();
        let p = open_with(&s, small_segments(1 << 20), FsyncPolicy::Always, cache).expect("open");
        let mut expected = Vec::new();
        for id in 0..50 {
            let out = block_on(p.append(&batch_of(id, 3, 1000 + id as i64))).expect("append");
            assert_eq!(out.base_offset, Offset(id as i64 * 3));
            assert_eq!(out.last_offset, Offset(id as i64 * 3 + 2));
            expected.push((id as i64 * 3, 3));
        }
        assert_eq!(read_all(&p, 0), expected);
        assert_eq!(p.offsets().high_watermark, Offset(150));
        // Values survive byte for byte.
        let r = block_on(p.read(Offset(0), 1)).expect("read");
        assert_eq!(
            r.batches.len(),
            1,
            "a max_bytes smaller than a batch still returns it whole"
        );
        let first = &r.batches[0];
        assert_eq!(
            batch::validate(first, usize::MAX)
                .expect("valid")
                .base_offset,
            0
        );
        assert!(first.windows(5).any(|w| w == b"b0-r2"));
    }
}

#[test]
fn several_batches_in_one_append() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(1 << 20));
    let records = concat(&[batch_of(0, 2, 0), batch_of(1, 5, 0)]);
    let out = block_on(p.append(&records)).expect("append");
    assert_eq!((out.base_offset, out.last_offset), (Offset(0), Offset(6)));
    assert_eq!(read_all(&p, 0), vec![(0, 2), (2, 5)]);
}

#[test]
fn read_past_high_watermark_is_out_of_range() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(1 << 20));
    block_on(p.append(&batch_of(0, 1, 0))).expect("append");
    assert!(block_on(p.read(Offset(1), 100))
        .expect("at hw")
        .batches
        .is_empty());
    assert!(matches!(
        block_on(p.read(Offset(2), 100)),
        Err(keel_engine::EngineError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        block_on(p.read(Offset(-1), 100)),
        Err(keel_engine::EngineError::OffsetOutOfRange { .. })
    ));
}
