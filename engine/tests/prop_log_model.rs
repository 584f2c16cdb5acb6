//! Property test: random sequences of append, read, roll (small segments), crash and recover
//! against a simple in-memory model. After every recovery the log holds every acknowledged
//! batch, in order, at its offset, and no torn batch; with fsync=never it holds a prefix of
//! them (what was not synced may be lost, but nothing is reordered, invented or torn).
mod common;
use common::*;
use keel_engine::{batch, sim::SimStorage, FsyncPolicy, Offset, TopicConfig};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append { records: usize, value_bytes: usize },
    Read { at_permille: u16 },
    Crash { seed: u64 },
    CleanRestart,
    ShortWriteThenCrash { bytes: usize, seed: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..20, 1usize..300).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        2 => (0u16..1000).prop_map(|at_permille| Op::Read { at_permille }),
        1 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
        1 => Just(Op::CleanRestart),
        1 => (1usize..4096, any::<u64>()).prop_map(|(bytes, seed)| Op::ShortWriteThenCrash { bytes, seed }),
    ]
}

/// A model batch: its base offset, record count and the bytes of its first value.
type Model = Vec<(i64, i32, Vec<u8>)>;

/// The first 8 bytes of the first record's value (records: length, attributes, timestamp
/// delta, offset delta, key length, value length as varints around one attribute byte).
fn first_value_prefix(b: &[u8]) -> Vec<u8> {
    fn varint(b: &[u8], pos: &mut usize) -> i64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*pos];
            *pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }
    let mut pos = 61;
    varint(b, &mut pos); // record length
    pos += 1; // attributes
    varint(b, &mut pos); // timestamp delta
    varint(b, &mut pos); // offset delta
    let key_len = varint(b, &mut pos);
    pos += usize::try_from(key_len.max(0)).expect("small");
    varint(b, &mut pos); // value length
    b[pos..pos + 8].to_vec()
}

fn check_log(
    p: &keel_engine::partition::Partition<SimStorage>,
    model: &Model,
    exact: bool,
) -> usize {
    let mut got = Vec::new();
    let mut at = Offset(0);
    loop {
        let r = block_on(p.read(at, 1 << 16)).expect("read");
        if r.batches.is_empty() {
            break;
        }
        for b in r.batches {
            let info = batch::validate(&b, usize::MAX).expect("no torn or corrupt batch is served");
            got.push((info.base_offset, info.record_count, first_value_prefix(&b)));
            at = Offset(info.last_offset() + 1);
        }
    }
    if exact {
        assert_eq!(got.len(), model.len(), "every acknowledged batch survives");
    } else {
        assert!(got.len() <= model.len());
    }
    for (g, m) in got.iter().zip(model) {
        assert_eq!((g.0, g.1), (m.0, m.1));
        assert_eq!(&g.2[..], &m.2[..g.2.len()]);
    }
    got.len()
}

/// After a crash: checks the recovered log against the model, keeps the part of the model that
/// survived, and returns the next offset (which the high watermark must equal).
fn recover_model(
    p: &keel_engine::partition::Partition<SimStorage>,
    model: &mut Model,
    fsync: FsyncPolicy,
) -> i64 {
    let kept = check_log(p, model, fsync == FsyncPolicy::Always);
    model.truncate(kept);
    let next = model.last().map_or(0, |m| m.0 + i64::from(m.1));
    assert_eq!(p.offsets().high_watermark, Offset(next));
    next
}

fn run(ops: &[Op], fsync: FsyncPolicy) {
    let s = SimStorage::new();
    let config = TopicConfig {
        segment_bytes_max: 16 * 1024,
        index_interval_bytes: 512,
        ..TopicConfig::default()
    };
    let reopen =
        |s: &SimStorage| open_with(s, config.clone(), fsync, 8 * 1024).expect("recovery succeeds");
    let mut p = reopen(&s);
    let mut model: Model = Vec::new();
    let mut next = 0i64;
    let mut id = 0usize;
    for op in ops {
        match op {
            Op::Append {
                records,
                value_bytes,
            } => {
                id += 1;
                let values: Vec<Vec<u8>> = (0..*records)
                    .map(|r| format!("{id:08}{r:0>width$}", width = *value_bytes).into_bytes())
                    .collect();
                let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
                let b = batch::build(id as i64, &refs);
                let out = block_on(p.append(&b)).expect("append");
                assert_eq!(out.base_offset, Offset(next));
                model.push((next, *records as i32, values[0][..8].to_vec()));
                next += *records as i64;
            }
            Op::Read { at_permille } => {
                if next > 0 {
                    let at = next * i64::from(*at_permille) / 1000;
                    let r = block_on(p.read(Offset(at), 4096)).expect("read");
                    let first = batch::validate(&r.batches[0], usize::MAX).expect("valid");
                    assert!(first.base_offset <= at && at <= first.last_offset());
                }
            }
            Op::Crash { seed } => {
                drop(p);
                s.crash(*seed);
                p = reopen(&s);
                next = recover_model(&p, &mut model, fsync);
            }
            Op::CleanRestart => {
                block_on(p.close()).expect("close");
                p = reopen(&s);
                check_log(&p, &model, true);
            }
            Op::ShortWriteThenCrash { bytes, seed } => {
                s.short_write_next(*bytes);
                id += 1;
                let b = batch::build(id as i64, &[&[7u8; 5000][..]]);
                assert!(
                    block_on(p.append(&b)).is_err(),
                    "a short write is never acknowledged"
                );
                drop(p);
                s.crash(*seed);
                p = reopen(&s);
                next = recover_model(&p, &mut model, fsync);
            }
        }
    }
    check_log(&p, &model, true);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fsync_always_keeps_every_acknowledged_batch(ops in proptest::collection::vec(op(), 1..80)) {
        run(&ops, FsyncPolicy::Always);
    }

    #[test]
    fn fsync_never_keeps_a_prefix(ops in proptest::collection::vec(op(), 1..80)) {
        run(&ops, FsyncPolicy::Never);
    }
}
