//! Every limits probe, run for a fraction of a second on a small file, so that none of them can
//! rot between real benchmark runs. The figures are not checked against any bound: a shared CI
//! machine gives no stable number, only that each probe runs, measures something and cleans up.

use std::path::Path;
use std::time::Duration;

use keel_bench::limits::{self, DiskWriteParams, LimitsConfig, ProbeSet};

const TINY: Duration = Duration::from_millis(200);
const TINY_FILE_BYTES: u64 = 8 << 20;

/// A scratch directory on the target directory's file system (a real disk, like a broker's
/// data directory), not on a tmpfs /tmp.
fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?)
}

fn assert_empty(dir: &Path) -> anyhow::Result<()> {
    let left: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    assert!(left.is_empty(), "probe files left behind: {left:?}");
    Ok(())
}

#[test]
fn disk_write_runs_and_cleans_up() -> anyhow::Result<()> {
    let dir = scratch_dir()?;
    let (same, fresh) = (limits::Data::Same, limits::Data::Fresh);
    for (queue_depth, fsync_each, blocks, data) in [
        (4, false, limits::Blocks::Reused, same),
        (1, true, limits::Blocks::Unwritten, same),
        (1, true, limits::Blocks::NewFiles, same),
        (4, false, limits::Blocks::NewFiles, same),
        (1, true, limits::Blocks::Reused, fresh),
        (4, false, limits::Blocks::NewFiles, fresh),
    ] {
        let params = DiskWriteParams {
            block_bytes: 16 << 10,
            queue_depth,
            duration: TINY,
            fsync_each,
            file_bytes: TINY_FILE_BYTES,
            blocks,
            data,
        };
        let result = limits::disk_write_with(dir.path(), &params)?;
        assert_eq!(limits::Blocks::of(&result), blocks);
        assert_eq!(limits::Data::of(&result), data);
        assert!(result.write_count > 0, "{result:?}");
        assert_eq!(result.bytes_written, result.write_count * 16 * 1024);
        assert!(
            result.mb_per_s > 0.0 && result.elapsed_s >= 0.15,
            "{result:?}"
        );
    }
    assert_empty(dir.path())
}

#[test]
fn fsync_latency_records_every_sync() -> anyhow::Result<()> {
    let dir = scratch_dir()?;
    let histogram = limits::fsync_latency_with(dir.path(), 4096, TINY, TINY_FILE_BYTES)?;
    assert!(!histogram.is_empty());
    assert!(histogram.max() >= histogram.value_at_quantile(0.5));
    assert_empty(dir.path())
}

#[test]
fn loopback_probes_run() -> anyhow::Result<()> {
    let throughput = limits::loopback_throughput(TINY)?;
    assert!(throughput.bytes_received > 0 && throughput.gbit_per_s > 0.0);
    let rtt = limits::loopback_rtt(64, TINY)?;
    assert!(rtt.len() > 10, "only {} round trips", rtt.len());
    Ok(())
}

#[test]
fn full_run_writes_every_file() -> anyhow::Result<()> {
    let scratch = scratch_dir()?;
    // A directory that does not exist yet: the run creates it.
    let dir = scratch.path().join("probes");
    let config = LimitsConfig {
        dir: dir.clone(),
        block_sizes_bytes: vec![4096],
        queue_depths: vec![2],
        probe_duration: Duration::from_millis(50),
        fsync_block_bytes: 4096,
        file_bytes: TINY_FILE_BYTES,
        blocks: limits::Blocks::Reused,
        data: limits::Data::Same,
        probes: ProbeSet::ALL,
    };
    let mut run = limits::run_limits(&config)?;
    assert_eq!(run.report.disk_write.len(), 2);
    assert!(run.report.seq_write_mb_per_s_max.is_some());
    let out = scratch_dir()?;
    let written = run.write_files(&out.path().join("limits.json"))?;
    let names: Vec<String> = written
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in [
        "limits.json",
        "limits.md",
        "limits.fdatasync_4k.hdr",
        "limits.loopback_rtt_64b.hdr",
        "limits.fdatasync.png",
        "limits.loopback_rtt.png",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let json: limits::LimitsReport =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("limits.json"))?)?;
    assert_eq!(json.histogram_files.len(), 2);
    let page = std::fs::read_to_string(out.path().join("limits.md"))?;
    assert!(
        page.contains("| p50 |") || page.contains(" p50 |"),
        "{page}"
    );
    assert_empty(&dir)
}
