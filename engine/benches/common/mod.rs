//! A partition on real DMA storage in a temporary directory, driven by a glommio executor.
#![allow(dead_code)]

use std::{cell::RefCell, rc::Rc};

use keel_engine::{
    batch_cache::BatchCache,
    partition::{Partition, PartitionLimits},
    storage::DmaStorage,
    EngineConfig, FsyncPolicy, TopicConfig, TopicPartition,
};

pub fn executor() -> glommio::LocalExecutor {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor")
}

pub async fn partition(
    dir: &std::path::Path,
    fsync: FsyncPolicy,
    cache_bytes_max: usize,
) -> Partition<DmaStorage> {
    keel_engine::storage::Storage::prepare(&DmaStorage, dir)
        .await
        .expect("prepare storage");
    let mut c = EngineConfig::new(dir);
    c.fsync = fsync;
    Partition::open(
        DmaStorage,
        TopicPartition::new("bench", 0),
        dir.join("bench-0"),
        0,
        TopicConfig::default(),
        PartitionLimits::from_config(&c),
        Rc::new(RefCell::new(BatchCache::new(cache_bytes_max))),
    )
    .await
    .expect("open partition")
}
