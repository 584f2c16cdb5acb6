//! A whole `keel-bench storage` run, tiny (bench/workloads/storage-tiny.toml: three engine
//! cells of 0.3 s on the glommio, uring and pwrite backends, two broker cells of 1 s with a
//! real keel process on glommio and pwrite), then `keel-bench report` on its folder: so
//! neither the matrix runner nor its report can rot between real runs. Figures are not
//! checked against any bound (a shared machine gives no stable number), only that every cell
//! measured something without errors and every file and section is there.
//!
//! The broker cells start the `keel` binary next to `keel-bench` in the target directory:
//! `cargo test --workspace` builds it (the server's tests need it); alone, build it first with
//! `cargo build --release -p keel-server`.

mod common;

use std::path::{Path, PathBuf};

use common::{keel_bench, path_arg};
use keel_bench::storage::matrix::Target;
use keel_bench::storage::summary::StorageSummary;

/// The keel binary of the same profile as this test's keel-bench.
fn keel_binary() -> anyhow::Result<PathBuf> {
    let keel = Path::new(env!("CARGO_BIN_EXE_keel-bench")).with_file_name("keel");
    anyhow::ensure!(
        keel.is_file(),
        "{} is missing: build it with `cargo build -p keel-server` in the same profile \
         (cargo test --workspace does)",
        keel.display()
    );
    Ok(keel)
}

#[test]
fn tiny_storage_matrix_writes_and_regenerates_its_report() -> anyhow::Result<()> {
    let keel = keel_binary()?;
    // On the target directory's file system (a real disk), not a tmpfs /tmp.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let out = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let workload = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/storage-tiny.toml");
    keel_bench(&[
        "storage",
        "--workload",
        path_arg(&workload)?,
        "--dir",
        path_arg(scratch.path())?,
        "--keel",
        path_arg(&keel)?,
        "--unpinned",
        "--out",
        path_arg(out.path())?,
    ])?;
    let summary: StorageSummary =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json"))?)?;
    assert_eq!(summary.cells_of(Target::Engine).count(), 3);
    assert_eq!(summary.cells_of(Target::Broker).count(), 2);
    // Before the pass and after it.
    assert_eq!(summary.raw_passes.len(), 2);
    assert!(!summary.raw_limits.is_empty());
    for cell in &summary.cells {
        for run in &cell.runs {
            assert_eq!(run.error, None, "{}", cell.cell.key);
        }
        assert!(
            cell.mb_per_s.is_some_and(|m| m.mean > 0.0),
            "{}: nothing measured",
            cell.cell.key
        );
        assert!(cell.latency.as_ref().is_some_and(|l| l.count > 0));
        assert!(cell.fraction_of_raw_qd32.is_some(), "{}", cell.cell.key);
        assert!(
            cell.cpu_ms_per_mib.is_some(),
            "{}: no CPU time",
            cell.cell.key
        );
    }
    common::report_regenerates(
        out.path(),
        &[
            "## How the matrix is built",
            "## Raw limits (same run)",
            "## Engine cells",
            "## Broker cells",
            "## CPU time per MiB written, per backend",
        ],
        "engine_throughput.png",
        &[
            "engine_throughput.png",
            "engine_p99.png",
            "engine_spectrum.png",
            "broker_throughput.png",
            "broker_spectrum.png",
            "cpu_per_mib.png",
        ],
    )?;
    Ok(())
}
