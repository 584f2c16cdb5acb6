//! Reads of whole batches handed out as `Bytes`: from the batch cache and from disk.
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_engine::{batch, FsyncPolicy, Offset};

mod common;

fn read(c: &mut Criterion) {
    let ex = common::executor();
    let payload = vec![0x11u8; 1000];
    let refs: Vec<&[u8]> = (0..16).map(|_| payload.as_slice()).collect();
    let b = batch::build(0, &refs);
    let batches = 256i64;
    let mut g = c.benchmark_group("read");
    for (name, cache) in [("cache", 64usize << 20), ("disk", 0)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = ex.run(common::partition(dir.path(), FsyncPolicy::Never, cache));
        ex.run(async {
            for _ in 0..batches {
                p.append(&b).await.expect("append");
            }
        });
        let read_bytes = 1usize << 20;
        g.throughput(Throughput::Bytes(read_bytes as u64));
        g.bench_function(format!("{name}/1MiB"), |bench| {
            bench.iter_custom(|iters| {
                ex.run(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let at = Offset((i as i64 * 16 * 7) % (batches * 16 - 1024));
                        let r = p.read(at, read_bytes).await.expect("read");
                        assert!(!r.batches.is_empty());
                    }
                    start.elapsed()
                })
            });
        });
        ex.run(p.close()).expect("close");
    }
    g.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
