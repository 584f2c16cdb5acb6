//! Appends to one partition on the real disk, fsync never and always, 16 KiB and 1 MiB batches.
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_engine::{batch, FsyncPolicy};

mod common;

fn append(c: &mut Criterion) {
    let ex = common::executor();
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for fsync in [FsyncPolicy::Never, FsyncPolicy::Always] {
        for (name, values) in [("16KiB", 16usize), ("1MiB", 1024)] {
            let payload = vec![0x5au8; 1000];
            let refs: Vec<&[u8]> = (0..values).map(|_| payload.as_slice()).collect();
            let b = batch::build(0, &refs);
            g.throughput(Throughput::Bytes(b.len() as u64));
            let dir = tempfile::tempdir().expect("tempdir");
            let p = ex.run(common::partition(dir.path(), fsync, 0));
            g.bench_function(format!("{fsync}/{name}"), |bench| {
                bench.iter_custom(|iters| {
                    ex.run(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            p.append(&b).await.expect("append");
                        }
                        start.elapsed()
                    })
                });
            });
            ex.run(p.close()).expect("close");
        }
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
