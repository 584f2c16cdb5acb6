//! With `segment_spares_max` above 0, retention keeps a deleted segment's log file as a spare
//! (`<base>.spare`) and the next roll renames it to the new segment instead of creating a file.
//! The recycled file still holds the old segment's batches past the new end, with valid CRCs
//! and older offsets: reads never reach them, recovery after a crash stops at the first batch
//! whose offset does not follow, and a clean reopen keeps the spares (up to the setting).
mod common;
use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

use bytes::Bytes;
use common::*;
use futures::{executor::LocalPool, task::LocalSpawnExt};
use keel_engine::{
    batch, batch_cache::BatchCache, partition::Partition, sim::SimStorage, FsyncPolicy, Offset,
    TopicConfig, TopicPartition,
};

const SEGMENT_BYTES: u64 = 16 * 1024;

fn config() -> TopicConfig {
    TopicConfig {
        retention_bytes: 40 * 1024,
        ..small_segments(SEGMENT_BYTES)
    }
}

fn open_spares(s: &SimStorage, spares: usize) -> Partition<SimStorage> {
    let mut l = limits(FsyncPolicy::Always);
    l.segment_spares_max = spares;
    block_on(Partition::open(
        s.clone(),
        TopicPartition::new("t", 0),
        dir(),
        1,
        config(),
        l,
        Rc::new(RefCell::new(BatchCache::new(0))),
    ))
    .expect("open")
}

fn names(s: &SimStorage, ext: &str) -> Vec<String> {
    use keel_engine::storage::Storage;
    let mut n: Vec<String> = s
        .list_dir(&dir())
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(ext))
        .collect();
    n.sort();
    n
}

/// Batch `id`: three records of about 400 bytes (a dozen batches per segment).
fn batch_bytes(id: usize) -> Bytes {
    let values: Vec<Vec<u8>> = (0..3)
        .map(|r| format!("b{id}-r{r}-{}", "v".repeat(400)).into_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    batch::build(0, &refs)
}

/// Appends batch `id` and remembers its bytes by offset.
fn append(p: &Partition<SimStorage>, id: usize, acked: &mut BTreeMap<i64, Bytes>) {
    let b = batch_bytes(id);
    let out = block_on(p.append(&b)).expect("append");
    acked.insert(out.base_offset.0, b);
}

/// Every batch from the log start to the high watermark is the one acknowledged at its
/// offset (all but baseOffset, which the broker patched, byte for byte), or one of `maybe`
/// (appends a power loss cut short, which may or may not have reached the disk), at most once,
/// with no gap; every acknowledged batch is there. Survivors of `maybe` join `acked`: they
/// are in the log now.
fn check_with(
    p: &Partition<SimStorage>,
    acked: &mut BTreeMap<i64, Bytes>,
    maybe: &mut Vec<Bytes>,
    what: &str,
) {
    let o = p.offsets();
    let mut at = o.log_start;
    let mut seen = 0;
    while at < o.high_watermark {
        let r =
            block_on(p.read(at, 1 << 20)).unwrap_or_else(|e| panic!("{what}: read {at:?}: {e}"));
        assert!(!r.batches.is_empty(), "{what}: nothing at {at:?}");
        for b in &r.batches {
            let info = batch::validate(b, usize::MAX).expect("whole batch");
            assert_eq!(info.base_offset, at.0, "{what}: offsets run without a gap");
            if let Some(want) = acked.get(&at.0) {
                assert_eq!(&b[8..], &want[8..], "{what}: the batch at {at:?}");
                seen += 1;
            } else {
                let i = maybe
                    .iter()
                    .position(|m| m[8..] == b[8..])
                    .unwrap_or_else(|| panic!("{what}: a batch at {at:?} nobody appended"));
                acked.insert(at.0, maybe.swap_remove(i));
                seen += 1;
            }
            at = Offset(info.last_offset() + 1);
        }
    }
    let expected = acked.range(o.log_start.0..).count();
    assert_eq!(seen, expected, "{what}: every acknowledged batch is there");
    maybe.clear();
}

fn check(p: &Partition<SimStorage>, acked: &BTreeMap<i64, Bytes>, what: &str) {
    let mut acked = acked.clone();
    check_with(p, &mut acked, &mut Vec::new(), what);
}

#[test]
fn retention_keeps_a_spare_and_the_next_roll_recycles_it() {
    let s = SimStorage::new();
    let p = open_spares(&s, 1);
    let mut acked = BTreeMap::new();
    let mut id = 0;
    while names(&s, ".log").len() < 7 {
        append(&p, id, &mut acked);
        id += 1;
    }
    let deleted = block_on(p.apply_retention(0)).expect("retention");
    assert!(deleted >= 2, "{deleted} deleted");
    // One kept (the setting), the others deleted; none of them is a segment any more.
    let spares = names(&s, ".spare");
    assert_eq!(spares.len(), 1, "{spares:?}");
    let log_start = p.offsets().log_start;
    acked.retain(|off, _| *off >= log_start.0);
    check(&p, &acked, "after retention");

    // The next roll takes the spare: it is gone, and the new segment's file is the old one,
    // longer than what was written to it so far, its old batches after the new end.
    let logs_before = names(&s, ".log");
    while names(&s, ".log") == logs_before {
        append(&p, id, &mut acked);
        id += 1;
    }
    assert!(names(&s, ".spare").is_empty());
    let newest = names(&s, ".log").pop().expect("a segment");
    let recycled = s.contents(&dir().join(&newest)).expect("the new segment");
    let written = p.offsets().size_bytes;
    assert!(
        recycled.len() as u64 > SEGMENT_BYTES / 2,
        "the recycled file keeps its old length ({} bytes)",
        recycled.len()
    );
    assert!(written > 0);
    check(&p, &acked, "after the recycling roll");

    // A crash now: the synced new batches stay, the old ones after them are not taken for
    // the log's continuation (their offsets are older), whatever prefix of the unsynced rest
    // survives.
    drop(p);
    s.crash(7);
    let p = open_spares(&s, 1);
    check(&p, &acked, "after a crash");

    // A clean close keeps spares; reopening with the setting at 0 deletes them.
    for _ in 0..3 {
        let logs = names(&s, ".log");
        while names(&s, ".log") == logs {
            append(&p, id, &mut acked);
            id += 1;
        }
    }
    block_on(p.apply_retention(0)).expect("retention");
    let log_start = p.offsets().log_start;
    acked.retain(|off, _| *off >= log_start.0);
    assert_eq!(names(&s, ".spare").len(), 1);
    block_on(p.close()).expect("close");
    let p = open_spares(&s, 1);
    assert_eq!(names(&s, ".spare").len(), 1);
    check(&p, &acked, "after a clean reopen");
    block_on(p.close()).expect("close");
    let p = open_spares(&s, 0);
    assert!(names(&s, ".spare").is_empty());
    check(&p, &acked, "after reopening without spares");
}

#[test]
fn power_loss_after_recycling_loses_nothing_acknowledged() {
    // Many seeds. Each round appends one batch at a time (with retention now and then, so
    // spares are made and recycled), then starts a burst of concurrent appends, runs a seeded
    // number of executor steps and loses power: every file keeps what was synced plus a
    // seeded prefix of the rest. In a recycled file the unsynced region falls back to the old
    // segment's bytes, whole batches with valid CRCs right after the last synced one, which
    // recovery must not take for the log's continuation.
    let mut recycled_rolls = 0;
    let mut bursts_cut_short = 0;
    for seed in 0..64u64 {
        let s = SimStorage::new();
        let mut acked = BTreeMap::new();
        let mut maybe = Vec::new();
        let mut id = 0;
        for round in 0..3u64 {
            let p = open_spares(&s, 1);
            check_with(
                &p,
                &mut acked,
                &mut maybe,
                &format!("seed {seed} round {round}"),
            );
            let appends = 40 + (seed * 7 + round * 13) % 60;
            for i in 0..appends {
                let spare_before = !names(&s, ".spare").is_empty();
                append(&p, id, &mut acked);
                id += 1;
                if spare_before && names(&s, ".spare").is_empty() {
                    recycled_rolls += 1;
                }
                if i % 9 == 0 {
                    block_on(p.apply_retention(0)).expect("retention");
                    let log_start = p.offsets().log_start;
                    acked.retain(|off, _| *off >= log_start.0);
                }
            }
            let p = Rc::new(p);
            let done: Rc<RefCell<Vec<(i64, Bytes)>>> = Rc::default();
            let mut pool = LocalPool::new();
            let burst = 1 + (seed + round) % 12;
            for _ in 0..burst {
                let b = batch_bytes(id);
                id += 1;
                maybe.push(b.clone());
                let (p, done) = (Rc::clone(&p), Rc::clone(&done));
                pool.spawner()
                    .spawn_local(async move {
                        if let Ok(out) = p.append(&b).await {
                            done.borrow_mut().push((out.base_offset.0, b));
                        }
                    })
                    .expect("spawn");
            }
            let steps = (seed * 13 + round * 5) % 40;
            for _ in 0..steps {
                if !pool.try_run_one() {
                    break;
                }
            }
            drop(pool);
            if done.borrow().len() < burst as usize {
                bursts_cut_short += 1;
            }
            for (off, b) in done.borrow_mut().drain(..) {
                maybe.retain(|m| *m != b);
                acked.insert(off, b);
            }
            assert!(Rc::try_unwrap(p).is_ok(), "no task holds the partition");
            s.crash(seed * 31 + round);
        }
        let p = open_spares(&s, 1);
        check_with(
            &p,
            &mut acked,
            &mut maybe,
            &format!("seed {seed} at the end"),
        );
    }
    assert!(
        recycled_rolls > 64,
        "only {recycled_rolls} rolls recycled a spare"
    );
    assert!(
        bursts_cut_short > 32,
        "only {bursts_cut_short} crashes came mid-burst"
    );
}

#[test]
fn recycles_on_the_real_file_system() {
    // The backend `KEEL_IO_BACKEND` names: rename, reopen without truncation, overwrite from
    // position 0, and an unclean reopen that finds the end among the old batches.
    use keel_engine::{
        partition::PartitionLimits,
        storage::{AnyStorage, Storage},
        EngineConfig,
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().to_path_buf();
    let (backend, options) = real_backend();
    on_backend(backend, options, move |storage| async move {
        let dir = path.as_path();
        storage.prepare(dir).await.expect("prepare");
        let mut c = EngineConfig::new(dir);
        c.segment_spares_max = 1;
        let part = dir.join("t-0");
        let open = |storage: AnyStorage| {
            let part = part.clone();
            let limits = PartitionLimits::from_config(&c);
            async move {
                Partition::open(
                    storage,
                    TopicPartition::new("t", 0),
                    part,
                    0,
                    config(),
                    limits,
                    Rc::new(RefCell::new(BatchCache::new(0))),
                )
                .await
                .expect("open")
            }
        };
        let count = |ext: &str| {
            std::fs::read_dir(dir.join("t-0"))
                .expect("list")
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(ext))
                })
                .count()
        };
        let p = open(storage.clone()).await;
        let mut acked = BTreeMap::new();
        let mut id = 0;
        while count(".log") < 7 {
            let b = batch_bytes(id);
            id += 1;
            let out = p.append(&b).await.expect("append");
            acked.insert(out.base_offset.0, b);
        }
        assert!(p.apply_retention(0).await.expect("retention") > 0);
        assert_eq!(count(".spare"), 1);
        let logs = count(".log");
        while count(".spare") == 1 {
            let b = batch_bytes(id);
            id += 1;
            let out = p.append(&b).await.expect("append");
            acked.insert(out.base_offset.0, b);
        }
        assert_eq!(count(".log"), logs + 1, "the spare became the new segment");
        // A few batches into the recycled file, then a crash (no close): the reopen must end
        // the log at the last of them, not among the old batches after it.
        for _ in 0..3 {
            let b = batch_bytes(id);
            id += 1;
            let out = p.append(&b).await.expect("append");
            acked.insert(out.base_offset.0, b);
        }
        let (log_start, hw) = (p.offsets().log_start, p.offsets().high_watermark);
        drop(p);
        let p = open(storage.clone()).await;
        assert_eq!(p.offsets().high_watermark, hw);
        let mut at = log_start;
        while at < hw {
            let r = p.read(at, 1 << 20).await.expect("read");
            for b in &r.batches {
                let info = batch::validate(b, usize::MAX).expect("whole");
                assert_eq!(info.base_offset, at.0);
                assert_eq!(&b[8..], &acked[&at.0][8..]);
                at = Offset(info.last_offset() + 1);
            }
        }
        p.close().await.expect("close");
    });
}
