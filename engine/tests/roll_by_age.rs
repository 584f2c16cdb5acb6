//! A segment older than segment_ms rolls at the next append.
mod common;
use common::*;
use keel_engine::{sim::SimStorage, TopicConfig};

#[test]
fn rolls_by_age() {
    let s = SimStorage::new();
    let config = TopicConfig {
        segment_ms: 1,
        ..small_segments(1 << 20)
    };
    let p = open(&s, config);
    block_on(p.append(&batch_of(0, 1, 0))).expect("append");
    std::thread::sleep(std::time::Duration::from_millis(5));
    block_on(p.append(&batch_of(1, 1, 0))).expect("append");
    let logs = keel_engine::storage::Storage::list_dir(&s, &dir())
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .count();
    assert_eq!(logs, 2);
    assert_eq!(read_all(&p, 0), vec![(0, 1), (1, 1)]);
}
