//! A full disk (ENOSPC at preallocation, write or roll) fails the appends that could not be
//! written with a storage error, but leaves the partition writable: reads keep working, the
//! offsets of the failed batches are given back, an idempotent producer's retry is accepted
//! (not answered as a duplicate of a batch that was never written), and once there is room
//! again appends go on, with nothing acknowledged lost across a crash.
mod common;
use std::{cell::RefCell, rc::Rc};

use common::*;
use futures::{executor::LocalPool, task::LocalSpawnExt};
use keel_engine::{batch, sim::SimStorage, EngineError, Offset};

fn storage_full(e: &EngineError) -> bool {
    matches!(e, EngineError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull
        || source.raw_os_error() == Some(28))
}

#[test]
fn appends_fail_while_full_and_work_again_with_room() {
    let s = SimStorage::new();
    // Small segments: the failed appends also hit a roll while the disk is full.
    let p = Rc::new(open(&s, small_segments(1024)));
    for id in 0..5 {
        block_on(p.append(&batch_of(id, 2, 0))).expect("append");
    }
    s.no_space(true);
    // Several appends at once: they share one flush, which fails as a whole.
    let results = Rc::new(RefCell::new(Vec::new()));
    let mut pool = LocalPool::new();
    for id in 5..9 {
        let (p, results) = (Rc::clone(&p), Rc::clone(&results));
        pool.spawner()
            .spawn_local(async move {
                let r = p.append(&batch_of(id, 30, 0)).await;
                results.borrow_mut().push(r);
            })
            .expect("spawn");
    }
    pool.run();
    for r in results.borrow().iter() {
        let e = r.as_ref().expect_err("no room, no acknowledgement");
        assert!(storage_full(e), "a storage error, got {e}");
    }
    assert_eq!(p.failed(), None, "the partition stays writable");
    assert_eq!(
        read_all(&p, 0),
        (0..5).map(|i| (2 * i, 2)).collect::<Vec<_>>()
    );
    assert_eq!(p.offsets().log_end, Offset(10));

    // An idempotent producer's batch fails while full; its retry later is written, not
    // mistaken for a duplicate.
    let idem = batch::build_idempotent(0, &[b"idempotent"], 42, 0, 0);
    assert!(storage_full(&block_on(p.append(&idem)).expect_err("full")));

    s.no_space(false);
    let out = block_on(p.append(&idem)).expect("room again");
    assert!(!out.duplicate);
    assert_eq!(
        out.base_offset,
        Offset(10),
        "the failed batches' offsets were given back"
    );
    for id in 9..40 {
        block_on(p.append(&batch_of(id, 2, 0))).expect("append");
    }
    let expected: Vec<(i64, i32)> = (0..5)
        .map(|i| (2 * i, 2))
        .chain(std::iter::once((10, 1)))
        .chain((0..31).map(|i| (11 + 2 * i, 2)))
        .collect();
    assert_eq!(read_all(&p, 0), expected);
    drop(pool);
    let p = Rc::try_unwrap(p).expect("one owner");
    drop(p);
    s.crash(7);
    let p = open(&s, small_segments(1024));
    assert_eq!(
        read_all(&p, 0),
        expected,
        "nothing acknowledged lost, nothing failed kept"
    );
}
