//! Segments roll when the next batch would pass segment_bytes_max; reads cross segments.
mod common;
use common::*;
use keel_engine::sim::SimStorage;

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let s = SimStorage::new();
    let p = open(&s, small_segments(16 * 1024));
    for id in 0..1000 {
        block_on(p.append(&batch_of(id, 4, 0))).expect("append");
    }
    let logs: Vec<String> = keel_engine::storage::Storage::list_dir(&s, &dir())
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert!(logs.len() > 3, "expected several segments, got {logs:?}");
    for name in &logs {
        let size = s.contents(&dir().join(name)).expect("file").len();
        assert!(size <= 16 * 1024 + 4096, "{name} is {size} bytes");
    }
    let got = read_all(&p, 0);
    assert_eq!(got.len(), 1000);
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 4));
    // Segment names are their base offsets, which are batch boundaries.
    for name in logs {
        let base: i64 = name.trim_end_matches(".log").parse().expect("number");
        assert_eq!(base % 4, 0);
    }
}
