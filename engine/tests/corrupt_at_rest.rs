//! A flipped byte in a closed segment's log, offset index or time index is detected when read
//! (or at start, for the last index entry), reported as `Corrupt` with the file and the byte,
//! and never served as data; the data around it stays readable.
mod common;
use std::path::{Path, PathBuf};

use common::*;
use keel_engine::{
    batch, partition::Partition, sim::SimStorage, EngineError, FsyncPolicy, Offset, TopicConfig,
};

const BATCHES: usize = 60;

fn config() -> TopicConfig {
    TopicConfig {
        segment_bytes_max: 4096,
        index_interval_bytes: 256,
        ..TopicConfig::default()
    }
}

fn file(ext: &str) -> PathBuf {
    dir().join(format!("{:020}.{ext}", 0))
}

/// Batches of 2 records, timestamps 1000, 1010, ...; closed cleanly so segment 0 is closed.
fn written() -> SimStorage {
    let s = SimStorage::new();
    let p = open(&s, config());
    for id in 0..BATCHES {
        block_on(p.append(&batch_of(id, 2, 1000 + 10 * id as i64))).expect("append");
    }
    assert!(p.offsets().log_end.0 == 2 * BATCHES as i64);
    block_on(p.close()).expect("close");
    s
}

fn reopen(s: &SimStorage) -> Partition<SimStorage> {
    open_with(s, config(), FsyncPolicy::Always, 0).expect("start")
}

fn flip(s: &SimStorage, path: &Path, at: usize, f: impl Fn(u8) -> u8) {
    let mut data = s.contents(path).expect("file");
    data[at] = f(data[at]);
    s.set_contents(path, data);
}

/// Positions of the batches in a log file.
fn batch_positions(log: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + batch::HEADER_BYTES <= log.len() {
        let Ok((_, len)) = batch::peek(&log[pos..]) else {
            break;
        };
        out.push(pos);
        pos += len;
    }
    out
}

fn expect_corrupt(r: keel_engine::Result<impl std::fmt::Debug>, path: &Path, pos: u64) {
    match r {
        Err(e @ EngineError::Corrupt { .. }) => {
            let EngineError::Corrupt {
                path: p, pos: at, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((p.as_path(), *at), (path, pos), "{e}");
            let shown = e.to_string();
            assert!(
                shown.contains(&path.display().to_string())
                    && shown.contains(&format!("byte {pos}")),
                "{shown}"
            );
        }
        other => panic!(
            "expected corruption in {} at {pos}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn flipped_byte_in_a_closed_segment_is_reported_at_read_and_never_served() {
    let s = written();
    let log = file("log");
    let positions = batch_positions(&s.contents(&log).expect("log"));
    assert!(positions.len() > 6, "segment 0 holds several batches");
    flip(&s, &log, positions[4] + 70, |b| b ^ 0x01); // inside batch 4's records
    let p = reopen(&s); // closed segments are trusted at start: no full scan
    for id in 0..positions.len() as i64 {
        let r = block_on(p.read(Offset(2 * id), 1));
        if id == 4 {
            expect_corrupt(r, &log, positions[4] as u64);
        } else {
            let out = r.expect("the other batches are served");
            let info = batch::validate(&out.batches[0], usize::MAX).expect("whole");
            assert_eq!(info.base_offset, 2 * id);
        }
    }
}

#[test]
fn flipped_offset_index_entry_is_reported_not_followed() {
    let s = written();
    let index = file("index");
    // Entry 2 (bytes 16..24): relative offset +1, so it names an offset its batch does not
    // start at. Entries stay increasing, so the file still parses.
    let data = s.contents(&index).expect("index");
    let rel = u32::from_le_bytes(data[16..20].try_into().expect("4 bytes"));
    let next_rel = u32::from_le_bytes(data[24..28].try_into().expect("4 bytes"));
    assert!(rel + 1 < next_rel);
    flip(&s, &index, 16, |b| b.wrapping_add(1));
    let p = reopen(&s);
    expect_corrupt(block_on(p.read(Offset(i64::from(rel) + 1), 1)), &index, 16);
    // Offsets the entry does not cover read as before.
    let out = block_on(p.read(Offset(i64::from(rel)), 1)).expect("read");
    assert_eq!(
        batch::validate(&out.batches[0], usize::MAX)
            .expect("ok")
            .base_offset,
        i64::from(rel)
    );
}

#[test]
fn flipped_last_index_entry_is_dropped_at_start_and_the_log_walked() {
    let s = written();
    let index = file("index");
    let data = s.contents(&index).expect("index");
    let entries = keel_engine::index::OffsetIndex::from_bytes(&data).len();
    assert!(entries > 2);
    let last = (entries - 1) * 8;
    flip(&s, &index, last + 4, |b| b.wrapping_add(3)); // its position
    let p = reopen(&s);
    let all = read_all(&p, 0);
    assert_eq!(
        all,
        (0..BATCHES as i64).map(|i| (2 * i, 2)).collect::<Vec<_>>()
    );
}

#[test]
fn flipped_time_index_entry_is_reported_not_followed() {
    let s = written();
    let tindex = file("timeindex");
    // Entry 3 (bytes 48..64): max timestamp i64, relative offset u32. Move its offset by one.
    let data = s.contents(&tindex).expect("time index");
    let ts = i64::from_le_bytes(data[48..56].try_into().expect("8 bytes"));
    flip(&s, &tindex, 56, |b| b.wrapping_add(1));
    let p = reopen(&s);
    expect_corrupt(block_on(p.offset_for_time(ts + 1)), &tindex, 48);
    // A lookup that lands on an intact entry answers as before.
    let (off, at_ts) = block_on(p.offset_for_time(1000))
        .expect("ok")
        .expect("found");
    assert_eq!((off, at_ts), (Offset(0), 1000));
}

/// A damaged header in the active segment, before its last index entry, after a crash: the
/// start-up walk for producer state cannot pass it, but the batches after it were durable
/// (the index entry was written after their fdatasync). The log keeps them all, the damaged
/// batch is reported when read, and the partition takes appends at its true end.
#[test]
fn damaged_batch_before_the_last_index_entry_of_the_active_segment_is_kept_and_reported() {
    damaged_before_last_entry(|positions| positions[1]);
    // The batch right before the last entry on disk (the last of the first index page): the
    // walk breaks exactly at the entry's batch.
    damaged_before_last_entry(|positions| {
        positions[keel_engine::index::OFFSET_ENTRIES_PER_PAGE - 2]
    });
}

fn damaged_before_last_entry(which: fn(&[usize]) -> usize) {
    // An entry per batch, and enough batches that a whole index page (512 entries) was
    // written: index pages reach the disk whole, after the fdatasync that covers them.
    const N: usize = 600;
    let s = SimStorage::new();
    let big = TopicConfig {
        segment_bytes_max: 1 << 20,
        index_interval_bytes: 1,
        ..TopicConfig::default()
    };
    let p = open(&s, big.clone());
    for id in 0..N {
        block_on(p.append(&batch_of(id, 2, 1000 + 10 * id as i64))).expect("append");
    }
    drop(p); // no clean shutdown: the active segment is scanned at start
    let log = file("log");
    let positions = batch_positions(&s.contents(&log).expect("log"));
    assert_eq!(positions.len(), N, "one segment");
    // The chosen batch's lastOffsetDelta (bytes 23..27; its high byte): the headers-only walk
    // then expects the next batch at an offset far ahead, and stops there.
    let at = which(&positions);
    let damaged = positions.iter().position(|p| *p == at).expect("a batch") as i64;
    flip(&s, &log, at + 23, |_| 1);
    let p = open_with(&s, big, FsyncPolicy::Always, 0).expect("start");
    assert_eq!(p.offsets().log_end, Offset(2 * N as i64), "nothing cut");
    expect_corrupt(block_on(p.read(Offset(2 * damaged), 1)), &log, at as u64);
    for id in (0..N as i64).filter(|id| *id != damaged) {
        let out = block_on(p.read(Offset(2 * id), 1)).expect("the other batches are served");
        let info = batch::validate(&out.batches[0], usize::MAX).expect("whole");
        assert_eq!(info.base_offset, 2 * id);
    }
    let out = block_on(p.append(&batch_of(N, 2, 5000))).expect("append after start");
    assert_eq!(out.base_offset, Offset(2 * N as i64));
    let read = block_on(p.read(out.base_offset, 1 << 16)).expect("read back");
    assert_eq!(read.batches.len(), 1);
}

/// A finished segment (rolled, or the active one after a clean shutdown) is trusted: only its
/// headers are walked from the last index entry. A damaged lastOffsetDelta in its last batch
/// must not become its end (millions of offsets past the data): start reports it with the file
/// and position.
#[test]
fn damaged_last_batch_header_of_a_clean_segment_is_reported_at_start() {
    let s = written();
    let log = file("log");
    let positions = batch_positions(&s.contents(&log).expect("log"));
    let last = *positions.last().expect("batches");
    flip(&s, &log, last + 23, |_| 1);
    expect_corrupt(
        open_with(&s, config(), FsyncPolicy::Always, 0).map(|p| p.offsets()),
        &log,
        last as u64,
    );
}

/// A damaged batch length in a closed segment (only the last index entry's batch is checked
/// at start) sends a read past the end of the log: it is reported, not a panic of the shard.
#[test]
fn damaged_batch_length_is_reported_at_read_not_a_panic() {
    let s = written();
    let log = file("log");
    let positions = batch_positions(&s.contents(&log).expect("log"));
    flip(&s, &log, positions[4] + 9, |_| 0x7f); // batchLength's second byte: megabytes
    let p = reopen(&s);
    expect_corrupt(block_on(p.read(Offset(8), 1)), &log, positions[4] as u64);
    let out = block_on(p.read(Offset(0), 1)).expect("batches before it are served");
    assert_eq!(out.batches.len(), 1);
}
