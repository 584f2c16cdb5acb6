//! A whole `keel-bench soak`, tiny (8 s of load, segments of 64 KiB, retention of 256 KiB),
//! through the binary against a real `keel` process it starts, then `keel-bench report` on its
//! folder: so the soak cannot rot between its real 30-minute runs. Flatness is not asserted (a
//! few seconds on a shared machine prove nothing either way); that every kind of load ran
//! without error, retention deleted segments, the broker was sampled, the raw data reads back,
//! the data directory is gone and the report regenerates the same, is.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{keel_bench, path_arg};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use keel_bench::soak::csv::{read_rows, IntervalRow, Sample};
use keel_bench::soak::summary::SoakSummary;

/// The `keel` binary of this build (beside `keel-bench`), built first when this test runs
/// before anything built it (`cargo test -p keel-bench` alone builds keel-server's library
/// only).
fn keel_binary() -> anyhow::Result<PathBuf> {
    let bench = Path::new(env!("CARGO_BIN_EXE_keel-bench"));
    let keel = bench.with_file_name("keel");
    if keel.exists() {
        return Ok(keel);
    }
    let profile_dir = bench
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    build.args(["build", "-p", "keel-server", "--bin", "keel"]);
    if profile_dir.as_deref() == Some("release") {
        build.arg("--release");
    }
    let status = build.status()?;
    anyhow::ensure!(
        status.success() && keel.exists(),
        "building keel failed ({status}) or put it elsewhere than {}",
        keel.display()
    );
    Ok(keel)
}

const SETTINGS: &str = r#"
[workload]
name = "soak"
partitions = 2
producers = 1
consumers = 1
message_bytes = 512
batch_bytes = 8192
linger_ms = 2
rate = 500
duration_s = 8
warmup_s = 0.5

[broker]
segment_bytes_max = 65536
retention_bytes = 262144
retention_check_ms = 200
group_initial_rebalance_delay_ms = 0
fsync = "never"
extra_args = ["--shards", "1", "--pin-cores", "false", "--io-memory-bytes", "262144"]

[groups]
group = "tiny-group"
members = 2
member_life_s = 3
heartbeat_ms = 200
commit_ms = 400
session_timeout_ms = 6000

[admin]
period_ms = 500
partitions = 2
messages = 5

[report]
interval_s = 1
warmup_s = 2
rss_growth_fraction = 0.10
rss_growth_bytes = 4194304
open_files_growth = 16
open_files_max = 1024
p99_growth_fraction = 0.5
p99_growth_ms = 5
rate_fraction_min = 0.9
"#;

#[test]
fn tiny_soak_against_keel_writes_and_regenerates_its_report() -> anyhow::Result<()> {
    let keel = keel_binary()?;
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let out = scratch.path().join("report");
    let data_dir = scratch.path().join("keel-data");
    let settings = scratch.path().join("soak-tiny.toml");
    std::fs::write(&settings, SETTINGS)?;
    keel_bench(&[
        "soak",
        "--config",
        path_arg(&settings)?,
        "--keel",
        path_arg(&keel)?,
        "--data-dir",
        path_arg(&data_dir)?,
        "--out",
        path_arg(&out)?,
    ])?;
    assert!(!data_dir.exists(), "the soak left its data directory");
    let summary: SoakSummary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json"))?)?;
    assert_eq!(summary.failure, None);
    let run = summary
        .run
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no run figures"))?;
    assert!(run.acked_messages > 0 && run.consumed_messages > 0);
    assert_eq!(run.produce_errors, 0, "{:?}", run.first_error);
    assert_eq!(run.first_error, None);
    let (group, admin) = (&summary.group, &summary.admin);
    assert_eq!(group.errors, 0, "{:?}", group.first_error);
    assert!(
        group.leaves > 0 && group.generation_max >= 2 && group.commits > 0,
        "{group:?}"
    );
    assert_eq!(admin.errors, 0, "{:?}", admin.first_error);
    assert!(
        admin.cycles > 0 && admin.topics_deleted == admin.cycles,
        "{admin:?}"
    );
    assert!(
        summary.analysis.segments_deleted > 0.0,
        "retention deleted nothing"
    );
    assert_eq!(summary.analysis.checks.len(), 10);

    let samples = read_rows::<Sample>(&out.join("samples.csv"))?;
    assert!(samples.len() >= 8, "{} samples", samples.len());
    assert!(samples
        .iter()
        .all(|s| s.rss_bytes > 0.0 && s.open_files > 0.0));
    let intervals = read_rows::<IntervalRow>(&out.join("intervals.csv"))?;
    assert!(intervals
        .iter()
        .any(|i| i.produce_count > 0.0 && i.e2e_count > 0.0));
    let log = std::fs::read(out.join("latency.hlog"))?;
    let mut histograms = 0;
    for entry in IntervalLogIterator::new(&log) {
        if let LogEntry::Interval(_) = entry.map_err(|e| anyhow::anyhow!("{e:?}"))? {
            histograms += 1;
        }
    }
    assert_eq!(histograms, 3 * intervals.len());

    let report = out.join("report.md");
    let first = std::fs::read_to_string(&report)?;
    for section in [
        "## Verdict",
        "## Figures",
        "## The three thirds",
        "## Plots",
    ] {
        assert!(first.contains(section), "report.md lacks {section}");
    }
    std::fs::remove_file(&report)?;
    std::fs::remove_file(out.join("rss_over_time.png"))?;
    keel_bench(&["report", path_arg(&out)?])?;
    assert_eq!(std::fs::read_to_string(&report)?, first);
    for png in [
        "rss_over_time.png",
        "open_files_over_time.png",
        "latency_over_time.png",
        "throughput_over_time.png",
        "spectrum.png",
    ] {
        assert_eq!(&std::fs::read(out.join(png))?[..4], b"\x89PNG");
    }
    Ok(())
}
