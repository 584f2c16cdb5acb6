//! The on-disk format does not depend on the I/O backend: the same appends written by glommio,
//! uring (plain, and with every option on) and pwrite (O_DIRECT and buffered) leave
//! byte-identical log and index files, and a log left by any backend without a clean shutdown
//! is recovered and read whole by every other. Each backend also keeps the storage contract the
//! log relies on (aligned writes, reads at any position, short reads at the end, preallocation,
//! truncation).
mod common;

use std::{cell::RefCell, collections::BTreeMap, path::Path, rc::Rc};

use bytes::Bytes;
use keel_engine::{
    batch,
    batch_cache::BatchCache,
    partition::{Partition, PartitionLimits},
    storage::{AnyStorage, BlockBuf, Storage, StorageFile, BLOCK_BYTES},
    BackendOptions, EngineConfig, IoBackend, Offset, TopicConfig, TopicPartition,
};

/// Every backend variant worth checking: (name, backend, options).
fn variants() -> Vec<(&'static str, IoBackend, BackendOptions)> {
    let plain = BackendOptions::default();
    let mut uring_all = plain;
    uring_all.uring.fixed_buffers = true;
    uring_all.uring.fixed_buffer_bytes = 64 << 10;
    uring_all.uring.fixed_files = true;
    uring_all.uring.sqpoll = true;
    uring_all.uring.linked_sync = true;
    let mut buffered = plain;
    buffered.pwrite_direct = false;
    vec![
        ("glommio", IoBackend::Glommio, plain),
        ("uring", IoBackend::Uring, plain),
        ("uring+all", IoBackend::Uring, uring_all),
        ("pwrite", IoBackend::Pwrite, plain),
        ("pwrite-buffered", IoBackend::Pwrite, buffered),
    ]
}

/// Batches of sizes that straddle blocks and segments: a few bytes to 40 KiB.
fn batches() -> Vec<Bytes> {
    (0..60)
        .map(|i: usize| {
            let len = [7, 700, 4000, 4096, 9000, 40_000][i % 6];
            let value = vec![b'a' + (i % 26) as u8; len];
            batch::build(1_000 + i as i64, &[&value, b"second record"])
        })
        .collect()
}

async fn open(storage: &AnyStorage, dir: &Path) -> Partition<AnyStorage> {
    let mut c = EngineConfig::new(dir);
    c.preallocate_bytes = 256 << 10;
    let topic = TopicConfig {
        segment_bytes_max: 128 << 10,
        index_interval_bytes: 4096,
        ..TopicConfig::default()
    };
    storage.prepare(dir).await.expect("prepare");
    Partition::open(
        storage.clone(),
        TopicPartition::new("t", 0),
        dir.join("t-0"),
        0,
        topic,
        PartitionLimits::from_config(&c),
        Rc::new(RefCell::new(BatchCache::new(0))),
    )
    .await
    .expect("open")
}

/// Every batch from offset 0, read from the files (the cache is off).
async fn read_all(p: &Partition<AnyStorage>) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = Offset(0);
    while at < p.offsets().high_watermark {
        let r = p.read(at, 100 << 10).await.expect("read");
        assert!(
            !r.batches.is_empty(),
            "a read below the high watermark finds data"
        );
        for b in r.batches {
            let info = batch::validate(&b, usize::MAX).expect("whole batch");
            at = Offset(info.last_offset() + 1);
            out.push(b);
        }
    }
    out
}

/// Appends every batch (half of them concurrently, so group commit groups them), then either
/// closes cleanly or drops the partition as a crash would; returns what was acknowledged.
async fn write_log(storage: &AnyStorage, dir: &Path, clean: bool) -> Vec<Bytes> {
    let p = open(storage, dir).await;
    let all = batches();
    let (serial, grouped) = all.split_at(all.len() / 2);
    for b in serial {
        p.append(b).await.expect("append");
    }
    for r in futures::future::join_all(grouped.iter().map(|b| p.append(b))).await {
        r.expect("append");
    }
    let written = read_all(&p).await;
    assert_eq!(written.len(), all.len());
    if clean {
        p.close().await.expect("close");
    }
    written
}

fn log_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("t-0")).expect("list") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if [".log", ".index", ".timeindex"]
            .iter()
            .any(|x| name.ends_with(x))
        {
            files.insert(name, std::fs::read(e.path()).expect("read"));
        }
    }
    files
}

#[test]
fn every_backend_writes_the_same_bytes() {
    let mut reference: Option<(&str, BTreeMap<String, Vec<u8>>)> = None;
    for (name, backend, options) in variants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        common::on_backend(backend, options, move |s| async move {
            write_log(&s, &path, true).await;
        });
        let files = log_files(dir.path());
        assert!(
            files.len() >= 6,
            "{name}: several segments rolled: {:?}",
            files.keys()
        );
        match &reference {
            None => reference = Some((name, files)),
            Some((first, want)) => {
                assert_eq!(
                    files.keys().collect::<Vec<_>>(),
                    want.keys().collect::<Vec<_>>(),
                    "{name} and {first} name the same files"
                );
                for (file, bytes) in &files {
                    assert!(
                        bytes == &want[file],
                        "{name}: {file} differs from {first}'s"
                    );
                }
            }
        }
    }
}

#[test]
fn a_log_left_by_a_crash_is_recovered_by_every_other_backend() {
    for (writer, wb, wo) in variants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let acked =
            common::on_backend(
                wb,
                wo,
                move |s| async move { write_log(&s, &path, false).await },
            );
        for (reader, rb, ro) in variants() {
            let path = dir.path().to_path_buf();
            let acked = acked.clone();
            common::on_backend(rb, ro, move |s| async move {
                let p = open(&s, &path).await;
                let got = read_all(&p).await;
                assert!(
                    got == acked,
                    "{reader} reads back what {writer} acknowledged"
                );
                // A read from inside a batch returns that whole batch.
                let mid = p.read(Offset(1), 1).await.expect("read mid-batch");
                assert_eq!(mid.batches.first(), acked.first());
                // Dropped again without a clean close: the next reader recovers it once more.
            });
        }
    }
}

#[test]
fn every_backend_keeps_the_storage_contract() {
    for (name, backend, options) in variants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        common::on_backend(backend, options, move |s| async move {
            s.prepare(path.parent().expect("dir"))
                .await
                .expect("prepare");
            let f = s.open(&path, true).await.expect("create");
            let block = BLOCK_BYTES as usize;
            // Two blocks of a pattern at block 1.
            let mut buf = f.alloc(2 * block);
            for (i, b) in buf.bytes_mut().iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            assert_eq!(
                f.write_at(buf, BLOCK_BYTES).await.expect("write"),
                2 * block
            );
            f.sync().await.expect("sync");
            assert_eq!(f.size().await.expect("size"), 3 * BLOCK_BYTES, "{name}");
            // A read across the block boundary at an odd position.
            let got = f.read_at(BLOCK_BYTES + 4000, 200).await.expect("read");
            let want: Vec<u8> = (4000..4200).map(|i| (i % 251) as u8).collect();
            assert_eq!(&got[..], &want[..], "{name}: unaligned read");
            // Block 0 was never written: zeros. A read past the end is short.
            assert!(f
                .read_at(10, 100)
                .await
                .expect("read")
                .iter()
                .all(|&b| b == 0));
            let tail = f.read_at(3 * BLOCK_BYTES - 10, 100).await.expect("read");
            assert_eq!(tail.len(), 10, "{name}: short read at the end");
            assert!(f
                .read_at(5 * BLOCK_BYTES, 10)
                .await
                .expect("read")
                .is_empty());
            // Preallocation grows the file; truncation cuts it to any length.
            f.preallocate(16 * BLOCK_BYTES).await.expect("preallocate");
            assert_eq!(f.size().await.expect("size"), 16 * BLOCK_BYTES, "{name}");
            f.truncate(BLOCK_BYTES + 123).await.expect("truncate");
            assert_eq!(f.size().await.expect("size"), BLOCK_BYTES + 123, "{name}");
            let end = f.read_at(BLOCK_BYTES + 100, 100).await.expect("read");
            assert_eq!(end.len(), 23, "{name}: reads stop at the truncated end");
            f.close().await.expect("close");
            let reopened = s.open(&path, false).await.expect("open");
            assert_eq!(reopened.size().await.expect("size"), BLOCK_BYTES + 123);
            s.remove(&path).await.expect("remove");
            assert!(!s.exists(&path));
        });
    }
}
