//! Helpers shared by the engine's behaviour tests: a partition on simulated storage, run on a
//! plain single-threaded executor (the simulated disk needs no runtime).

#![allow(dead_code, clippy::unwrap_used)]

use std::{cell::RefCell, path::PathBuf, rc::Rc};

use bytes::{Bytes, BytesMut};
use keel_engine::{
    batch,
    batch_cache::BatchCache,
    partition::{Partition, PartitionLimits},
    sim::SimStorage,
    EngineConfig, FsyncPolicy, Offset, TopicConfig, TopicPartition,
};

pub use futures::executor::block_on;

use keel_engine::{rt, storage::AnyStorage, BackendOptions, IoBackend};

/// The backend the tests on real files run on: `KEEL_IO_BACKEND` (glommio, uring, pwrite;
/// default glommio), so that the test command runs them once per backend. `KEEL_URING_*`
/// turn on the uring backend's options (`SQPOLL`, `FIXED_BUFFERS`, `FIXED_FILES`,
/// `LINKED_SYNC` set to `true`), as the broker's flags of the same names do.
pub fn real_backend() -> (IoBackend, BackendOptions) {
    let backend = std::env::var("KEEL_IO_BACKEND")
        .map(|b| b.parse().expect("KEEL_IO_BACKEND names a backend"))
        .unwrap_or_default();
    let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "true");
    let mut options = BackendOptions::default();
    options.uring.sqpoll = on("KEEL_URING_SQPOLL");
    options.uring.fixed_buffers = on("KEEL_URING_FIXED_BUFFERS");
    options.uring.fixed_files = on("KEEL_URING_FIXED_FILES");
    options.uring.linked_sync = on("KEEL_URING_LINKED_SYNC");
    (backend, options)
}

/// An engine config on `dir` for the backend of [`real_backend`].
pub fn real_config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    (c.io_backend, c.backend_options) = real_backend();
    c.pin_cores = false;
    c
}

/// Runs `f` with the storage of `backend` on an executor thread of its runtime, and returns
/// what it returns.
pub fn on_backend<T, F, Fut>(backend: IoBackend, options: BackendOptions, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(AnyStorage) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let spec = rt::ExecutorSpec {
        name: format!("test-{backend}"),
        cpu: None,
        io_memory_bytes: 256 << 10,
        ring_depth: 64,
    };
    rt::spawn_executor(backend.runtime(), &spec, move || async move {
        let storage = AnyStorage::new(backend, &options).expect("backend starts");
        f(storage).await
    })
    .expect("executor starts")
    .join()
    .expect("executor ran")
}

pub fn dir() -> PathBuf {
    PathBuf::from("/sim/t-0")
}

pub fn limits(fsync: FsyncPolicy) -> PartitionLimits {
    let mut c = EngineConfig::new("/sim");
    c.fsync = fsync;
    c.preallocate_bytes = 0;
    PartitionLimits::from_config(&c)
}

pub fn small_segments(segment_bytes_max: u64) -> TopicConfig {
    TopicConfig {
        segment_bytes_max,
        index_interval_bytes: 256,
        ..TopicConfig::default()
    }
}

/// Opens the partition on `storage`; `cache_bytes_max` 0 makes every read go to "disk".
pub fn open_with(
    storage: &SimStorage,
    config: TopicConfig,
    fsync: FsyncPolicy,
    cache_bytes_max: usize,
) -> keel_engine::Result<Partition<SimStorage>> {
    block_on(Partition::open(
        storage.clone(),
        TopicPartition::new("t", 0),
        dir(),
        1,
        config,
        limits(fsync),
        Rc::new(RefCell::new(BatchCache::new(cache_bytes_max))),
    ))
}

pub fn open(storage: &SimStorage, config: TopicConfig) -> Partition<SimStorage> {
    open_with(storage, config, FsyncPolicy::Always, 0).unwrap()
}

/// A batch of `n` records whose values name the batch and record: "b{id}-r{i}".
pub fn batch_of(id: usize, n: usize, timestamp: i64) -> Bytes {
    let values: Vec<Vec<u8>> = (0..n).map(|i| format!("b{id}-r{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    batch::build(timestamp, &refs)
}

/// Appends batches 0..count of two records each (`batch_of(id, 2, 0)`); returns the byte
/// position in the log where each one starts (one segment).
pub fn append_pairs(p: &Partition<SimStorage>, count: usize) -> Vec<usize> {
    let mut starts = Vec::with_capacity(count);
    let mut pos = 0usize;
    for id in 0..count {
        let b = batch_of(id, 2, 0);
        starts.push(pos);
        pos += b.len();
        block_on(p.append(&b)).expect("append");
    }
    starts
}

/// Reads everything from `from` on, batch by batch, returning (base offset, record count).
pub fn read_all(p: &Partition<SimStorage>, from: i64) -> Vec<(i64, i32)> {
    let mut out = Vec::new();
    let mut at = Offset(from);
    loop {
        let r = block_on(p.read(at, 1 << 20)).unwrap();
        if r.batches.is_empty() {
            break;
        }
        for b in &r.batches {
            let info = batch::validate(b, usize::MAX).unwrap();
            out.push((info.base_offset, info.record_count));
            at = Offset(info.last_offset() + 1);
        }
    }
    out
}

pub fn concat(parts: &[Bytes]) -> Bytes {
    let mut b = BytesMut::new();
    for p in parts {
        b.extend_from_slice(p);
    }
    b.freeze()
}
