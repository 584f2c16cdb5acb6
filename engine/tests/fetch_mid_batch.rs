//! A read at an offset inside a batch returns that whole batch (the client skips the records
//! before its offset), from disk and from the cache.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, FsyncPolicy, Offset};

#[test]
fn offset_inside_a_batch_returns_the_whole_batch() {
    for cache in [0, 1 << 20] {
        let s = SimStorage::new();
        let p = open_with(&s, small_segments(1 << 20), FsyncPolicy::Always, cache).expect("open");
        for id in 0..20 {
            block_on(p.append(&batch_of(id, 10, 0))).expect("append");
        }
        let got = read_all(&p, 57);
        assert_eq!(got.first(), Some(&(50, 10)), "cache {cache}");
        assert_eq!(got.len(), 15);
        let r = block_on(p.read(Offset(199), 1 << 20)).expect("read");
        assert_eq!(r.batches.len(), 1);
    }
}
