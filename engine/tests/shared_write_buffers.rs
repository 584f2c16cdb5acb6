//! A written buffer handed back as `Bytes` (`StorageFile::write_at_shared`, which the batch
//! cache keeps slices of) holds exactly the bytes written, may be read and dropped on another
//! thread, and may outlive the shard that wrote it. On glommio this is the path where a buffer
//! dropped away from its home thread is queued for that thread to free.
mod common;

use std::sync::mpsc;

use bytes::Bytes;
use keel_engine::{
    storage::{BlockBuf, Storage, StorageFile, BLOCK_BYTES},
    BackendOptions, IoBackend,
};

/// Bytes of each write: large enough for every backend to share it.
const WRITE_BYTES: usize = keel_engine::storage::dma::SHARE_BYTES_MIN;

fn pattern(seed: usize) -> Vec<u8> {
    (0..WRITE_BYTES).map(|i| ((i + seed) % 251) as u8).collect()
}

/// Every backend, and whether it hands the buffer back.
fn variants() -> Vec<(&'static str, IoBackend, BackendOptions, bool)> {
    let plain = BackendOptions::default();
    let mut fixed = plain;
    fixed.uring.fixed_buffers = true;
    fixed.uring.fixed_buffer_bytes = 2 * WRITE_BYTES;
    // Two registered buffers: 1 MiB of locked memory, well inside an 8 MiB limit.
    fixed.uring.fixed_buffer_count = 2;
    vec![
        ("glommio", IoBackend::Glommio, plain, true),
        ("uring", IoBackend::Uring, plain, true),
        // A registered buffer goes back to the ring's pool; the caller copies.
        ("uring+fixed_buffers", IoBackend::Uring, fixed, false),
        ("pwrite", IoBackend::Pwrite, plain, true),
    ]
}

fn check(name: &str, round: usize, shared: Option<&Bytes>, shares: bool) {
    assert_eq!(shared.is_some(), shares, "{name}: round {round}");
    if let Some(b) = shared {
        assert_eq!(&b[..], &pattern(round)[..], "{name}: round {round}");
    }
}

#[test]
fn written_buffers_come_back_whole_and_outlive_their_shard() {
    for (name, backend, options, shares) in variants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let (to_test, from_shard) = mpsc::channel::<Option<Bytes>>();
        let (to_shard, from_test) = mpsc::channel::<()>();
        let shard = std::thread::spawn(move || {
            common::on_backend(backend, options, move |s| async move {
                s.prepare(path.parent().expect("dir"))
                    .await
                    .expect("prepare");
                let f = s.open(&path, true).await.expect("create");
                let mut kept = Vec::new();
                for round in 0..4 {
                    let mut buf = f.alloc_unzeroed(WRITE_BYTES);
                    buf.bytes_mut().copy_from_slice(&pattern(round));
                    let at = (round * WRITE_BYTES) as u64;
                    let (n, shared) = f.write_at_shared(buf, at).await.expect("write");
                    assert_eq!(n, WRITE_BYTES);
                    if round % 2 == 0 {
                        // Read and dropped on the test's thread while this shard lives on (and
                        // allocates again, which frees what came back).
                        to_test.send(shared).expect("send");
                        from_test.recv().expect("the test thread answers");
                    } else {
                        kept.push(shared);
                    }
                }
                // A small write: glommio keeps its buffer (its registered pool's), the others
                // share it as any other.
                let mut small = f.alloc(BLOCK_BYTES as usize);
                small.bytes_mut()[0] = 9;
                let at = (4 * WRITE_BYTES) as u64;
                let (_, shared) = f.write_at_shared(small, at).await.expect("write");
                assert_eq!(shared.is_some(), shares && backend != IoBackend::Glommio);
                assert!(shared.is_none_or(|b| b[0] == 9 && b.len() == BLOCK_BYTES as usize));
                f.sync().await.expect("sync");
                let back = f.read_at(0, 4 * WRITE_BYTES).await.expect("read");
                let want: Vec<u8> = (0..4).flat_map(pattern).collect();
                assert!(back[..] == want[..], "the file holds every write");
                f.close().await.expect("close");
                // These outlive the shard's thread: on glommio they can no longer go home.
                kept
            })
        });
        for round in [0usize, 2] {
            let shared = from_shard.recv().expect("the shard sends");
            check(name, round, shared.as_ref(), shares);
            drop(shared);
            to_shard.send(()).expect("the shard waits");
        }
        let kept = shard.join().expect("the shard ran");
        for (round, shared) in [1usize, 3].into_iter().zip(kept) {
            check(name, round, shared.as_ref(), shares);
        }
    }
}
