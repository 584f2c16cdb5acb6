//! What the bench's end-to-end tests share: running the keel-bench binary, and checking that
//! `keel-bench report` redraws a folder's page exactly and its plots.

#![allow(dead_code)] // Each test binary uses its own part of this.

use std::path::Path;
use std::process::Command;

/// Runs the keel-bench binary of this build with `args`; fails unless it succeeds.
pub fn keel_bench(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO_BIN_EXE_keel-bench"))
        .args(args)
        .env("RUST_LOG", "warn")
        .status()?;
    anyhow::ensure!(status.success(), "keel-bench {args:?} failed: {status}");
    Ok(())
}

/// A path as a command-line argument.
pub fn path_arg(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", p.display()))
}

/// `out/report.md` has every one of `sections`; after removing it and the plot `removed_png`,
/// `keel-bench report out` writes the same page again, and every one of `pngs` is a PNG.
pub fn report_regenerates(
    out: &Path,
    sections: &[&str],
    removed_png: &str,
    pngs: &[&str],
) -> anyhow::Result<()> {
    let report = out.join("report.md");
    let first = std::fs::read_to_string(&report)?;
    for section in sections {
        assert!(first.contains(section), "report.md lacks {section}");
    }
    std::fs::remove_file(&report)?;
    std::fs::remove_file(out.join(removed_png))?;
    keel_bench(&["report", path_arg(out)?])?;
    assert_eq!(std::fs::read_to_string(&report)?, first);
    for png in pngs {
        assert_eq!(&std::fs::read(out.join(png))?[..4], b"\x89PNG", "{png}");
    }
    Ok(())
}
