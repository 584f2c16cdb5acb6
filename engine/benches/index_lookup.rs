//! Sparse offset and time index lookups in a full segment's index (1 GiB of log at one entry
//! per 4 KiB: 262,144 entries).
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use keel_engine::index::{OffsetIndex, TimeIndex};

fn lookup(c: &mut Criterion) {
    let mut idx = OffsetIndex::default();
    let mut tidx = TimeIndex::default();
    for i in 0..262_144u32 {
        idx.push(i * 4, i * 4096);
        tidx.push(1_700_000_000_000 + i64::from(i), i * 4);
    }
    let mut at = 0u32;
    c.bench_function("index_lookup/offset", |b| {
        b.iter(|| {
            at = at.wrapping_add(7919) % (262_144 * 4);
            black_box(idx.lookup(black_box(at)))
        });
    });
    c.bench_function("index_lookup/time", |b| {
        b.iter(|| {
            at = at.wrapping_add(7919) % 262_144;
            black_box(tidx.lookup(black_box(1_700_000_000_000 + i64::from(at))))
        });
    });
}

criterion_group!(benches, lookup);
criterion_main!(benches);
