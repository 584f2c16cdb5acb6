//! On the real file system, an active segment left without a clean shutdown is longer than its
//! batches (preallocated zeros); reopening finds the exact end and appends continue after it.
//! Runs on the backend `KEEL_IO_BACKEND` names.
mod common;

use std::{cell::RefCell, rc::Rc};

use keel_engine::{
    batch,
    batch_cache::BatchCache,
    partition::{Partition, PartitionLimits},
    storage::{AnyStorage, Storage},
    EngineConfig, Offset, TopicConfig, TopicPartition,
};

async fn open(storage: &AnyStorage, dir: &std::path::Path) -> Partition<AnyStorage> {
    let c = EngineConfig::new(dir);
    Partition::open(
        storage.clone(),
        TopicPartition::new("t", 0),
        dir.join("t-0"),
        0,
        TopicConfig::default(),
        PartitionLimits::from_config(&c),
        Rc::new(RefCell::new(BatchCache::new(0))),
    )
    .await
    .expect("open")
}

#[test]
fn unclean_reopen_finds_the_end_past_preallocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let (backend, options) = common::real_backend();
    common::on_backend(backend, options, move |storage| async move {
        let dir = path.as_path();
        storage.prepare(dir).await.expect("prepare");
        let p = open(&storage, dir).await;
        for i in 0..10 {
            p.append(&batch::build(i, &[b"some value"]))
                .await
                .expect("append");
        }
        drop(p); // a crash: no close, no marker
        let log = dir.join("t-0").join(format!("{:020}.log", 0));
        let size = std::fs::metadata(&log).expect("stat").len();
        assert!(size > 4096, "the file was preallocated ({size} bytes)");
        let p = open(&storage, dir).await;
        assert_eq!(p.offsets().high_watermark, Offset(10));
        let out = p
            .append(&batch::build(0, &[b"after"]))
            .await
            .expect("append");
        assert_eq!(out.base_offset, Offset(10));
        let r = p.read(Offset(0), 1 << 20).await.expect("read");
        assert_eq!(r.batches.len(), 11);
        p.close().await.expect("close");
        let size = std::fs::metadata(&log).expect("stat").len();
        assert_eq!(
            size,
            r.batches.iter().map(|b| b.len() as u64).sum::<u64>(),
            "closed: exact length"
        );
    });
}
