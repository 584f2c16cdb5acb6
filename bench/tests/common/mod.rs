//! What the bench's end-to-end tests share: running the `keel-bench` binary.

use std::path::Path;
use std::process::Command;

/// Runs `keel-bench ARGS` (warnings only on its log) and fails unless it succeeds.
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
