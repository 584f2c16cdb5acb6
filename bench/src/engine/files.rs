//! The run folder of `keel-bench engine`, and `keel-bench report DIR`, which redraws its
//! Markdown page and plots from `summary.json` and the raw histograms alone:
//!
//! ```text
//!   results/<date>_<gitsha>_<host>/
//!     command.txt                 the exact argv
//!     machine.json                CPU, memory, kernel, file system and device
//!     summary.json                every figure, fraction and check (EngineSummary)
//!     append_<size>_<fsync>_x<n>.hdr  every append's latency, µs (HDR V2)
//!     read_cache.hdr, read_disk.hdr   every read's latency, ns
//!     raw_fdatasync_4k.hdr, ..._16k.hdr  the raw fdatasync latencies, µs
//!     report.md                   tables, verdicts, where the time goes
//!     latency_fsync_always.png    append latency spectra against raw fdatasync
//!     latency_fsync_never.png
//!     throughput.png              engine against raw, bars
//!     notes.md                    optional, hand-written analysis, embedded in report.md
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::summary::EngineSummary;
use super::{markdown, EngineRun};
use crate::plot::{plot_bars, plot_percentile_spectrum, Bar, SpectrumSeries};
use crate::report::{by_file, load_histograms, read_summary, write_run_folder};
use crate::units::format_bytes_human;

/// Writes the whole run folder into `dir` (which exists); returns the paths written.
pub fn write_run(dir: &Path, run: &EngineRun) -> anyhow::Result<Vec<PathBuf>> {
    let s = &run.summary;
    write_run_folder(dir, &s.command, &s.machine, &run.histograms, s, |h| {
        render(dir, s, h)
    })
}

/// `keel-bench report DIR`: reads `summary.json` and the histograms it names, and writes
/// `report.md` and the plots again.
pub fn regenerate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let summary: EngineSummary = read_summary(dir)?;
    let files: Vec<&str> = summary
        .appends
        .iter()
        .map(|a| a.histogram_file.as_str())
        .chain(
            summary
                .raw_fdatasync
                .iter()
                .map(|f| f.histogram_file.as_str()),
        )
        .collect();
    let loaded = load_histograms(dir, files)?;
    render(dir, &summary, &by_file(&loaded))
}

/// Plots and `report.md` from the summary and the histograms by file name.
fn render(
    dir: &Path,
    s: &EngineSummary,
    histograms: &HashMap<&str, &Histogram<u64>>,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut plots = Vec::new();
    for (fsync, file) in [
        ("always", "latency_fsync_always.png"),
        ("never", "latency_fsync_never.png"),
    ] {
        let series = spectrum_series(s, histograms, fsync);
        if series.is_empty() {
            continue;
        }
        let title = format!("Append latency, fsync {fsync}, against raw fdatasync");
        let path = dir.join(file);
        plot_percentile_spectrum(&path, &title, &series)?;
        plots.push((title, file.to_owned()));
        written.push(path);
    }
    let bars = throughput_bars(s);
    if !bars.is_empty() {
        let title = "Append throughput: engine against the raw disk, same run";
        let path = dir.join("throughput.png");
        plot_bars(&path, title, "MB/s of batch bytes acknowledged", &bars)?;
        plots.push((title.to_owned(), "throughput.png".to_owned()));
        written.push(path);
    }
    let notes_path = dir.join("notes.md");
    let notes = std::fs::read_to_string(&notes_path).ok();
    let page = markdown::render(s, &plots, notes.as_deref());
    let md = dir.join("report.md");
    std::fs::write(&md, page).with_context(|| format!("writing {}", md.display()))?;
    written.push(md);
    Ok(written)
}

fn spectrum_series<'a>(
    s: &EngineSummary,
    histograms: &HashMap<&str, &'a Histogram<u64>>,
    fsync: &str,
) -> Vec<SpectrumSeries<'a>> {
    let raw = s.raw_fdatasync.iter().filter_map(|f| {
        let histogram = histograms.get(f.histogram_file.as_str())?;
        Some(SpectrumSeries {
            label: format!("raw fdatasync ({})", format_bytes_human(f.block_bytes)),
            histogram,
            unit_us: 1.0,
        })
    });
    let engine = s
        .appends
        .iter()
        .filter(|a| a.fsync == fsync)
        .filter_map(|a| {
            let histogram = histograms.get(a.histogram_file.as_str())?;
            Some(SpectrumSeries {
                label: format!("keel append, {}", a.title),
                histogram,
                unit_us: 1.0,
            })
        });
    raw.chain(engine).collect()
}

/// Raw limits (grey) then engine fsync always and never, phase by phase.
fn throughput_bars(s: &EngineSummary) -> Vec<Bar> {
    let mut bars = Vec::new();
    let mut phases: Vec<usize> = s.raw_writes.iter().map(|w| w.phase_batch_bytes).collect();
    phases.dedup();
    for phase in phases {
        bars.extend(
            s.raw_writes
                .iter()
                .filter(|w| w.phase_batch_bytes == phase)
                .map(|w| Bar {
                    label: w.label(),
                    value: w.mb_per_s(),
                    color_index: 0,
                }),
        );
        for (fsync, color_index) in [("always", 1), ("never", 2)] {
            bars.extend(
                s.appends
                    .iter()
                    .filter(|a| a.batch_bytes == phase && a.fsync == fsync)
                    .map(|a| Bar {
                        label: format!(
                            "keel {} fsync {fsync} ×{}",
                            format_bytes_human(a.batch_bytes),
                            a.appenders
                        ),
                        value: a.mb_per_s,
                        color_index,
                    }),
            );
        }
    }
    bars
}
