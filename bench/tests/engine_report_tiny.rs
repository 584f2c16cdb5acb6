//! The whole `keel-bench engine` run, tiny (0.2 s per probe and scenario, small files), through
//! the binary, then `keel-bench report` on its folder: so neither the benchmark nor the report
//! can rot between real runs. Figures are not checked against any bound (a shared CI machine
//! gives no stable number), only that every figure, file and section is there.

mod common;

use common::{keel_bench, path_arg};
use keel_bench::engine::summary::EngineSummary;

#[test]
fn tiny_engine_run_writes_and_regenerates_its_report() -> anyhow::Result<()> {
    // On the target directory's file system (a real disk), not a tmpfs /tmp.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let out = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    keel_bench(&[
        "engine",
        "--dir",
        path_arg(scratch.path())?,
        "--out",
        path_arg(out.path())?,
        "--seconds",
        "0.2",
        "--warmup-seconds",
        "0.05",
        "--breakdown-seconds",
        "0.1",
        "--unpinned",
        "--file-size",
        "64m",
        "--read-fill",
        "2m",
        "--segment-size",
        "4m",
        "--retention",
        "8m",
        "--cache",
        "16m",
    ])?;
    let summary: EngineSummary =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json"))?)?;
    assert_eq!(summary.appends.len(), 6);
    assert_eq!(summary.reads.len(), 2);
    assert_eq!(summary.raw_fdatasync.len(), 2);
    // 1 MiB phase: reused QD1, QD32, write+fdatasync 1 MiB and 4 MiB; unwritten
    // write+fdatasync; new files QD1, write+fdatasync 1 MiB and 4 MiB; write+fdatasync 1 MiB
    // of new data copied in. 16 KiB phase: reused QD1, QD32, write+fdatasync; new files QD32
    // and write+fdatasync.
    assert_eq!(summary.raw_writes.len(), 14);
    assert!(summary
        .raw_writes
        .iter()
        .any(|w| w.key == "raw_write_fdatasync_freshdata_1m_qd1" && w.result.fresh_data));
    assert_eq!(summary.breakdown.io.len(), 4);
    assert_eq!(summary.breakdown.floors.len(), 3);
    assert!(summary
        .appends
        .iter()
        .all(|a| a.mb_per_s > 0.0 && !a.fractions.is_empty()));
    assert!(summary.reads.iter().all(|r| r.gb_per_s > 0.0));
    // Every target has its fair comparison.
    assert_eq!(summary.checks.iter().filter(|c| c.fair).count(), 5);
    // The throughput targets are held against the new-files probes, a log's own pattern.
    assert!(summary
        .checks
        .iter()
        .filter(|c| c.fair && c.what == "throughput")
        .all(|c| c.reference_label.ends_with(", new files")));
    for file in summary
        .appends
        .iter()
        .map(|a| &a.histogram_file)
        .chain(summary.reads.iter().map(|r| &r.histogram_file))
        .chain(summary.raw_fdatasync.iter().map(|f| &f.histogram_file))
        .map(String::as_str)
        .chain(["command.txt", "machine.json", "report.md", "throughput.png"])
        .chain(["latency_fsync_always.png", "latency_fsync_never.png"])
    {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }
    // The scratch directory is left empty.
    assert_eq!(std::fs::read_dir(scratch.path())?.count(), 0);

    // `report` redraws the page and the plots from summary.json and the .hdr files alone.
    std::fs::remove_file(out.path().join("report.md"))?;
    std::fs::remove_file(out.path().join("throughput.png"))?;
    std::fs::write(out.path().join("notes.md"), "Hand-written analysis.\n")?;
    keel_bench(&["report", path_arg(out.path())?])?;
    let page = std::fs::read_to_string(out.path().join("report.md"))?;
    for section in [
        "## Verdict",
        "## 2a.",
        "## 2b.",
        "## 2c.",
        "## 2d.",
        "## Where the time goes",
        "Hand-written analysis.",
        "![",
    ] {
        assert!(page.contains(section), "{section} missing from report.md");
    }
    assert!(out.path().join("throughput.png").is_file());
    Ok(())
}
