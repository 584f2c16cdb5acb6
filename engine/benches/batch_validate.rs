//! Batch validation (header checks and CRC-32C over the batch) and offset assignment.
use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_engine::batch;

fn validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_validate");
    for (name, values) in [("1KiB", 1usize), ("16KiB", 16), ("1MiB", 1024)] {
        let payload = vec![0xabu8; 1000];
        let refs: Vec<&[u8]> = (0..values).map(|_| payload.as_slice()).collect();
        let b = batch::build(0, &refs);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_function(name, |bench| {
            bench.iter(|| batch::validate(black_box(&b), usize::MAX).expect("valid"))
        });
        g.bench_function(format!("{name}/split+patch"), |bench| {
            bench.iter(|| {
                let parts = batch::split(black_box(&b), usize::MAX).expect("valid");
                let mut m = BytesMut::from(&parts[0].0[..]);
                batch::set_base_offset(&mut m, 42);
                m
            });
        });
    }
    g.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
