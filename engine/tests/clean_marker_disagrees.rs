//! A clean-shutdown marker lets a clean start trust the last segments without checking their
//! batches. When the log does not end where that clean close left it (files restored or copied
//! since), the marker vouches for nothing: the partition recovers as after a crash, every CRC
//! after the last index entry checked, instead of trusting the files. (A damaged header in a
//! trusted segment is reported at start instead: `corrupt_at_rest.rs`.)
mod common;
use common::*;
use keel_engine::{sim::SimStorage, Offset};

/// Ten batches of two records, closed cleanly; returns each batch's byte position.
fn ten_batches_closed(s: &SimStorage) -> Vec<usize> {
    let p = open(s, small_segments(1 << 20));
    let starts = append_pairs(&p, 10);
    block_on(p.close()).expect("close");
    assert!(s.contents(&dir().join("clean_shutdown")).is_some());
    starts
}

fn log_path() -> std::path::PathBuf {
    dir().join(format!("{:020}.log", 0))
}

#[test]
fn a_marker_naming_another_end_is_ignored_and_the_log_checked() {
    let s = SimStorage::new();
    let starts = ten_batches_closed(&s);
    // The last batch damaged (after the last index entry, where a crash recovery checks every
    // CRC), and the marker claims an end the log does not have.
    let mut data = s.contents(&log_path()).expect("log");
    data[starts[9] + 70] ^= 0x40;
    s.set_contents(&log_path(), data);
    let marker = dir().join("clean_shutdown");
    let text = String::from_utf8(s.contents(&marker).expect("marker")).expect("json");
    assert!(text.contains("\"next_offset\":20"), "{text}");
    s.set_contents(
        &marker,
        text.replace("\"next_offset\":20", "\"next_offset\":40")
            .into_bytes(),
    );

    let p = open(&s, small_segments(1 << 20));
    // Checked as after a crash: the log is cut at the damaged batch (trusted, it was kept).
    assert_eq!(p.offsets().high_watermark, Offset(18));
    assert_eq!(
        read_all(&p, 0),
        (0..9).map(|i| (i * 2, 2)).collect::<Vec<_>>()
    );
    assert!(
        s.contents(&marker).is_none(),
        "the marker is consumed by the start"
    );
    // And it keeps appending after the cut.
    let out = block_on(p.append(&batch_of(99, 2, 0))).expect("append");
    assert_eq!(out.base_offset, Offset(18));
}
