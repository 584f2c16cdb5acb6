//! A failed fdatasync fails every append waiting on it and leaves the partition read-only:
//! it never reports success afterwards, even when the disk recovers.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, EngineError};

#[test]
fn failed_fsync_reaches_every_waiter_and_sticks() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(1 << 20));
    block_on(p.append(&batch_of(0, 1, 0))).expect("healthy append");
    s.fail_syncs(true);
    let batches: Vec<_> = (1..=16).map(|id| batch_of(id, 1, 0)).collect();
    let results = block_on(futures::future::join_all(
        batches.iter().map(|b| p.append(b)),
    ));
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(EngineError::ReadOnly { .. }))),
        "{results:?}"
    );
    s.fail_syncs(false);
    assert!(matches!(
        block_on(p.append(&batch_of(99, 1, 0))),
        Err(EngineError::ReadOnly { .. })
    ));
    assert!(p.failed().is_some());
    // What was acknowledged before the failure is still readable.
    assert_eq!(read_all(&p, 0).first(), Some(&(0, 1)));
}

#[test]
fn short_write_fails_the_append() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(1 << 20));
    s.short_write_next(100);
    assert!(block_on(p.append(&batch_of(0, 50, 0))).is_err());
    assert!(p.failed().is_some());
}
