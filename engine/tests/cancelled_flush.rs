//! An append whose task is dropped while it runs the flush (a client gone mid-request) loses
//! nothing and duplicates nothing: its batch, already given an offset, is written by the next
//! flusher, the others' appends complete, and the log stays contiguous across a crash.
mod common;
use std::{
    pin::pin,
    task::{Context, Poll},
};

use common::*;
use keel_engine::{batch, sim::SimStorage, Offset};

fn poll_n<F: std::future::Future>(f: std::pin::Pin<&mut F>, n: usize) -> Option<F::Output> {
    let mut f = f;
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    for _ in 0..n {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

#[test]
fn dropping_the_flusher_mid_flush_keeps_the_log_whole() {
    // Drop the flusher after each number of polls, to land in every step of the flush:
    // the yield, the write, the fdatasync.
    let needed = {
        let s = SimStorage::new();
        let p = open(&s, small_segments(1 << 20));
        let b = batch_of(0, 3, 0);
        let mut f = pin!(p.append(&b));
        (1..100)
            .find(|_| poll_n(f.as_mut(), 1).is_some())
            .expect("an append completes")
    };
    assert!(needed > 2, "the flush awaits (yield, write, fdatasync)");
    for polls in 1..needed {
        let s = SimStorage::new();
        let p = open(&s, small_segments(1 << 20));
        let first = batch_of(0, 3, 0);
        {
            let f = pin!(p.append(&first));
            assert!(
                poll_n(f, polls).is_none(),
                "still in flight after {polls} polls"
            );
        }
        let rest: Vec<_> = (1..5).map(|id| batch_of(id, 2, 0)).collect();
        let results = block_on(futures::future::join_all(rest.iter().map(|b| p.append(b))));
        for r in &results {
            r.as_ref().expect("the others' appends complete");
        }
        // The dropped append's batch had offsets 0..3; it is in the log, once.
        let hw = p.offsets().high_watermark;
        assert_eq!(hw, Offset(3 + 4 * 2), "polls {polls}");
        s.crash(polls as u64);
        drop(p);
        let p = open(&s, small_segments(1 << 20));
        let r = block_on(p.read(Offset(0), 1 << 20)).expect("read");
        let mut next = 0;
        for b in &r.batches {
            let info = batch::validate(b, usize::MAX).expect("whole batch");
            assert_eq!(
                info.base_offset, next,
                "contiguous, no duplicate (polls {polls})"
            );
            next = info.last_offset() + 1;
        }
        assert_eq!(
            next, hw.0,
            "every acknowledged batch survives (polls {polls})"
        );
    }
}
