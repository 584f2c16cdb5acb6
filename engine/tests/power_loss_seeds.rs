//! Power loss at a random moment, across many seeds: concurrent appends (group commit, rolls of
//! small segments) run for a seeded number of executor steps, then the simulated disk drops
//! everything not yet synced (each file keeps its synced bytes plus a seeded prefix of the
//! rest, as a disk with a write-back cache may) and the partition is recovered. Three crashes
//! per seed, each round appending after the last recovery.
//!
//! After every recovery:
//! - every batch read back passes its CRC (reads check it; a torn batch is never served),
//! - offsets run from 0 without a gap up to the high watermark,
//! - every batch appears at most once (exactly once, for the acknowledged ones),
//! - fsync=always: every acknowledged batch is there, at the offset its acknowledgement named;
//! - fsync=never and interval: acknowledged batches may be lost, but only from the unsynced
//!   tail: every batch acknowledged below the partition's synced end at the moment of the
//!   crash (`Partition::synced_end`: rolls sync the segment they close, the interval ticker
//!   the active one) is there, and what was lost is a suffix of the log (no hole).
//!
//! `KEEL_POWER_LOSS_SEEDS` sets the seed count (default 500 per fsync setting), and
//! `KEEL_POWER_LOSS_SEED` runs one seed. A failure names its seed.
mod common;
use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

use common::*;
use futures::{executor::LocalPool, task::LocalSpawnExt};
use keel_engine::{
    batch,
    partition::Partition,
    sim::{yield_now, SimStorage},
    FsyncPolicy, Offset, TopicConfig,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The batch id written into the first value of every batch: "id{id:08}-r{record}".
fn batch_id(b: &[u8]) -> u64 {
    let at = b[batch::HEADER_BYTES..]
        .windows(2)
        .position(|w| w == b"id")
        .expect("a test batch")
        + batch::HEADER_BYTES
        + 2;
    std::str::from_utf8(&b[at..at + 8])
        .expect("digits")
        .parse()
        .expect("an id")
}

/// Acknowledged batches still expected: offset -> (record count, id).
type Acked = BTreeMap<i64, (i32, u64)>;

struct Stats {
    crashes: u64,
    acked_batches: u64,
    lost_batches: u64,
}

/// Reads the whole log and checks it against `acked`; drops from `acked` what the policy was
/// allowed to lose (everything at or past `durable`), failing if anything else is missing.
fn check(
    p: &Partition<SimStorage>,
    acked: &mut Acked,
    fsync: FsyncPolicy,
    durable: i64,
    seed: u64,
) -> u64 {
    let mut found = BTreeMap::new();
    let mut at = Offset(0);
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let r = block_on(p.read(at, 1 << 16))
            .unwrap_or_else(|e| panic!("seed {seed}: read at {at:?} failed: {e}"));
        if r.batches.is_empty() {
            break;
        }
        for b in &r.batches {
            let info = batch::validate(b, usize::MAX)
                .unwrap_or_else(|e| panic!("seed {seed}: torn batch served: {e}"));
            assert_eq!(info.base_offset, at.0, "seed {seed}: gap in offsets");
            let id = batch_id(b);
            assert!(seen.insert(id), "seed {seed}: batch {id} twice");
            found.insert(info.base_offset, (info.record_count, id));
            at = Offset(info.last_offset() + 1);
        }
    }
    let end = at.0;
    assert_eq!(
        p.offsets().high_watermark,
        at,
        "seed {seed}: high watermark"
    );
    let mut lost = 0;
    for (off, want) in acked.iter() {
        if *off < end {
            assert_eq!(found.get(off), Some(want), "seed {seed}: batch at {off}");
        } else {
            assert!(
                fsync != FsyncPolicy::Always && *off >= durable,
                "seed {seed} ({fsync}): acknowledged batch at {off} lost, durable point {durable}, log end {end}"
            );
            lost += 1;
        }
    }
    acked.retain(|off, _| *off < end);
    lost
}

/// One round: appends running concurrently for a seeded number of steps, then power loss.
/// Returns the durable point this round established.
fn round(
    s: &SimStorage,
    p: Partition<SimStorage>,
    rng: &mut Rng,
    acked: &mut Acked,
    next_id: &mut u64,
    fsync: FsyncPolicy,
) -> i64 {
    let p = Rc::new(p);
    let done: Rc<RefCell<Vec<(i64, i32, u64)>>> = Rc::default();
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    for _ in 0..=rng.below(40) {
        *next_id += 1;
        let id = *next_id;
        let records = 1 + rng.below(8) as usize;
        let value_bytes = 1 + rng.below(600) as usize;
        let values: Vec<Vec<u8>> = (0..records)
            .map(|r| format!("id{id:08}-r{r}{}", "v".repeat(value_bytes)).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let b = batch::build(1_000 + id as i64, &refs);
        let (p, done) = (Rc::clone(&p), Rc::clone(&done));
        spawner
            .spawn_local(async move {
                if let Ok(out) = p.append(&b).await {
                    done.borrow_mut()
                        .push((out.base_offset.0, records as i32, id));
                }
            })
            .expect("spawn");
    }
    // The interval ticker, as a shard runs it for fsync=interval_ms.
    let pt = Rc::clone(&p);
    let ticks = if matches!(fsync, FsyncPolicy::IntervalMs(_)) {
        200
    } else {
        0
    };
    spawner
        .spawn_local(async move {
            for _ in 0..ticks {
                let _ = pt.sync_if_dirty().await;
                for _ in 0..3 {
                    yield_now().await; // a tick apart, as a timer would space them
                }
            }
        })
        .expect("spawn");
    for _ in 0..rng.below(600) {
        if !pool.try_run_one() {
            break;
        }
    }
    drop(pool);
    // What the partition says is synced (rolls sync the segment they close; fsync=always and
    // the interval ticker sync the active one) is what a power loss cannot take.
    let durable = p.synced_end().0;
    let p = Rc::try_unwrap(p).expect("no task holds the partition");
    drop(p);
    for (off, count, id) in done.borrow().iter() {
        assert!(
            acked.insert(*off, (*count, *id)).is_none(),
            "offset {off} acknowledged twice"
        );
    }
    s.crash(rng.next());
    durable
}

fn run_seed(seed: u64, fsync: FsyncPolicy, stats: &mut Stats) {
    let s = SimStorage::new();
    let config = TopicConfig {
        segment_bytes_max: 8 * 1024,
        index_interval_bytes: 256,
        ..TopicConfig::default()
    };
    let mut rng = Rng(seed);
    let mut acked = Acked::new();
    let mut next_id = 0;
    let mut durable = 0;
    for _ in 0..3 {
        let p = open_with(&s, config.clone(), fsync, 4096)
            .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
        stats.lost_batches += check(&p, &mut acked, fsync, durable, seed);
        let before = acked.len();
        durable = round(&s, p, &mut rng, &mut acked, &mut next_id, fsync);
        stats.acked_batches += (acked.len() - before) as u64;
        stats.crashes += 1;
    }
    let p = open_with(&s, config, fsync, 4096)
        .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    stats.lost_batches += check(&p, &mut acked, fsync, durable, seed);
}

fn seeds() -> Vec<u64> {
    if let Ok(one) = std::env::var("KEEL_POWER_LOSS_SEED") {
        return vec![one.parse().expect("KEEL_POWER_LOSS_SEED is a number")];
    }
    let n = std::env::var("KEEL_POWER_LOSS_SEEDS").map_or(500, |v| v.parse().expect("a count"));
    (0..n).collect()
}

fn run_all(fsync: FsyncPolicy) {
    let mut stats = Stats {
        crashes: 0,
        acked_batches: 0,
        lost_batches: 0,
    };
    let seeds = seeds();
    for &seed in &seeds {
        run_seed(seed, fsync, &mut stats);
    }
    println!(
        "fsync={fsync}: {} seeds, {} power losses, {} acknowledged batches checked, {} lost (allowed: unsynced tail)",
        seeds.len(),
        stats.crashes,
        stats.acked_batches,
        stats.lost_batches
    );
    assert!(stats.acked_batches > 0);
    if fsync == FsyncPolicy::Always {
        assert_eq!(stats.lost_batches, 0);
    }
}

#[test]
fn power_loss_fsync_always_loses_nothing_acknowledged() {
    run_all(FsyncPolicy::Always);
}

#[test]
fn power_loss_fsync_interval_loses_only_after_the_last_sync() {
    run_all(FsyncPolicy::IntervalMs(10));
}

#[test]
fn power_loss_fsync_never_loses_only_the_unsynced_tail() {
    run_all(FsyncPolicy::Never);
}
